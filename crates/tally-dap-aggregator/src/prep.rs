//! Opening one aggregator's share of a report: the steps leader and helper share before the
//! VDAF's preparation (DAP-09 §4.5.1.2), each failure mapped to DAP's prepare error.

use std::collections::HashSet;

use prio::vdaf::Vdaf as _;
use tally_dap::draft::messages::{
    Decode, HpkeCiphertext, ParameterizedDecode, PlaintextInputShare, PrepareError, ReportMetadata,
    Role,
};
use tally_dap::draft::{self, Label, Vdaf};

use crate::keys::KeySet;
use crate::task::Task;

/// The VDAF's public share.
pub type PublicShare = <Vdaf as prio::vdaf::Vdaf>::PublicShare;
/// The VDAF's input share.
pub type InputShare = <Vdaf as prio::vdaf::Vdaf>::InputShare;

/// Decrypts and decodes `role`'s input share of a report, and decodes its public share.
pub fn open_share(
    task: &Task,
    keys: &KeySet,
    now: u64,
    role: Role,
    metadata: &ReportMetadata,
    public_share: &[u8],
    ciphertext: &HpkeCiphertext,
) -> Result<(PublicShare, InputShare), PrepareError> {
    let keypair = keys
        .accepted(u8::from(*ciphertext.config_id()), now)
        .ok_or(PrepareError::HpkeUnknownConfigId)?;
    let aad = draft::input_share_aad(task.id, metadata, public_share)
        .map_err(|_| PrepareError::InvalidMessage)?;
    let info = draft::application_info(Label::InputShare, Role::Client, role);
    let plaintext = keypair
        .open(&info, ciphertext, &aad)
        .map_err(|_| PrepareError::HpkeDecryptError)?;
    let plaintext =
        PlaintextInputShare::get_decoded(&plaintext).map_err(|_| PrepareError::InvalidMessage)?;
    let mut extension_types = HashSet::new();
    if !plaintext
        .extensions()
        .iter()
        .all(|e| extension_types.insert(*e.extension_type()))
    {
        return Err(PrepareError::InvalidMessage);
    }
    let index = role.index().ok_or(PrepareError::InvalidMessage)?;
    let input_share = InputShare::get_decoded_with_param(&(&task.vdaf, index), plaintext.payload())
        .map_err(|_| PrepareError::InvalidMessage)?;
    let public_share = decode_public_share(&task.vdaf, public_share)?;
    debug_assert_eq!(task.vdaf.num_aggregators(), 2);
    Ok((public_share, input_share))
}

/// Decodes a public share.
pub fn decode_public_share(vdaf: &Vdaf, bytes: &[u8]) -> Result<PublicShare, PrepareError> {
    PublicShare::get_decoded_with_param(vdaf, bytes).map_err(|_| PrepareError::InvalidMessage)
}

/// The short name metrics count a prepare error under.
pub fn error_label(error: PrepareError) -> &'static str {
    match error {
        PrepareError::BatchCollected => "batch_collected",
        PrepareError::ReportReplayed => "report_replayed",
        PrepareError::ReportDropped => "report_dropped",
        PrepareError::HpkeUnknownConfigId => "hpke_unknown_config_id",
        PrepareError::HpkeDecryptError => "hpke_decrypt_error",
        PrepareError::VdafPrepError => "vdaf_prep_error",
        PrepareError::BatchSaturated => "batch_saturated",
        PrepareError::TaskExpired => "task_expired",
        PrepareError::InvalidMessage => "invalid_message",
        PrepareError::ReportTooEarly => "report_too_early",
    }
}

/// A prepare error from its label (records store labels).
pub fn error_from_label(label: &str) -> Option<PrepareError> {
    use PrepareError::*;
    [
        BatchCollected,
        ReportReplayed,
        ReportDropped,
        HpkeUnknownConfigId,
        HpkeDecryptError,
        VdafPrepError,
        BatchSaturated,
        TaskExpired,
        InvalidMessage,
        ReportTooEarly,
    ]
    .into_iter()
    .find(|e| error_label(*e) == label)
}
