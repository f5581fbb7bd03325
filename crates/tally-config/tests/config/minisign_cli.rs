//! Interop with the reference `minisign` CLI (Debian's package): configs it signs verify, and
//! every kind of bad config it can produce is refused.
//!
//! Skipped with a message when `minisign` is not installed, unless `TALLY_REQUIRE_MINISIGN=1`.

use std::path::{Path, PathBuf};

use crate::support::{config_body, day};
use tally_config::{PinnedKey, Ratchet, VerifyError, verify_config};
use tally_test_support::command::assert_success;
use tally_test_support::signing::{KeyPair, Minisign};

/// A key pair made by `minisign -G`, in a directory of its own.
struct CliKey<'a> {
    dir: PathBuf,
    minisign: &'a Minisign,
}

impl CliKey<'_> {
    /// `minisign -G -W`: a key pair without a password, in `dir`.
    fn generate<'a>(minisign: &'a Minisign, dir: &Path) -> CliKey<'a> {
        std::fs::create_dir_all(dir).unwrap();
        minisign.generate(&dir.join("key.pub"), &dir.join("key.sec"));
        CliKey {
            dir: dir.to_path_buf(),
            minisign,
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
        let mut flags = vec!["-t", "tally config from the minisign CLI"];
        flags.extend(extra);
        self.minisign.sign(&self.dir.join("key.sec"), &file, &flags);
        std::fs::read(self.dir.join("config.json.minisig")).unwrap()
    }
}

#[test]
fn configs_signed_by_the_minisign_cli() {
    let Some(minisign) = Minisign::find() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let key = CliKey::generate(&minisign, &tmp.path().join("collector"));
    let other = CliKey::generate(&minisign, &tmp.path().join("other"));
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
    let Some(minisign) = Minisign::find() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let key = KeyPair::generate();
    let body = config_body(1, "2027-01-31");
    std::fs::write(tmp.path().join("config.json"), &body).unwrap();
    std::fs::write(tmp.path().join("config.json.minisig"), key.signature(&body)).unwrap();
    let out = minisign.run(&[
        "-V".as_ref(),
        "-P".as_ref(),
        key.public_base64.as_ref(),
        "-m".as_ref(),
        tmp.path().join("config.json").as_os_str(),
    ]);
    assert_success("minisign -V -P", &out);
}
