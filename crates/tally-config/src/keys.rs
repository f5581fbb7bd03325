//! Pinned minisign public keys and their key ids.
//!
//! A collector is pinned by one or more public keys (more than one so that it can rotate keys:
//! publish configs signed by the new key while clients still pin the old one as well). A key is
//! given either as the bare base64 line of a `minisign.pub` file or as the whole file.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A minisign key id: eight bytes, shown as minisign shows it (the little-endian number in
/// upper-case hex, without leading zeros), e.g. `5B1C0A2B3D4E5F60`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // minisign prints `%PRIX64`: no zero padding, so a key id can have fewer than 16 digits.
        write!(f, "{:X}", u64::from_le_bytes(self.0))
    }
}

impl KeyId {
    /// Parses the 16-hex-digit form [`KeyId`] displays as.
    pub fn from_hex(hex: &str) -> Option<KeyId> {
        if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(hex, 16)
            .ok()
            .map(|n| KeyId(n.to_le_bytes()))
    }
}

/// A public key the client trusts, with its id.
#[derive(Debug, Clone)]
pub struct PinnedKey {
    /// The base64 form (`RW...`), as written in `endpoint.json`.
    pub base64: String,
    pub key_id: KeyId,
    pub(crate) key: minisign_verify::PublicKey,
}

/// A public key that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{given:?} is not a minisign public key: {reason}; give the base64 line of the collector's \
     minisign.pub (it starts with \"RW\"), e.g. --key RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3"
)]
pub struct KeyError {
    /// The input, shortened.
    pub given: String,
    pub reason: &'static str,
}

impl PinnedKey {
    /// Reads a public key: the base64 line alone, or a whole `minisign.pub` file (its
    /// `untrusted comment:` line is ignored).
    pub fn parse(text: &str) -> Result<PinnedKey, KeyError> {
        let err = |reason| KeyError {
            given: text.chars().take(80).collect(),
            reason,
        };
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .ok_or_else(|| err("it is empty"))?;
        let bytes = STANDARD.decode(line).map_err(|_| err("it is not base64"))?;
        if bytes.len() != 42 {
            return Err(err("it does not decode to 42 bytes"));
        }
        if &bytes[..2] != b"Ed" {
            return Err(err("it is not an Ed25519 minisign key"));
        }
        let key = minisign_verify::PublicKey::from_base64(line)
            .map_err(|_| err("minisign could not decode it"))?;
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[2..10]);
        Ok(PinnedKey {
            base64: line.to_string(),
            key_id: KeyId(id),
            key,
        })
    }
}

/// What the second line of a minisign signature file says, read without trusting it: the
/// signature algorithm and the key id, so that the right pinned key can be chosen and a
/// legacy signature refused with a clear message.
pub(crate) struct SignatureHeader {
    pub prehashed: bool,
    pub key_id: KeyId,
}

pub(crate) fn signature_header(signature: &str) -> Option<SignatureHeader> {
    let line = signature.lines().nth(1)?.trim();
    let bytes = STANDARD.decode(line).ok()?;
    if bytes.len() != 74 {
        return None;
    }
    let prehashed = match &bytes[..2] {
        b"ED" => true,
        b"Ed" => false,
        _ => return None,
    };
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[2..10]);
    Some(SignatureHeader {
        prehashed,
        key_id: KeyId(id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // From minisign's own documentation.
    const DOC_KEY: &str = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";

    #[test]
    fn reads_a_bare_key_and_a_pub_file() {
        let bare = PinnedKey::parse(DOC_KEY).unwrap();
        let file = format!("untrusted comment: minisign public key E7620F1842B4E81F\n{DOC_KEY}\n");
        let from_file = PinnedKey::parse(&file).unwrap();
        assert_eq!(bare.key_id, from_file.key_id);
        assert_eq!(bare.key_id.to_string(), "E7620F1842B4E81F");
        assert_eq!(KeyId::from_hex("E7620F1842B4E81F"), Some(bare.key_id));
        // minisign does not pad: a key id below 2^60 prints with fewer than 16 digits.
        let small = KeyId(0x0ABC_u64.to_le_bytes());
        assert_eq!(small.to_string(), "ABC");
        assert_eq!(KeyId::from_hex("ABC"), Some(small));
        assert_eq!(KeyId::from_hex("+ABC"), None);
    }

    #[test]
    fn refuses_what_is_not_a_key() {
        for bad in ["", "hello", "RWQf6LRCGA9i53ml", &DOC_KEY.replace('R', "S")] {
            let e = PinnedKey::parse(bad).unwrap_err();
            assert!(e.to_string().contains("minisign.pub"), "{e}");
        }
    }
}
