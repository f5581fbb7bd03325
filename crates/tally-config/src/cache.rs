//! The cached config: the last config that verified, its signature, and a small state file.
//!
//! Files in the data directory's `config/`:
//! - `config.json` and `config.json.minisig`: written only after they verified together.
//! - `state.json`: when the config was last fetched, which version verified, and the last error
//!   (for `tally status`).
//!
//! The cache is re-verified every time it is used ([`current`]): signature against the pinned
//! keys, expiry against today, version against the ratchet. A crash between writing the two
//! files leaves a pair that doesn't verify, which reads as "not usable" and is fixed by the next
//! fetch.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tally_protocol::{Day, MAX_CONFIG_BYTES};

use crate::endpoint::{Endpoint, EndpointError};
use crate::ratchet::{AcceptError, Ratchet};
use crate::verify::{MAX_SIGNATURE_BYTES, Verified, VerifyError, verify_config};
use crate::{ConfigStoreError, fsio};

pub const CONFIG_FILE: &str = "config.json";
pub const SIGNATURE_FILE: &str = "config.json.minisig";
pub const STATE_FILE: &str = "state.json";

/// What `tally status` shows about the config cache.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheState {
    /// Day of the last fetch whose config verified and was stored.
    pub fetched_at: Option<Day>,
    /// Version of the stored config.
    pub verified_version: Option<u64>,
    /// Key id that signed the stored config.
    pub key_id: Option<String>,
    /// Day of the last fetch attempt, successful or not.
    pub last_attempt: Option<Day>,
    /// What went wrong on the last attempt, if it failed.
    pub last_error: Option<String>,
}

impl CacheState {
    /// Reads `state.json`; a missing or unreadable one reads as empty (it is informational
    /// only: nothing trusts it, every use re-verifies the cached files).
    pub fn load(config_dir: &Path) -> CacheState {
        tally_home::fsio::read_capped(&config_dir.join(STATE_FILE), 64 * 1024)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, config_dir: &Path) -> Result<(), ConfigStoreError> {
        let path = config_dir.join(STATE_FILE);
        let mut bytes = serde_json::to_vec_pretty(self).expect("the state serializes");
        bytes.push(b'\n');
        fsio::write_atomically(&path, &bytes).map_err(|e| ConfigStoreError::io(&path, e))
    }

    /// Whether the cached config should be fetched again: never fetched, or fetched on an
    /// earlier day than `today`.
    pub fn is_stale(&self, today: Day) -> bool {
        self.fetched_at.is_none_or(|day| today.days_since(day) >= 1)
    }
}

/// Why no verified config is available. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigUnavailable {
    #[error(
        "no collector endpoint is set; `tally on --endpoint URL --key KEY` sets one (nothing is \
         uploaded without it)"
    )]
    NoEndpoint,
    #[error("the collector endpoint is unusable: {0}")]
    BadEndpoint(#[from] EndpointError),
    #[error(
        "no config has been fetched from the collector yet; `tally upload` fetches it (in mode \
         on), after which `tally config` shows it"
    )]
    NotFetched,
    #[error("the cached config is not usable: {0}")]
    Rejected(#[from] VerifyError),
    #[error(transparent)]
    Store(#[from] ConfigStoreError),
}

/// The cached config, verified now: the only way the report builder and the uploader get a
/// config. Fails if there is no endpoint, no cached config, or the cached config does not verify
/// against the pinned keys, has expired by `today`, or is below the ratchet.
pub fn current(config_dir: &Path, today: Day) -> Result<Verified, ConfigUnavailable> {
    let endpoint = Endpoint::load(config_dir)?.ok_or(ConfigUnavailable::NoEndpoint)?;
    current_for(&endpoint, config_dir, today)
}

/// [`current`] with an endpoint already at hand.
pub fn current_for(
    endpoint: &Endpoint,
    config_dir: &Path,
    today: Day,
) -> Result<Verified, ConfigUnavailable> {
    let keys = endpoint.pinned_keys().map_err(EndpointError::from)?;
    let read = |name: &str, max: usize| {
        let path = config_dir.join(name);
        tally_home::fsio::read_capped(&path, max as u64).map_err(|e| ConfigStoreError::io(&path, e))
    };
    // One byte over the caps, so that `verify_config` reports the size rather than `read` an IO
    // error.
    let body = read(CONFIG_FILE, MAX_CONFIG_BYTES + 1)?;
    let signature = read(SIGNATURE_FILE, MAX_SIGNATURE_BYTES + 1)?;
    let (Some(body), Some(signature)) = (body, signature) else {
        return Err(ConfigUnavailable::NotFetched);
    };
    let verified = verify_config(&body, &signature, &keys, today)?;
    Ratchet::load(config_dir)?.check(&verified)?;
    Ok(verified)
}

/// Verifies a freshly downloaded body and signature, raises the ratchet, and stores them as the
/// cached config. Nothing is stored unless every check passed.
pub fn accept_and_store(
    endpoint: &Endpoint,
    config_dir: &Path,
    body: &[u8],
    signature: &[u8],
    today: Day,
) -> Result<Verified, AcceptError> {
    let keys = endpoint
        .pinned_keys()
        .map_err(|e| AcceptError::BadEndpoint(e.into()))?;
    let verified = verify_config(body, signature, &keys, today)?;
    Ratchet::accept(config_dir, &verified)?;
    for (name, bytes) in [(SIGNATURE_FILE, signature), (CONFIG_FILE, body)] {
        let path = config_dir.join(name);
        fsio::write_atomically(&path, bytes).map_err(|e| ConfigStoreError::io(&path, e))?;
    }
    let state = CacheState {
        fetched_at: Some(today),
        verified_version: Some(verified.config.version),
        key_id: Some(verified.key_id.to_string()),
        last_attempt: Some(today),
        last_error: None,
    };
    state.save(config_dir)?;
    Ok(verified)
}

/// Records a failed attempt in `state.json` (best effort: the state is informational).
pub fn record_failure(config_dir: &Path, today: Day, error: &str) {
    let mut state = CacheState::load(config_dir);
    state.last_attempt = Some(today);
    state.last_error = Some(error.to_string());
    let _ = state.save(config_dir);
}
