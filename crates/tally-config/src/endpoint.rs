//! The collector endpoint: its URL and the public keys pinned for it.
//!
//! Persisted in `config/endpoint.json` by `tally on --endpoint URL --key KEY`. The URL is the
//! collector's base: the config is `{url}/config.json`, its signature
//! `{url}/config.json.minisig`, uploads go to `{url}/upload/{week}`.
//!
//! The URL is `https://`, or `http://` to a collector on this machine (a loopback address or
//! `localhost`). Plain `http://` to any other host carries reports in the clear and lets anyone
//! on the way answer in the collector's name, so it is refused unless the user forces it
//! (`tally on --allow-http`, kept in the file as `allow_http`).

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
    /// The user forced a plain `http://` URL to a host that is not this machine.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_http: bool,
}

/// An endpoint that can't be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error(
        "{0:?} is not a collector URL: it must start with https:// (or http:// for a collector \
         on this machine) and contain no spaces, e.g. https://tally.example.org"
    )]
    BadUrl(String),
    #[error(
        "{0} is plain http:// to another machine: reports would travel unencrypted and anyone on \
         the way could answer in the collector's name; use https://, or force it with `tally on \
         --allow-http` if the network is yours"
    )]
    PlainHttp(String),
    #[error("no key is pinned for the collector; give its public key with --key KEY")]
    NoKeys,
    #[error(transparent)]
    BadKey(#[from] KeyError),
}

impl Endpoint {
    /// Checks and normalizes a URL and keys: the URL loses trailing slashes, each key is
    /// reduced to its base64 line, duplicates are dropped. Plain `http://` only to this machine.
    pub fn new(url: &str, keys: &[String]) -> Result<Endpoint, EndpointError> {
        Self::with_options(url, keys, false)
    }

    /// [`Endpoint::new`], with `allow_http` forcing a plain `http://` URL to another machine.
    pub fn with_options(
        url: &str,
        keys: &[String],
        allow_http: bool,
    ) -> Result<Endpoint, EndpointError> {
        let url = url.trim().trim_end_matches('/');
        let (plain, rest) = match url.strip_prefix("https://") {
            Some(rest) => (false, rest),
            None => (
                true,
                url.strip_prefix("http://")
                    .ok_or_else(|| EndpointError::BadUrl(url.to_string()))?,
            ),
        };
        if rest.is_empty()
            || rest.starts_with('/')
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(EndpointError::BadUrl(url.to_string()));
        }
        if plain && !allow_http && !is_loopback_host(rest) {
            return Err(EndpointError::PlainHttp(url.to_string()));
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
            allow_http: allow_http && plain,
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
        let Some(bytes) = tally_home::fsio::read_capped(&path, 64 * 1024)
            .map_err(|e| ConfigStoreError::io(&path, e))?
        else {
            return Ok(None);
        };
        let raw: Endpoint = serde_json::from_slice(&bytes)
            .map_err(|e| ConfigStoreError::corrupt(&path, e.to_string()))?;
        Endpoint::with_options(&raw.url, &raw.keys, raw.allow_http)
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

/// Whether the host of `rest` (a URL after its `scheme://`) is this machine: `localhost`, or
/// a loopback address (127.0.0.0/8, `[::1]`).
fn is_loopback_host(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The origin of an `http(s)://` URL: scheme, host (lowercased) and port (the scheme's default
/// when none is given). `None` for anything else.
pub fn origin(url: &str) -> Option<(String, String, u16)> {
    let uri: ureq::http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let host = uri.host()?.to_ascii_lowercase();
    Some((scheme, host, uri.port_u16().unwrap_or(default)))
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
    fn plain_http_only_to_this_machine_unless_forced() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost/tally",
            "http://[::1]:9/x",
            "http://127.1.2.3",
            "https://c.example",
        ] {
            assert!(Endpoint::new(ok, &[KEY.into()]).is_ok(), "{ok}");
        }
        for plain in [
            "http://c.example",
            "http://10.0.0.1:8080",
            "http://127.0.0.1.evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1@evil.example",
        ] {
            assert!(
                matches!(
                    Endpoint::new(plain, &[KEY.into()]),
                    Err(EndpointError::PlainHttp(_))
                ),
                "{plain}"
            );
            let forced = Endpoint::with_options(plain, &[KEY.into()], true).unwrap();
            assert!(forced.allow_http);
        }
        // The choice is kept, and a hand-edited file without it is refused.
        let dir = tempfile::tempdir().unwrap();
        let forced = Endpoint::with_options("http://c.example", &[KEY.into()], true).unwrap();
        forced.save(dir.path()).unwrap();
        assert_eq!(Endpoint::load(dir.path()).unwrap(), Some(forced));
        std::fs::write(
            dir.path().join(ENDPOINT_FILE),
            format!(r#"{{"url":"http://c.example","keys":["{KEY}"]}}"#),
        )
        .unwrap();
        let err = Endpoint::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("--allow-http"), "{err}");
        // https never stores the flag.
        let https = Endpoint::with_options("https://c.example", &[KEY.into()], true).unwrap();
        assert!(!https.allow_http);
    }

    #[test]
    fn origins() {
        assert_eq!(
            origin("https://C.example/x"),
            Some(("https".into(), "c.example".into(), 443))
        );
        assert_eq!(
            origin("https://c.example:443/"),
            origin("https://c.example/y")
        );
        assert_ne!(origin("http://c.example/"), origin("https://c.example/"));
        assert_ne!(origin("http://c.example:81/"), origin("http://c.example/"));
        assert_eq!(origin("ftp://c.example/"), None);
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
