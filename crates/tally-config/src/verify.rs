//! Verifying a signed config body: the only way an [`UploadConfig`] becomes trusted.
//!
//! Order matters and is part of the promise: the size is checked before anything else; the
//! signature is checked (prehashed only, against a pinned key chosen by key id) before the body
//! is parsed; the trusted comment is read only after the signature verified; then the config's
//! own rules, its expiry, and finally the rollback ratchet.

use tally_protocol::config::ConfigError;
use tally_protocol::{Day, MAX_CONFIG_BYTES, UploadConfig};

use crate::keys::{KeyId, PinnedKey, signature_header};

/// Largest signature file accepted (a real one is about 300 bytes).
pub const MAX_SIGNATURE_BYTES: usize = 4096;

/// A config whose signature verified against a pinned key, and which is not expired.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub config: UploadConfig,
    /// The pinned key that signed it.
    pub key_id: KeyId,
    /// The signature's trusted comment (signed, so it can be shown as the collector wrote it).
    pub trusted_comment: String,
}

/// Why a config was not accepted. Every message says what to do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "the config is {0} bytes, over the {max} byte limit; it was refused without being read \
         (ask the collector to publish a smaller config)",
        max = MAX_CONFIG_BYTES
    )]
    TooLarge(usize),
    #[error(
        "the signature file is {0} bytes, over the {max} byte limit; it is not a minisign \
         signature (check the endpoint URL)",
        max = MAX_SIGNATURE_BYTES
    )]
    SignatureTooLarge(usize),
    #[error(
        "no collector key is pinned, so no config can be trusted; pin one with \
         `tally on --endpoint URL --key KEY`"
    )]
    NoPinnedKeys,
    #[error(
        "the signature is not a minisign signature (expected an `untrusted comment:` line, a \
         base64 line, a `trusted comment:` line and a base64 line); check the endpoint URL"
    )]
    MalformedSignature,
    #[error(
        "the config has a legacy (non-prehashed) minisign signature, which tally refuses; the \
         collector must sign it again with a current minisign, without `-l`"
    )]
    LegacySignature,
    #[error(
        "the config is signed by key {key_id}, which is not pinned (pinned: {pinned}); if the \
         collector rotated keys, pin the new key with `tally on --endpoint URL --key KEY`"
    )]
    UnknownKey { key_id: KeyId, pinned: String },
    #[error(
        "the signature by key {key_id} does not match the config: the config or its signature \
         was altered, or they are not a pair; nothing in it is used"
    )]
    BadSignature { key_id: KeyId },
    #[error("the config's signature verified, but its contents are invalid: {0}")]
    Invalid(#[from] ConfigError),
    #[error(
        "the config expired on {expires} (today is {today}); the collector must publish a fresh \
         one, and until then nothing is uploaded"
    )]
    Expired { expires: Day, today: Day },
    #[error(
        "the config has version {version}, lower than version {highest} already accepted from \
         key {key_id}: refused as a rollback; the collector must publish version {highest} or \
         higher"
    )]
    Rollback {
        version: u64,
        highest: u64,
        key_id: KeyId,
    },
}

/// Verifies `body` against `signature` (the text of a `.minisig` file) and the pinned `keys`,
/// and checks that the config is well-formed and not expired on `today`. Does not look at the
/// rollback ratchet: see [`crate::Ratchet::check`]. Never panics.
pub fn verify_config(
    body: &[u8],
    signature: &[u8],
    keys: &[PinnedKey],
    today: Day,
) -> Result<Verified, VerifyError> {
    if body.len() > MAX_CONFIG_BYTES {
        return Err(VerifyError::TooLarge(body.len()));
    }
    if signature.len() > MAX_SIGNATURE_BYTES {
        return Err(VerifyError::SignatureTooLarge(signature.len()));
    }
    if keys.is_empty() {
        return Err(VerifyError::NoPinnedKeys);
    }
    let signature = std::str::from_utf8(signature).map_err(|_| VerifyError::MalformedSignature)?;
    let header = signature_header(signature).ok_or(VerifyError::MalformedSignature)?;
    if !header.prehashed {
        return Err(VerifyError::LegacySignature);
    }
    let key = keys
        .iter()
        .find(|k| k.key_id == header.key_id)
        .ok_or_else(|| VerifyError::UnknownKey {
            key_id: header.key_id,
            pinned: keys
                .iter()
                .map(|k| k.key_id.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let decoded = minisign_verify::Signature::decode(signature)
        .map_err(|_| VerifyError::MalformedSignature)?;
    // `allow_legacy = false`: the check above already refused `Ed`, this is belt and braces.
    key.key
        .verify(body, &decoded, false)
        .map_err(|_| VerifyError::BadSignature { key_id: key.key_id })?;
    // Only now is anything signed read: the trusted comment, then the body.
    let trusted_comment = decoded.trusted_comment().to_string();
    let config = UploadConfig::parse(body)?;
    if today > config.expires {
        return Err(VerifyError::Expired {
            expires: config.expires,
            today,
        });
    }
    Ok(Verified {
        config,
        key_id: key.key_id,
        trusted_comment,
    })
}
