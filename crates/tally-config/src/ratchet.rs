//! The rollback ratchet: per signing key, the highest config version ever accepted.
//!
//! Stored in `config/ratchet.json` as `{"<KEY ID>": <version>}`. A config with a lower version
//! than the recorded one for its key is refused, so an attacker who replays an old, validly
//! signed config (say one with a higher sample rate or more counters) gets nowhere. Equal
//! versions are accepted: refetching the current config is normal.
//!
//! A ratchet file that can't be read is treated as an error, never as "empty": forgetting the
//! ratchet would reopen rollbacks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::keys::KeyId;
use crate::verify::{Verified, VerifyError};
use crate::{ConfigStoreError, fsio};

/// File name of the ratchet inside the data directory's `config/`.
pub const RATCHET_FILE: &str = "ratchet.json";

/// The highest accepted version per key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ratchet {
    highest: BTreeMap<KeyId, u64>,
}

impl Ratchet {
    /// Loads the ratchet from `config_dir` (missing file: nothing accepted yet).
    pub fn load(config_dir: &Path) -> Result<Ratchet, ConfigStoreError> {
        let path = Self::path(config_dir);
        let Some(bytes) = tally_home::fsio::read_capped(&path, 64 * 1024)
            .map_err(|e| ConfigStoreError::io(&path, e))?
        else {
            return Ok(Ratchet::default());
        };
        let raw: BTreeMap<String, u64> = serde_json::from_slice(&bytes)
            .map_err(|e| ConfigStoreError::corrupt(&path, e.to_string()))?;
        let mut highest = BTreeMap::new();
        for (hex, version) in raw {
            let id = KeyId::from_hex(&hex)
                .ok_or_else(|| ConfigStoreError::corrupt(&path, format!("bad key id {hex:?}")))?;
            highest.insert(id, version);
        }
        Ok(Ratchet { highest })
    }

    fn path(config_dir: &Path) -> PathBuf {
        config_dir.join(RATCHET_FILE)
    }

    /// The highest version accepted from `key_id`, if any.
    pub fn highest(&self, key_id: KeyId) -> Option<u64> {
        self.highest.get(&key_id).copied()
    }

    /// Refuses `verified` if its version is below the highest accepted from its key.
    pub fn check(&self, verified: &Verified) -> Result<(), VerifyError> {
        match self.highest(verified.key_id) {
            Some(highest) if verified.config.version < highest => Err(VerifyError::Rollback {
                version: verified.config.version,
                highest,
                key_id: verified.key_id,
            }),
            _ => Ok(()),
        }
    }

    /// Checks `verified` and, if it passes, raises the ratchet to its version and saves it.
    pub fn accept(config_dir: &Path, verified: &Verified) -> Result<(), AcceptError> {
        let mut ratchet = Ratchet::load(config_dir)?;
        ratchet.check(verified)?;
        let entry = ratchet.highest.entry(verified.key_id).or_insert(0);
        if *entry == verified.config.version
            && std::fs::symlink_metadata(Self::path(config_dir)).is_ok()
        {
            return Ok(());
        }
        *entry = verified.config.version;
        ratchet.save(config_dir)?;
        Ok(())
    }

    fn save(&self, config_dir: &Path) -> Result<(), ConfigStoreError> {
        let raw: BTreeMap<String, u64> = self
            .highest
            .iter()
            .map(|(id, v)| (id.to_string(), *v))
            .collect();
        let mut bytes = serde_json::to_vec_pretty(&raw).expect("a map of numbers serializes");
        bytes.push(b'\n');
        let path = Self::path(config_dir);
        fsio::write_atomically(&path, &bytes).map_err(|e| ConfigStoreError::io(&path, e))
    }
}

/// Why [`Ratchet::accept`] did not accept.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(transparent)]
    Refused(#[from] VerifyError),
    #[error(transparent)]
    Store(#[from] ConfigStoreError),
    #[error("the collector endpoint is unusable: {0}")]
    BadEndpoint(#[from] crate::EndpointError),
}
