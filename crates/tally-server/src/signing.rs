//! Collector keys and config signatures, minisign-compatible in both directions.
//!
//! - [`keygen`] writes a minisign key pair. With a password (from
//!   [`PASSWORD_ENV`]) the secret key is scrypt-encrypted exactly as the `minisign` CLI does it;
//!   without one (`--no-password`, for automation) it is written the way `minisign -W` writes
//!   unencrypted keys (KDF algorithm zero), so the CLI can sign with it without prompting.
//! - [`sign_config`] checks that the config parses, then writes `FILE.minisig`, a prehashed
//!   (`ED`) signature that `minisign -V` and the client's `minisign-verify` both accept.
//! - [`verify_config`] is what `serve` does at startup: the served config must verify against
//!   the collector's public key, or the server refuses to start.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tally_protocol::UploadConfig;

/// Environment variable holding the secret key's password for `keygen` and `sign`.
pub const PASSWORD_ENV: &str = tally_env::TALLY_SERVER_KEY_PASSWORD;

/// Offset of the two KDF-algorithm bytes in a minisign secret key (after the signature
/// algorithm). Zero there means "not encrypted" to the minisign CLI.
const KDF_ALG_OFFSET: usize = 2;

/// Writes a new key pair to `public_path` and `secret_path`. `password: None` writes an
/// unencrypted secret key. Refuses to overwrite existing files unless `force`. Returns the key
/// id in the minisign CLI's hexadecimal spelling.
pub fn keygen(
    public_path: &Path,
    secret_path: &Path,
    password: Option<String>,
    force: bool,
) -> anyhow::Result<String> {
    for path in [public_path, secret_path] {
        if path.exists() && !force {
            bail!(
                "{} already exists; pass --force to replace it",
                path.display()
            );
        }
    }
    let encrypted = password.is_some();
    // `Some("")` computes the checksum but skips encryption; minisign's own generator would
    // prompt on a terminal for `None`.
    let pair = minisign::KeyPair::generate_encrypted_keypair(Some(password.unwrap_or_default()))
        .map_err(|e| anyhow::anyhow!("generating a key pair failed: {e}"))?;
    let secret = if encrypted {
        pair.sk
    } else {
        let mut bytes = pair.sk.to_bytes();
        bytes[KDF_ALG_OFFSET] = 0;
        bytes[KDF_ALG_OFFSET + 1] = 0;
        minisign::SecretKey::from_bytes(&bytes)
            .map_err(|e| anyhow::anyhow!("re-encoding the unencrypted key failed: {e}"))?
    };
    let key_id = key_id_hex(pair.pk.keynum());
    let public_box = pair.pk.to_box().map_err(|e| anyhow::anyhow!("{e}"))?;
    let secret_box = secret
        .to_box(Some(&format!("tally-server secret key {key_id}")))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    write_file(public_path, public_box.to_string().as_bytes(), 0o644)?;
    write_file(secret_path, secret_box.to_string().as_bytes(), 0o600)?;
    Ok(key_id)
}

/// Signs `config_path` with the secret key at `secret_path`, writing `<config_path>.minisig`.
/// The config must parse and validate first: a collector never signs a config its clients
/// would refuse. Returns the signature's path.
pub fn sign_config(
    config_path: &Path,
    secret_path: &Path,
    password: Option<String>,
) -> anyhow::Result<PathBuf> {
    let config = fs::read(config_path)
        .with_context(|| format!("cannot read the config {}", config_path.display()))?;
    let parsed = UploadConfig::parse(&config).with_context(|| {
        format!(
            "{} is not a valid upload config; fix it before signing",
            config_path.display()
        )
    })?;
    let secret_text = fs::read_to_string(secret_path)
        .with_context(|| format!("cannot read the secret key {}", secret_path.display()))?;
    let secret = open_secret_key(&secret_text, password)
        .with_context(|| format!("cannot open the secret key {}", secret_path.display()))?;
    let file_name = config_path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let trusted = format!(
        "tally upload config version {} file:{file_name}",
        parsed.version
    );
    let signature = minisign::sign(None, &secret, &config[..], Some(&trusted), None)
        .map_err(|e| anyhow::anyhow!("signing failed: {e}"))?;
    let sig_path = signature_path(config_path);
    write_file(&sig_path, signature.to_string().as_bytes(), 0o644)?;
    Ok(sig_path)
}

/// Opens a minisign secret key box: unencrypted (KDF algorithm zero, as `minisign -W` and
/// `keygen --no-password` write it) or scrypt-encrypted with `password`.
fn open_secret_key(text: &str, password: Option<String>) -> anyhow::Result<minisign::SecretKey> {
    use base64::Engine;
    let encoded = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with("untrusted comment:"))
        .context("it holds no key line; pass a secret key written by `tally-server keygen` or `minisign -G`")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| anyhow::anyhow!("its key line is not base64; pass a minisign secret key"))?;
    if bytes.get(KDF_ALG_OFFSET..KDF_ALG_OFFSET + 2) == Some(&[0, 0]) {
        // Unencrypted. `minisign -W` leaves the checksum zero, so the crate's checksum test
        // (meant for password typos) cannot be used; a damaged key makes signatures that
        // `serve --key` refuses at startup.
        return minisign::SecretKey::from_bytes(&bytes)
            .map_err(|e| anyhow::anyhow!("it is not a minisign secret key: {e}"));
    }
    let Some(password) = password else {
        bail!("it is password-protected; set {PASSWORD_ENV} to its password");
    };
    minisign::SecretKey::from_box(text.to_string().into(), Some(password))
        .map_err(|e| anyhow::anyhow!("{e} (is {PASSWORD_ENV} right?)"))
}

/// `FILE.minisig` beside `FILE`.
pub fn signature_path(config_path: &Path) -> PathBuf {
    let mut name = config_path.as_os_str().to_owned();
    name.push(".minisig");
    PathBuf::from(name)
}

/// Reads a public key given either as a minisign `.pub` file's text (comment line + base64)
/// or as the bare base64 line.
pub fn parse_public_key(text: &str) -> anyhow::Result<minisign_verify::PublicKey> {
    let text = text.trim();
    let result = if text.starts_with("untrusted comment:") {
        minisign_verify::PublicKey::decode(text)
    } else {
        minisign_verify::PublicKey::from_base64(text)
    };
    result.map_err(|e| {
        anyhow::anyhow!(
            "not a minisign public key ({e}); pass the .pub file written by `tally-server keygen` or its base64 line"
        )
    })
}

/// Verifies `config` against `signature` (a `.minisig` file's text) and `public_key`, then
/// parses it. Legacy (non-prehashed) signatures are refused, as the client refuses them.
pub fn verify_config(
    config: &[u8],
    signature: &str,
    public_key: &minisign_verify::PublicKey,
) -> anyhow::Result<UploadConfig> {
    let signature = minisign_verify::Signature::decode(signature)
        .map_err(|e| anyhow::anyhow!("the config signature is not a minisign signature: {e}"))?;
    public_key.verify(config, &signature, false).map_err(|e| {
        anyhow::anyhow!(
            "the config signature does not verify with the given public key ({e}); re-sign it with `tally-server sign` using the matching secret key"
        )
    })?;
    UploadConfig::parse(config).context("the signed config is not a valid upload config")
}

fn key_id_hex(keynum: &[u8]) -> String {
    // The CLI prints the little-endian u64 in upper-case hex.
    let mut id = [0u8; 8];
    id.copy_from_slice(&keynum[..8.min(keynum.len())]);
    format!("{:016X}", u64::from_le_bytes(id))
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))?;
    Ok(())
}
