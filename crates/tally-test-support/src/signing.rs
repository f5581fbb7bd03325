//! Minisign for tests, both ways a collector might sign: key pairs made and used in memory with
//! the `minisign` crate ([`KeyPair`]; production signing is `tally-server keygen`/`sign`), and
//! the reference `minisign` binary ([`Minisign`], Debian's package) for interop tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The trusted comment of [`KeyPair::signature`].
pub const TRUSTED_COMMENT: &str = "tally test config";

/// A freshly generated, unencrypted key pair, in memory.
pub struct KeyPair {
    /// The public key's base64 line, as `tally on --key` takes it.
    pub public_base64: String,
    secret: minisign::SecretKey,
}

impl KeyPair {
    pub fn generate() -> KeyPair {
        let pair = minisign::KeyPair::generate_unencrypted_keypair()
            .expect("generating a key pair needs only the OS random source");
        KeyPair {
            public_base64: pair.pk.to_base64(),
            secret: pair.sk,
        }
    }

    /// A prehashed minisign signature of `body` with this trusted comment, as the text of a
    /// `.minisig` file.
    pub fn sign(&self, body: &[u8], trusted_comment: &str) -> String {
        minisign::sign(
            None,
            &self.secret,
            body,
            Some(trusted_comment),
            Some("tally test signature"),
        )
        .expect("signing in memory cannot fail")
        .into_string()
    }

    /// The bytes of the `.minisig` file for `body`, with the trusted comment
    /// [`TRUSTED_COMMENT`].
    pub fn signature(&self, body: &[u8]) -> Vec<u8> {
        self.sign(body, TRUSTED_COMMENT).into_bytes()
    }
}

/// The reference `minisign` binary on `PATH`.
pub struct Minisign {
    pub binary: PathBuf,
}

impl Minisign {
    /// The `minisign` on `PATH`; `None` (with a message) when there is none, unless
    /// `TALLY_REQUIRE_MINISIGN=1`, where a missing `minisign` fails the test.
    pub fn find() -> Option<Minisign> {
        match crate::on_path("minisign") {
            Some(binary) => Some(Minisign { binary }),
            None => {
                assert!(
                    !crate::required(tally_env::TALLY_REQUIRE_MINISIGN),
                    "TALLY_REQUIRE_MINISIGN=1 but no `minisign` on PATH; install it (apt install minisign)"
                );
                eprintln!(
                    "skipping: `minisign` is not on PATH (set TALLY_REQUIRE_MINISIGN=1 to fail instead)"
                );
                None
            }
        }
    }

    /// `minisign` with these arguments, stdin closed, and its output (not yet checked).
    pub fn run(&self, args: &[&std::ffi::OsStr]) -> Output {
        Command::new(&self.binary)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()))
    }

    /// `minisign -G -W -f`: a key pair without a password at `public` and `secret`
    /// (overwriting).
    pub fn generate(&self, public: &Path, secret: &Path) {
        let out = self.run(&[
            "-G".as_ref(),
            "-W".as_ref(),
            "-f".as_ref(),
            "-p".as_ref(),
            public.as_os_str(),
            "-s".as_ref(),
            secret.as_os_str(),
        ]);
        crate::command::assert_success("minisign -G", &out);
    }

    /// `minisign -S` of `file` with the unencrypted key `secret`, into `file.minisig`; `extra`
    /// adds flags (`-l` for a legacy signature, `-t …` for a trusted comment).
    pub fn sign(&self, secret: &Path, file: &Path, extra: &[&str]) {
        let mut args = vec![
            "-S".as_ref(),
            "-s".as_ref(),
            secret.as_os_str(),
            "-m".as_ref(),
            file.as_os_str(),
        ];
        args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
        crate::command::assert_success("minisign -S", &self.run(&args));
    }

    /// `minisign -V` of `file` against the public key file `public`: its output, for the test
    /// to judge.
    pub fn verify(&self, public: &Path, file: &Path) -> Output {
        self.run(&[
            "-V".as_ref(),
            "-p".as_ref(),
            public.as_os_str(),
            "-m".as_ref(),
            file.as_os_str(),
        ])
    }
}
