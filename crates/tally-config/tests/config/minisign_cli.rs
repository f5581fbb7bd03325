//! Interop with the reference `minisign` CLI (Debian's package): configs it signs verify, and
//! every kind of bad config it can produce is refused.
//!
//! Skipped with a message when `minisign` is not installed, unless `TALLY_REQUIRE_MINISIGN=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{config_body, day};
use tally_config::{PinnedKey, Ratchet, VerifyError, verify_config};

fn minisign() -> Option<PathBuf> {
    match which_minisign() {
        Some(path) => Some(path),
        None if std::env::var_os("TALLY_REQUIRE_MINISIGN").is_some_and(|v| v == "1") => {
            panic!(
                "TALLY_REQUIRE_MINISIGN=1 but no `minisign` on PATH; install it (apt install minisign)"
            )
        }
        None => {
            eprintln!(
                "skipping: `minisign` is not on PATH (set TALLY_REQUIRE_MINISIGN=1 to fail instead)"
            );
            None
        }
    }
}

fn which_minisign() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("minisign"))
            .find(|p| p.is_file())
    })
}

struct CliKey {
    dir: PathBuf,
    bin: PathBuf,
}

impl CliKey {
    /// `minisign -G -W`: a key pair without a password, in `dir`.
    fn generate(bin: &Path, dir: &Path) -> CliKey {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new(bin)
            .args(["-G", "-W", "-p"])
            .arg(dir.join("key.pub"))
            .arg("-s")
            .arg(dir.join("key.sec"))
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        CliKey {
            dir: dir.to_path_buf(),
            bin: bin.to_path_buf(),
        }
    }

    fn pub_file(&self) -> String {
        std::fs::read_to_string(self.dir.join("key.pub")).unwrap()
    }

    fn pinned(&self) -> PinnedKey {
        PinnedKey::parse(&self.pub_file()).unwrap()
    }

    /// Signs `body` with `minisign -S`; `extra` adds flags (`-l` for a legacy signature).
    fn sign(&self, body: &[u8], extra: &[&str]) -> Vec<u8> {
        let file = self.dir.join("config.json");
        std::fs::write(&file, body).unwrap();
        let sig = self.dir.join("config.json.minisig");
        let out = Command::new(&self.bin)
            .args(["-S", "-s"])
            .arg(self.dir.join("key.sec"))
            .arg("-m")
            .arg(&file)
            .arg("-x")
            .arg(&sig)
            .args(["-t", "tally config from the minisign CLI"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(sig).unwrap()
    }
}

#[test]
fn configs_signed_by_the_minisign_cli() {
    let Some(bin) = minisign() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let key = CliKey::generate(&bin, &tmp.path().join("collector"));
    let other = CliKey::generate(&bin, &tmp.path().join("other"));
    let keys = [key.pinned()];
    let today = day("2026-11-24");

    // Our key id is minisign's: the .pub file's comment names it.
    assert!(
        key.pub_file()
            .lines()
            .next()
            .unwrap()
            .ends_with(&format!(" {}", keys[0].key_id)),
        "{}",
        key.pub_file()
    );

    // Signed by the CLI: verifies, and the trusted comment is the one given to -t.
    let body = config_body(7, "2027-01-31");
    let verified = verify_config(&body, &key.sign(&body, &[]), &keys, today).unwrap();
    assert_eq!(verified.config.version, 7);
    assert_eq!(
        verified.trusted_comment,
        "tally config from the minisign CLI"
    );
    let ratchet_dir = tmp.path().join("config");
    Ratchet::accept(&ratchet_dir, &verified).unwrap();

    // One byte changed.
    let sig = key.sign(&body, &[]);
    let mut changed = body.clone();
    let last = changed.len() - 2;
    changed[last] = b' ';
    assert!(matches!(
        verify_config(&changed, &sig, &keys, today),
        Err(VerifyError::BadSignature { .. })
    ));

    // Another key.
    assert!(matches!(
        verify_config(&body, &other.sign(&body, &[]), &keys, today),
        Err(VerifyError::UnknownKey { .. })
    ));

    // A lower version than one already accepted.
    let older = config_body(6, "2027-01-31");
    let older_verified = verify_config(&older, &key.sign(&older, &[]), &keys, today).unwrap();
    assert!(matches!(
        Ratchet::accept(&ratchet_dir, &older_verified),
        Err(tally_config::AcceptError::Refused(VerifyError::Rollback {
            version: 6,
            highest: 7,
            ..
        }))
    ));

    // An expired config.
    let expired = config_body(8, "2026-11-23");
    assert!(matches!(
        verify_config(&expired, &key.sign(&expired, &[]), &keys, today),
        Err(VerifyError::Expired { .. })
    ));

    // A legacy (non-prehashed) signature, even though it is cryptographically valid.
    let legacy = key.sign(&body, &["-l"]);
    // It really is a legacy signature: its algorithm bytes are `Ed` (prehashed is `ED`).
    use base64::Engine as _;
    let line = String::from_utf8_lossy(&legacy)
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(line)
        .unwrap();
    assert_eq!(&raw[..2], b"Ed");
    assert!(matches!(
        verify_config(&body, &legacy, &keys, today),
        Err(VerifyError::LegacySignature)
    ));
}

#[test]
fn the_cli_verifies_what_our_test_signer_signs() {
    let Some(bin) = minisign() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let key = crate::common::Key::generate();
    let body = config_body(1, "2027-01-31");
    std::fs::write(tmp.path().join("config.json"), &body).unwrap();
    std::fs::write(tmp.path().join("config.json.minisig"), key.sign(&body)).unwrap();
    let out = Command::new(bin)
        .arg("-V")
        .arg("-P")
        .arg(&key.public)
        .arg("-m")
        .arg(tmp.path().join("config.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
