//! Everything that is particular to one draft of DAP: the messages, the HPKE labels, the VDAF
//! and its parameters. Today that draft is **DAP-09** (draft-ietf-ppm-dap-09) with VDAF-08's
//! Prio3, as Divvi Up's Janus 0.7 speaks it; moving to a newer draft is a change to this module
//! (and to the versions of `janus_messages` and `prio` it names), not to its callers.
//!
//! What this module promises:
//!
//! - [`messages`] are the draft's wire types, encoded and decoded by `janus_messages`, the same
//!   code the upstream client, collector and aggregator use; nothing here re-implements them.
//! - [`seal`] and [`open`] build the draft's HPKE application info (`"dap-09 input share"` or
//!   `"dap-09 aggregate share"`, then the sender's and the recipient's role) exactly as
//!   `janus_core::hpke` does, so a share sealed here opens there and the other way round.
//! - [`vdaf`] is the one VDAF tally uses, Prio3SumVec with 1-bit entries (each entry of the
//!   measurement is proven to be 0 or 1), with its parameters checked.

use janus_messages::{
    HpkeAeadId, HpkeCiphertext, HpkeConfig, HpkeConfigId, HpkeKdfId, HpkeKemId, HpkePublicKey,
    InputShareAad, ReportMetadata, Role, TaskId,
};
use prio::codec::{CodecError, Encode};
use prio::vdaf::prio3::{Prio3, Prio3SumVec};

/// The draft's wire types (`Report`, `HpkeConfigList`, `AggregationJobInitializeReq`, …) and
/// their codec traits.
pub mod messages {
    pub use janus_messages::problem_type::DapProblemType;
    pub use janus_messages::query_type::TimeInterval;
    pub use janus_messages::*;
    pub use prio::codec::{Decode, Encode, ParameterizedDecode};
}

/// The protocol name a config section carries for this draft.
pub use tally_protocol::config::aggregation::PROTOCOL;

/// Length of the VDAF verification key the two aggregators share (Prio3 in VDAF-08: 16 bytes).
pub const VERIFY_KEY_LEN: usize = 16;

/// Length of a report ID, which is also the VDAF nonce.
pub const NONCE_LEN: usize = 16;

/// The VDAF: a vector of 1-bit entries, summed entry by entry.
pub type Vdaf = Prio3SumVec;

/// The `Content-Type` of a problem document (RFC 9457), DAP's error responses.
pub const PROBLEM_MEDIA_TYPE: &str = "application/problem+json";

/// VDAF parameters, as a config section and a task carry them (the config's shape,
/// `tally_protocol`'s), and the largest vector a task may have.
pub use tally_protocol::config::aggregation::{MAX_LENGTH, VdafParams};

/// The chunk length that makes the proof shortest for `length` one-bit entries: prio's own
/// rule (about the square root of the number of bits).
pub fn optimal_chunk_length(length: u32) -> u32 {
    prio::vdaf::prio3::optimal_chunk_length(length as usize) as u32
}

/// The section's task ID as the draft's `TaskId`.
pub fn task_id(
    config: &tally_protocol::config::aggregation::AggregationConfig,
) -> Result<TaskId, tally_protocol::config::aggregation::AggregationConfigError> {
    config.task_id_bytes().map(TaskId::from)
}

/// The VDAF for `params`, after [`VdafParams::validate`].
pub fn vdaf(params: &VdafParams) -> Result<Vdaf, String> {
    params.validate()?;
    let VdafParams::Prio3SumVec {
        bits,
        length,
        chunk_length,
    } = *params;
    Prio3::new_sum_vec(2, bits.into(), length as usize, chunk_length as usize)
        .map_err(|e| format!("prio refused the VDAF parameters: {e}"))
}

/// What an HPKE ciphertext carries, which selects the draft's application info string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// A client's input share, to one aggregator.
    InputShare,
    /// An aggregator's aggregate share, to the collector.
    AggregateShare,
}

impl Label {
    fn as_bytes(self) -> &'static [u8] {
        match self {
            Label::InputShare => b"dap-09 input share",
            Label::AggregateShare => b"dap-09 aggregate share",
        }
    }
}

/// The HPKE application info: the label, then the sender's and the recipient's role byte.
pub fn application_info(label: Label, sender: Role, recipient: Role) -> Vec<u8> {
    let mut info = label.as_bytes().to_vec();
    info.push(sender as u8);
    info.push(recipient as u8);
    info
}

/// The AAD a client binds each input share to: the task, the report's metadata and its public
/// share, encoded.
pub fn input_share_aad(
    task_id: TaskId,
    metadata: &ReportMetadata,
    public_share: &[u8],
) -> Result<Vec<u8>, CodecError> {
    InputShareAad::new(task_id, metadata.clone(), public_share.to_vec()).get_encoded()
}

