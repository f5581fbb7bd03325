//! The rule every program name follows, on the client and on the server alike: in counter
//! files (their header and their file name), in reports, in upload configs and in uploads.
//!
//! A program name is 1 to [`MAX_PROGRAM_NAME_LEN`] bytes of lowercase ASCII letters, digits,
//! `-` and `_`, starting with a letter or a digit: `cargo`, `cargo-fmt`, `gofmt`, or any tool
//! that counts its own events through the `tally-counter` library (its Cargo package name,
//! which crates.io already keeps to this alphabet). No fixed list: which programs a collector
//! wants is its signed config's business, not this rule's. The rule keeps a name safe as a
//! file name component, a URL path segment and a chart label, and keeps free text (a path, a
//! sentence, an identifier with its case) out of every place a program name goes.

/// Longest program name, in bytes (crates.io's own limit for a package name).
pub const MAX_PROGRAM_NAME_LEN: usize = 64;

/// What [`is_program_name`] accepts, as a regular expression for the JSON Schemas.
pub const PROGRAM_NAME_REGEX: &str = "^[a-z0-9][a-z0-9_-]{0,63}$";

/// Whether `name` is a valid program name (see the module's rule). A `const fn`, so that a
/// name known at compile time can be checked then.
pub const fn is_program_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_PROGRAM_NAME_LEN {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let ok =
            b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'-' || b == b'_'));
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_tools_and_package_names() {
        for name in [
            "cargo",
            "rustc",
            "rustfmt",
            "cargo-fmt",
            "go",
            "gofmt",
            "cargo-nextest",
            "tally_example",
            "x",
            "7zip",
            &"a".repeat(MAX_PROGRAM_NAME_LEN),
        ] {
            assert!(is_program_name(name), "{name:?}");
        }
    }

    #[test]
    fn refuses_free_text() {
        for name in [
            "",
            "Cargo",
            "-cargo",
            "_cargo",
            "cargo fmt",
            "../etc",
            "/usr/bin/cargo",
            "cargo.exe",
            "cargo@1.95",
            "héllo",
            "cargo\n",
            &"a".repeat(MAX_PROGRAM_NAME_LEN + 1),
        ] {
            assert!(!is_program_name(name), "{name:?}");
        }
    }

    #[cfg(feature = "wire")]
    proptest::proptest! {
        /// The regular expression the JSON Schemas carry says the same as the function.
        #[test]
        fn the_schema_regex_agrees(name in "[a-zA-Z0-9_. /@-]{0,70}") {
            let schema = serde_json::json!({ "type": "string", "pattern": PROGRAM_NAME_REGEX });
            let validator = jsonschema::validator_for(&schema).unwrap();
            let by_schema = validator.is_valid(&serde_json::Value::String(name.clone()));
            proptest::prop_assert_eq!(is_program_name(&name), by_schema, "{:?}", name);
        }
    }
}
