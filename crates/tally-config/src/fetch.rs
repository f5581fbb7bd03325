//! Downloading the config from the collector (ureq), with a size cap and a total time limit.
//!
//! Redirects are followed only within the endpoint's own origin (scheme, host and port), at
//! most [`MAX_REDIRECTS`] of them: the pinned URL says where configs come from, and a signed
//! config served by another host is refused before it is read, whoever signed it.
//!
//! Fetching happens only in mode `on` (the caller decides) and at most about once a day
//! ([`refresh`]). A download that verifies replaces the cache; one that doesn't is refused and
//! recorded, and nothing is uploaded on its strength.

use std::path::Path;
use std::time::{Duration, Instant};

use tally_protocol::{Day, MAX_CONFIG_BYTES};

use crate::cache::{self, CacheState};
use crate::endpoint::Endpoint;
use crate::ratchet::AcceptError;
use crate::verify::{MAX_SIGNATURE_BYTES, Verified, VerifyError};
use crate::{ConfigStoreError, EndpointError};

/// Limits for one fetch of the config and its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchOptions {
    /// Budget for both downloads together: connecting, sending, and reading every byte.
    pub timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            timeout: Duration::from_secs(30),
        }
    }
}

/// Why a fetch produced no verified config.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "could not download {url}: {reason}; check the network and the endpoint URL (`tally \
         status` shows it); tally tries again on a later day"
    )]
    Network { url: String, reason: String },
    #[error(
        "downloading {url} took longer than {seconds} s and was abandoned; tally tries again \
         on a later day"
    )]
    Timeout { url: String, seconds: u64 },
    #[error("{url} answered HTTP {status}; check the endpoint URL, or ask the collector")]
    Status { url: String, status: u16 },
    #[error("{url} is over the {max} byte limit; it was refused without being read further")]
    TooLarge { url: String, max: usize },
    #[error(
        "{url} redirects to {to}, which is not the collector's own origin (scheme, host and \
         port); tally does not follow it and fetched nothing. If the collector moved, pin its \
         new URL with `tally on --endpoint URL --key KEY`"
    )]
    CrossOriginRedirect { url: String, to: String },
    #[error("{url} redirected more than {max} times; tally gave up and fetched nothing")]
    TooManyRedirects { url: String, max: usize },
    #[error("the downloaded config was refused: {0}")]
    Refused(#[from] VerifyError),
    #[error(transparent)]
    Store(#[from] ConfigStoreError),
    #[error("the collector endpoint is unusable: {0}")]
    BadEndpoint(#[from] EndpointError),
}

impl FetchError {
    /// Whether the failure was in getting the bytes (network, timeout, HTTP status, size) rather
    /// than in what the bytes said. Only then may a previously verified cached config stand in.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            FetchError::Network { .. }
                | FetchError::Timeout { .. }
                | FetchError::Status { .. }
                | FetchError::TooLarge { .. }
                | FetchError::CrossOriginRedirect { .. }
                | FetchError::TooManyRedirects { .. }
        )
    }
}

impl From<AcceptError> for FetchError {
    fn from(e: AcceptError) -> Self {
        match e {
            AcceptError::Refused(v) => FetchError::Refused(v),
            AcceptError::Store(s) => FetchError::Store(s),
            AcceptError::BadEndpoint(b) => FetchError::BadEndpoint(b),
        }
    }
}

/// Downloads `{url}/config.json` and its `.minisig`, verifies them, raises the ratchet and
/// stores them in `config_dir`. Any failure is recorded in `state.json` and leaves the cached
/// config as it was.
pub fn fetch(
    endpoint: &Endpoint,
    config_dir: &Path,
    today: Day,
    options: &FetchOptions,
) -> Result<Verified, FetchError> {
    let result = fetch_unrecorded(endpoint, config_dir, today, options);
    if let Err(e) = &result {
        cache::record_failure(config_dir, today, &e.to_string());
    }
    result
}

fn fetch_unrecorded(
    endpoint: &Endpoint,
    config_dir: &Path,
    today: Day,
    options: &FetchOptions,
) -> Result<Verified, FetchError> {
    let deadline = Instant::now() + options.timeout;
    let body = download(
        &endpoint.config_url(),
        MAX_CONFIG_BYTES,
        deadline,
        options.timeout,
    )?;
    let signature = download(
        &endpoint.signature_url(),
        MAX_SIGNATURE_BYTES,
        deadline,
        options.timeout,
    )?;
    Ok(cache::accept_and_store(
        endpoint, config_dir, &body, &signature, today,
    )?)
}

/// The cached config if it was fetched today and still verifies; otherwise a fresh fetch. If
/// the fetch fails for a transport reason (no network, timeout, HTTP error), a cached config
/// that still verifies is used; if the download arrived but was refused (bad signature,
/// unknown key, rollback, expired), the error is returned and nothing is uploaded.
pub fn refresh(
    endpoint: &Endpoint,
    config_dir: &Path,
    today: Day,
    options: &FetchOptions,
) -> Result<Verified, FetchError> {
    if !CacheState::load(config_dir).is_stale(today)
        && let Ok(verified) = cache::current_for(endpoint, config_dir, today)
    {
        return Ok(verified);
    }
    match fetch(endpoint, config_dir, today, options) {
        Ok(verified) => Ok(verified),
        Err(e) if e.is_transport() => cache::current_for(endpoint, config_dir, today).or(Err(e)),
        Err(e) => Err(e),
    }
}

/// Most redirects followed for one download (all within the endpoint's origin).
pub const MAX_REDIRECTS: usize = 5;

fn download(
    url: &str,
    max: usize,
    deadline: Instant,
    total: Duration,
) -> Result<Vec<u8>, FetchError> {
    let timeout_err = || FetchError::Timeout {
        url: url.to_string(),
        seconds: total.as_secs(),
    };
    let origin = crate::endpoint::origin(url);
    let mut current = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let remaining = deadline
            .checked_duration_since(Instant::now())
            .ok_or_else(timeout_err)?;
        let mut response = ureq::get(&current)
            .config()
            .timeout_global(Some(remaining))
            .http_status_as_error(false)
            // Every redirect is looked at here, never followed by ureq.
            .max_redirects(0)
            .build()
            .call()
            .map_err(|e| transport_error(&current, e, total))?;
        let status = response.status().as_u16();
        if (300..400).contains(&status)
            && let Some(location) = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
        {
            let next = resolve(&current, location);
            if origin.is_none() || crate::endpoint::origin(&next) != origin {
                return Err(FetchError::CrossOriginRedirect {
                    url: current,
                    to: next,
                });
            }
            current = next;
            continue;
        }
        if !(200..300).contains(&status) {
            return Err(FetchError::Status {
                url: current,
                status,
            });
        }
        return response
            .body_mut()
            .with_config()
            .limit(max as u64)
            .read_to_vec()
            .map_err(|e| transport_error(&current, e, total));
    }
    Err(FetchError::TooManyRedirects {
        url: url.to_string(),
        max: MAX_REDIRECTS,
    })
}

/// The URL a `Location` header names, seen from `base`: absolute, scheme-relative (`//host/…`),
/// absolute path (`/…`) or relative to `base`'s directory.
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    if let Some(authority_path) = location.strip_prefix("//") {
        return format!("{scheme}://{authority_path}");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = &rest[authority.len()..];
    let path = path.split(['?', '#']).next().unwrap_or("");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    format!("{scheme}://{authority}{dir}{location}")
}

fn transport_error(url: &str, e: ureq::Error, total: Duration) -> FetchError {
    match e {
        ureq::Error::Timeout(_) => FetchError::Timeout {
            url: url.to_string(),
            seconds: total.as_secs(),
        },
        ureq::Error::BodyExceedsLimit(max) => FetchError::TooLarge {
            url: url.to_string(),
            max: max as usize,
        },
        other => FetchError::Network {
            url: url.to_string(),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn locations_resolve_against_the_request() {
        let base = "http://127.0.0.1:8080/tally/config.json";
        assert_eq!(
            resolve(base, "https://evil.example/c.json"),
            "https://evil.example/c.json"
        );
        assert_eq!(
            resolve(base, "//evil.example/c.json"),
            "http://evil.example/c.json"
        );
        assert_eq!(
            resolve(base, "/v2/config.json"),
            "http://127.0.0.1:8080/v2/config.json"
        );
        assert_eq!(
            resolve(base, "v2.json"),
            "http://127.0.0.1:8080/tally/v2.json"
        );
        assert_eq!(resolve("http://h", "x"), "http://h/x");
    }
}
