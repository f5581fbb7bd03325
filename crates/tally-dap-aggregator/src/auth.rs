//! Request authentication between the parties: DAP's `Authorization: Bearer <token>` or
//! `DAP-Auth-Token: <token>` (both accepted, as Janus does).
//!
//! Whoever may start a collection can spend a batch, and whoever may send aggregation jobs can
//! feed the helper; so the leader checks the collector's token and the helper the leader's. A
//! receiving side stores only the SHA-256 of the token it accepts (a stolen task file does not
//! let anyone authenticate), and compares digests without an early exit.

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// The DAP-09 token header.
pub const DAP_AUTH_HEADER: &str = "dap-auth-token";

/// A fresh token: 32 random bytes, unpadded base64url (valid as both a bearer token and a
/// `DAP-Auth-Token`).
pub fn generate_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The digest a receiving side keeps of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token a request carries, if any: the bearer token first, then `DAP-Auth-Token`.
pub fn request_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION)
        && let Ok(value) = value.to_str()
        && let Some(token) = value.strip_prefix("Bearer ")
    {
        return Some(token.trim());
    }
    headers
        .get(DAP_AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Whether the request carries the token whose digest is `expected`.
pub fn is_authorized(headers: &HeaderMap, expected: &[u8; 32]) -> bool {
    let Some(token) = request_token(headers) else {
        return false;
    };
    let got = token_hash(token);
    got.iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_dap_auth_token_are_both_accepted_and_nothing_else() {
        let token = generate_token();
        let hash = token_hash(&token);
        let mut bearer = HeaderMap::new();
        bearer.insert("authorization", format!("Bearer {token}").parse().unwrap());
        assert!(is_authorized(&bearer, &hash));
        let mut dap = HeaderMap::new();
        dap.insert(DAP_AUTH_HEADER, token.parse().unwrap());
        assert!(is_authorized(&dap, &hash));
        let mut wrong = HeaderMap::new();
        wrong.insert(DAP_AUTH_HEADER, generate_token().parse().unwrap());
        assert!(!is_authorized(&wrong, &hash));
        let mut basic = HeaderMap::new();
        basic.insert("authorization", format!("Basic {token}").parse().unwrap());
        assert!(!is_authorized(&basic, &hash));
        assert!(!is_authorized(&HeaderMap::new(), &hash));
    }
}