/// Why an HPKE operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpkeError {
    /// The config names a KEM, KDF or AEAD this build does not implement.
    #[error("HPKE config {id} uses an algorithm tally does not support: {what}")]
    Unsupported { id: u8, what: &'static str },
    /// Sealing or opening failed (wrong key, tampered ciphertext, malformed public key).
    #[error("HPKE {0} failed")]
    Crypto(&'static str),
}

fn algorithms(config: &HpkeConfig) -> Result<hpke_dispatch::Config, HpkeError> {
    let id = u8::from(*config.id());
    let unsupported = |what| HpkeError::Unsupported { id, what };
    Ok(hpke_dispatch::Config {
        aead: u16::from(*config.aead_id())
            .try_into()
            .map_err(|_| unsupported("AEAD"))?,
        kdf: u16::from(*config.kdf_id())
            .try_into()
            .map_err(|_| unsupported("KDF"))?,
        kem: u16::from(*config.kem_id())
            .try_into()
            .map_err(|_| unsupported("KEM"))?,
    })
}

/// Whether this build can seal to `config`.
pub fn is_supported(config: &HpkeConfig) -> bool {
    algorithms(config).is_ok()
}

/// Seals `plaintext` to `recipient` (a fresh HPKE context per message, as DAP requires).
pub fn seal(
    recipient: &HpkeConfig,
    info: &[u8],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<HpkeCiphertext, HpkeError> {
    let sealed = algorithms(recipient)?
        .base_mode_seal(recipient.public_key().as_ref(), info, plaintext, aad)
        .map_err(|_| HpkeError::Crypto("seal"))?;
    Ok(HpkeCiphertext::new(
        *recipient.id(),
        sealed.encapped_key,
        sealed.ciphertext,
    ))
}

/// An aggregator's (or a collector's) HPKE key pair: the config it advertises and the private
/// key that opens what is sealed to it.
#[derive(Clone, PartialEq, Eq)]
pub struct HpkeKeypair {
    /// The public part, as `GET /hpke_config` serves it.
    pub config: HpkeConfig,
    /// The private key, serialised as RFC 9180 §7.1.2 says.
    pub private_key: Vec<u8>,
}

impl std::fmt::Debug for HpkeKeypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HpkeKeypair")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl HpkeKeypair {
    /// A fresh key pair with id `id`: X25519, HKDF-SHA256, AES-128-GCM (what Janus and Divvi
    /// Up generate).
    pub fn generate(id: u8) -> HpkeKeypair {
        let keypair = hpke_dispatch::Kem::X25519HkdfSha256.gen_keypair();
        HpkeKeypair {
            config: HpkeConfig::new(
                HpkeConfigId::from(id),
                HpkeKemId::X25519HkdfSha256,
                HpkeKdfId::HkdfSha256,
                HpkeAeadId::Aes128Gcm,
                HpkePublicKey::from(keypair.public_key),
            ),
            private_key: keypair.private_key,
        }
    }

    /// Opens `ciphertext`, sealed to this key pair with `info` and `aad`.
    pub fn open(
        &self,
        info: &[u8],
        ciphertext: &HpkeCiphertext,
        aad: &[u8],
    ) -> Result<Vec<u8>, HpkeError> {
        algorithms(&self.config)?
            .base_mode_open(
                &self.private_key,
                ciphertext.encapsulated_key(),
                info,
                ciphertext.payload(),
                aad,
            )
            .map_err(|_| HpkeError::Crypto("open"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_shares_open_only_with_the_same_info_and_aad() {
        let keypair = HpkeKeypair::generate(7);
        let info = application_info(Label::InputShare, Role::Client, Role::Helper);
        assert_eq!(&info[..18], b"dap-09 input share");
        assert_eq!(info[18..], [Role::Client as u8, Role::Helper as u8]);
        let sealed = seal(&keypair.config, &info, b"share", b"aad").unwrap();
        assert_eq!(u8::from(*sealed.config_id()), 7);
        assert_eq!(keypair.open(&info, &sealed, b"aad").unwrap(), b"share");
        assert!(keypair.open(&info, &sealed, b"other aad").is_err());
        let leader_info = application_info(Label::InputShare, Role::Client, Role::Leader);
        assert!(keypair.open(&leader_info, &sealed, b"aad").is_err());
        assert!(
            HpkeKeypair::generate(7)
                .open(&info, &sealed, b"aad")
                .is_err()
        );
    }

    #[test]
    fn vdaf_parameters_are_checked() {
        assert!(vdaf(&VdafParams::sum_vec(1000)).is_ok());
        assert_eq!(optimal_chunk_length(1000), 33);
        for bad in [
            VdafParams::Prio3SumVec {
                bits: 2,
                length: 10,
                chunk_length: 3,
            },
            VdafParams::Prio3SumVec {
                bits: 1,
                length: 0,
                chunk_length: 1,
            },
            VdafParams::Prio3SumVec {
                bits: 1,
                length: 10,
                chunk_length: 11,
            },
            VdafParams::Prio3SumVec {
                bits: 1,
                length: MAX_LENGTH + 1,
                chunk_length: 10,
            },
        ] {
            assert!(vdaf(&bad).is_err(), "{bad:?}");
        }
    }

    /// The config's shape computes the chunk length without prio: it must be prio's.
    #[test]
    fn the_configs_chunk_length_is_prios() {
        for length in (1..=5000).chain([9_999, 10_000, 65_535, 65_536, 99_999, MAX_LENGTH]) {
            assert_eq!(
                tally_protocol::config::aggregation::optimal_chunk_length(length),
                optimal_chunk_length(length),
                "{length}"
            );
        }
    }

    #[test]
    fn vdaf_params_serialise_like_janus_names_them() {
        let json = serde_json::to_value(VdafParams::sum_vec(58)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "Prio3SumVec", "bits": 1, "length": 58, "chunk_length": 9})
        );
        assert!(
            serde_json::from_value::<VdafParams>(serde_json::json!({
                "type": "Prio3SumVec", "bits": 1, "length": 58, "chunk_length": 8, "extra": 1
            }))
            .is_err()
        );
    }
}
