//! The collector endpoint: its URL and the public keys pinned for it.
//!
//! Persisted in `config/endpoint.json` by `tally on --endpoint URL --key KEY`. The URL is the
//! collector's base: the config is `{url}/config.json`, its signature
//! `{url}/config.json.minisig`, uploads go to `{url}/upload/{week}`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tally_protocol::Day;

use crate::keys::{KeyError, PinnedKey};
use crate::{ConfigStoreError, fsio};

/// File name of the endpoint inside the data directory's `config/`.
pub const ENDPOINT_FILE: &str = "endpoint.json";

/// A collector: where it is and which keys sign its configs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Base URL, `http://` or `https://`, without a trailing slash.
    pub url: String,
    /// Pinned minisign public keys (base64 lines). More than one lets the collector rotate.
    pub keys: Vec<String>,
}

/// An endpoint that can't be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error(
        "{0:?} is not a collector URL: it must start with https:// (or http:// for a collector \
         on this machine or network) and contain no spaces, e.g. https://tally.example.org"
    )]
    BadUrl(String),
    #[error("no key is pinned for the collector; give its public key with --key KEY")]
    NoKeys,
    #[error(transparent)]
    BadKey(#[from] KeyError),
}

impl Endpoint {
    /// Checks and normalizes a URL and keys: the URL loses trailing slashes, each key is
    /// reduced to its base64 line, duplicates are dropped.
    pub fn new(url: &str, keys: &[String]) -> Result<Endpoint, EndpointError> {
        let url = url.trim().trim_end_matches('/');
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| EndpointError::BadUrl(url.to_string()))?;
        if rest.is_empty()
            || rest.starts_with('/')
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(EndpointError::BadUrl(url.to_string()));
        }
        let mut pinned: Vec<String> = Vec::new();
        for key in keys {
            let key = PinnedKey::parse(key)?.base64;
            if !pinned.contains(&key) {
                pinned.push(key);
            }
        }
        if pinned.is_empty() {
            return Err(EndpointError::NoKeys);
        }
        Ok(Endpoint {
            url: url.to_string(),
            keys: pinned,
        })
    }

    /// The pinned keys, parsed.
    pub fn pinned_keys(&self) -> Result<Vec<PinnedKey>, KeyError> {
        self.keys.iter().map(|k| PinnedKey::parse(k)).collect()
    }

    pub fn config_url(&self) -> String {
        format!("{}/config.json", self.url)
    }

    pub fn signature_url(&self) -> String {
        format!("{}/config.json.minisig", self.url)
    }

    /// Where the report for the week starting `week` is POSTed.
    pub fn upload_url(&self, week: Day) -> String {
        format!("{}/upload/{week}", self.url)
    }

    /// Reads `config/endpoint.json`; `Ok(None)` if no endpoint was ever set.
    pub fn load(config_dir: &Path) -> Result<Option<Endpoint>, ConfigStoreError> {
        let path = config_dir.join(ENDPOINT_FILE);
        let Some(bytes) =
            fsio::read_capped(&path, 64 * 1024).map_err(|e| ConfigStoreError::io(&path, e))?
        else {
            return Ok(None);
        };
        let raw: Endpoint = serde_json::from_slice(&bytes)
            .map_err(|e| ConfigStoreError::corrupt(&path, e.to_string()))?;
        Endpoint::new(&raw.url, &raw.keys)
            .map(Some)
            .map_err(|e| ConfigStoreError::corrupt(&path, e.to_string()))
    }

    /// Writes `config/endpoint.json` atomically.
    pub fn save(&self, config_dir: &Path) -> Result<(), ConfigStoreError> {
        let path = config_dir.join(ENDPOINT_FILE);
        let mut bytes = serde_json::to_vec_pretty(self).expect("an endpoint serializes");
        bytes.push(b'\n');
        fsio::write_atomically(&path, &bytes).map_err(|e| ConfigStoreError::io(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";

    #[test]
    fn normalizes_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let file_form = format!("untrusted comment: minisign public key\n{KEY}\n");
        let e = Endpoint::new("https://c.example/tally/", &[KEY.into(), file_form]).unwrap();
        assert_eq!(e.url, "https://c.example/tally");
        assert_eq!(e.keys, [KEY]);
        assert_eq!(e.config_url(), "https://c.example/tally/config.json");
        assert_eq!(
            e.upload_url("2026-11-16".parse().unwrap()),
            "https://c.example/tally/upload/2026-11-16"
        );
        assert_eq!(Endpoint::load(dir.path()).unwrap(), None);
        e.save(dir.path()).unwrap();
        assert_eq!(Endpoint::load(dir.path()).unwrap(), Some(e));
    }

    #[test]
    fn refuses_bad_urls_and_keys() {
        for url in [
            "",
            "ftp://x",
            "https://",
            "https:///x",
            "http://a b",
            "c.example",
        ] {
            assert!(
                matches!(
                    Endpoint::new(url, &[KEY.into()]),
                    Err(EndpointError::BadUrl(_))
                ),
                "{url}"
            );
        }
        assert_eq!(
            Endpoint::new("https://c.example", &[]),
            Err(EndpointError::NoKeys)
        );
        assert!(matches!(
            Endpoint::new("https://c.example", &["nope".into()]),
            Err(EndpointError::BadKey(_))
        ));
    }

    #[test]
    fn a_hand_edited_bad_endpoint_file_is_reported_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(ENDPOINT_FILE),
            r#"{"url":"gopher://x","keys":[]}"#,
        )
        .unwrap();
        let err = Endpoint::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("endpoint.json"), "{err}");
    }
}
