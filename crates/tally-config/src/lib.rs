//! The signed upload config on the client: verifying it, remembering it, fetching it.
//!
//! Nothing in a collector's config is used until [`verify_config`] has checked, in this order:
//! the body is at most 1 MiB; the signature is a prehashed (`ED`) minisign signature by one of
//! the endpoint's pinned keys, chosen by key id; it verifies; only then is the trusted comment
//! read and the body parsed and validated; the config has not expired (its `expires` day is
//! today or later). [`Ratchet`] then refuses any version lower than the highest accepted from
//! the same key (rollback), and raises it on acceptance.
//!
//! Files, all in the data directory's `config/`:
//!
//! | file | written by | what |
//! | --- | --- | --- |
//! | `endpoint.json` | [`Endpoint::save`] (`tally on --endpoint URL --key KEY`) | collector URL and pinned keys |
//! | `config.json`, `config.json.minisig` | [`fetch`] | the last config that verified, and its signature |
//! | `state.json` | [`fetch`] | [`CacheState`]: fetched-at day, verified version, last error |
//! | `ratchet.json` | [`Ratchet::accept`] | highest accepted version per key id |
//!
//! Entry points: [`current`] (the cached config, re-verified now: what the report builder and
//! uploader use), [`refresh`] (fetch if stale), [`fetch`], [`verify_config`] (`tally config
//! verify`). Every error's message says what went wrong and how to fix it.

#![forbid(unsafe_code)]

pub mod cache;
pub mod endpoint;
pub mod fetch;
mod fsio;
pub mod keys;
pub mod ratchet;
pub mod verify;

use std::path::Path;

pub use cache::{CacheState, ConfigUnavailable, current, current_for};
pub use endpoint::{Endpoint, EndpointError};
pub use fetch::{FetchError, FetchOptions, fetch, refresh};
pub use keys::{KeyError, KeyId, PinnedKey};
pub use ratchet::{AcceptError, Ratchet};
pub use verify::{Verified, VerifyError, verify_config};

/// A file in `config/` could not be read or written, or holds something tally did not write.
#[derive(Debug, thiserror::Error)]
pub enum ConfigStoreError {
    #[error("{path}: {source}; check that the data directory is writable")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is corrupt ({reason}); delete it and run the command again")]
    Corrupt { path: String, reason: String },
}

impl ConfigStoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ConfigStoreError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &Path, reason: String) -> Self {
        ConfigStoreError::Corrupt {
            path: path.display().to_string(),
            reason,
        }
    }
}
