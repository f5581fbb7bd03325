//! Signing configs in tests (feature `signing`): other crates' tests need signed configs
//! without shelling out to the `minisign` CLI. Production signing is `tally-server sign`.

/// A freshly generated, unencrypted key pair.
pub struct TestKeyPair {
    /// The public key's base64 line, as `tally on --key` takes it.
    pub public_base64: String,
    secret: minisign::SecretKey,
}

impl TestKeyPair {
    pub fn generate() -> TestKeyPair {
        let pair = minisign::KeyPair::generate_unencrypted_keypair()
            .expect("generating a key pair needs only the OS random source");
        TestKeyPair {
            public_base64: pair.pk.to_base64(),
            secret: pair.sk,
        }
    }

    /// A prehashed minisign signature of `body`, as the text of a `.minisig` file.
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
}
