//! Lenient version matching for the config's per-program version ranges.
//!
//! Tool versions come in several spellings (`1.95.0`, `1.96.0-nightly`, `go1.19.8`, `1.19`).
//! A config names semver ranges (`>=1.70.0`, `1.95.*`). A version matches a range when its
//! numeric `major.minor.patch` does; pre-release and build tags are ignored, so a nightly is
//! treated as the release it leads up to. A version that cannot be read (`unknown`) matches
//! nothing, so it is never uploaded.
//!
//! The form a version has in an upload copy is stricter: [`canonical`] produces it on the
//! client and [`is_canonical`] is what the collector accepts, so the two cannot disagree. It
//! has one spelling per version (no leading zeros) and bounded numbers, so that no upload can
//! open a version bucket such as `01.95.0` or `99999.99999.99999` beside the real ones.

#[cfg(feature = "wire")]
use semver::{Version, VersionReq};

/// Reads the numeric core of a tool version, or `None` if it has none.
#[cfg(feature = "wire")]
pub fn numeric_core(version: &str) -> Option<Version> {
    let (major, minor, patch) = numbers(version)?;
    Some(Version::new(major, minor, patch))
}

/// The numeric `major.minor.patch` of a tool version (missing parts are 0), or `None` if it has
/// none.
fn numbers(version: &str) -> Option<(u64, u64, u64)> {
    let v = version.trim();
    let v = v.strip_prefix("go").unwrap_or(v);
    let v = v.strip_prefix('v').unwrap_or(v);
    let core_end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let core = &v[..core_end];
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    if parts.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}

/// Largest major version an upload copy may name. rustc, cargo, rustfmt and go are at 1 (cargo
/// was at 0 before 1.0); two digits leave room for any plausible future without letting an
/// upload invent absurd ones.
pub const MAX_MAJOR: u64 = 99;
/// Largest minor or patch number, and the largest `-beta.N`, an upload copy may name. Rust
/// ships a minor release every six weeks (1.95 in 2026), so three digits last a century.
pub const MAX_MINOR_PATCH: u64 = 999;

/// The form of a tool version that may leave the machine: the numeric `major.minor.patch`,
/// followed by `-nightly`, `-beta`, `-beta.N` or `-dev` when the version names that channel, and
/// nothing else. A locally built toolchain's version can carry a path or a commit description;
/// none of that is ever uploaded. `None` when there is no numeric core or a number is above
/// [`MAX_MAJOR`] / [`MAX_MINOR_PATCH`]. Whatever it returns satisfies [`is_canonical`].
pub fn canonical(version: &str) -> Option<String> {
    let (major, minor, patch) = numbers(version)?;
    if major > MAX_MAJOR || minor > MAX_MINOR_PATCH || patch > MAX_MINOR_PATCH {
        return None;
    }
    let v = version.trim();
    let v = v.strip_prefix("go").unwrap_or(v);
    let v = v.strip_prefix('v').unwrap_or(v);
    let rest = &v[v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len())..];
    let channel = rest
        .split(|c: char| c.is_whitespace() || c == '(' || c == '+')
        .next();
    let channel = match channel {
        Some("-nightly") => "-nightly".to_string(),
        Some("-dev") => "-dev".to_string(),
        Some("-beta") => "-beta".to_string(),
        Some(beta) => match beta.strip_prefix("-beta.").and_then(beta_number) {
            // Written back as a number: `-beta.07` and `-beta.7` are one version.
            Some(n) => format!("-beta.{n}"),
            None => String::new(),
        },
        None => String::new(),
    };
    Some(format!("{major}.{minor}.{patch}{channel}"))
}

/// The number of a `-beta.N` tag as a tool may write it (one to three digits).
fn beta_number(digits: &str) -> Option<u64> {
    if (1..=3).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// Whether `version` is exactly in the form [`canonical`] writes: `MAJOR.MINOR.PATCH` in
/// decimal without leading zeros, major at most [`MAX_MAJOR`], minor and patch at most
/// [`MAX_MINOR_PATCH`], optionally followed by `-nightly`, `-beta`, `-beta.N` (N at most
/// [`MAX_MINOR_PATCH`], no leading zeros) or `-dev`. The collector accepts no other version.
pub fn is_canonical(version: &str) -> bool {
    let (core, channel) = match version.split_once('-') {
        Some((core, channel)) => (core, Some(channel)),
        None => (version, None),
    };
    let mut parts = core.split('.');
    let mut next_at_most = |max: u64| {
        parts
            .next()
            .and_then(plain_number)
            .is_some_and(|n| n <= max)
    };
    let core_ok = next_at_most(MAX_MAJOR)
        && next_at_most(MAX_MINOR_PATCH)
        && next_at_most(MAX_MINOR_PATCH)
        && parts.next().is_none();
    core_ok
        && match channel {
            None | Some("nightly" | "beta" | "dev") => true,
            Some(other) => other
                .strip_prefix("beta.")
                .and_then(plain_number)
                .is_some_and(|n| n <= MAX_MINOR_PATCH),
        }
}

/// A decimal number of at most three digits, without sign or leading zeros (`0` itself is one).
fn plain_number(text: &str) -> Option<u64> {
    let plain = (1..=3).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if plain { text.parse().ok() } else { None }
}

/// Whether `version` lies in the semver range `req`.
#[cfg(feature = "wire")]
pub fn matches(req: &VersionReq, version: &str) -> bool {
    numeric_core(version).is_some_and(|v| req.matches(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "wire")]
    #[test]
    fn reads_tool_versions() {
        assert_eq!(numeric_core("1.95.0"), Some(Version::new(1, 95, 0)));
        assert_eq!(numeric_core("1.96.0-nightly"), Some(Version::new(1, 96, 0)));
        assert_eq!(numeric_core("go1.19.8"), Some(Version::new(1, 19, 8)));
        assert_eq!(numeric_core("1.19"), Some(Version::new(1, 19, 0)));
        assert_eq!(numeric_core("unknown"), None);
        assert_eq!(numeric_core(""), None);
        assert_eq!(numeric_core("1.2.3.4"), None);
    }

    #[test]
    fn canonical_versions_keep_only_the_number_and_channel() {
        for (version, want) in [
            ("1.95.0", "1.95.0"),
            ("go1.19.8", "1.19.8"),
            ("1.19", "1.19.0"),
            ("1.96.0-nightly", "1.96.0-nightly"),
            ("1.96.0-beta.3", "1.96.0-beta.3"),
            ("1.96.0-dev (/home/alice/rust abc123)", "1.96.0-dev"),
            ("1.96.0-alice-secret", "1.96.0"),
            ("1.96.0-beta.12345", "1.96.0"),
            ("1.96.0-beta.07", "1.96.0-beta.7"),
            ("01.095.00", "1.95.0"),
        ] {
            assert_eq!(canonical(version).as_deref(), Some(want), "{version}");
        }
        for version in [
            "100.0.0",
            "1.1000.0",
            "99999.99999.99999",
            "devel go1.23-abc /tmp/x",
            "unknown",
        ] {
            assert_eq!(canonical(version), None, "{version}");
        }
    }

    #[cfg(feature = "wire")]
    #[test]
    fn matches_ranges() {
        let req = VersionReq::parse(">=1.70.0").unwrap();
        assert!(matches(&req, "1.95.0"));
        assert!(matches(&req, "1.96.0-nightly"));
        assert!(!matches(&req, "1.69.9"));
        assert!(!matches(&req, "unknown"));
    }

    #[test]
    fn knows_canonical_versions() {
        for ok in [
            "1.95.0",
            "0.0.0",
            "99.999.999",
            "1.96.0-nightly",
            "1.96.0-beta",
            "1.96.0-beta.2",
            "1.96.0-beta.0",
            "1.19.8-dev",
        ] {
            assert!(is_canonical(ok), "{ok}");
        }
        for bad in [
            "",
            "1.95",
            "1.95.0.0",
            "go1.19.8",
            "01.95.0",
            "1.095.0",
            "1.95.00",
            "100.0.0",
            "1.1000.0",
            "99999.99999.99999",
            "+1.95.0",
            "1.95.0-",
            "1.95.0-nightly-dev",
            "1.95.0-nightly (abc 2026-01-01)",
            "1.95.0-x",
            "1.95.0-beta.",
            "1.95.0-beta.01",
            "1.95.0-beta.1234",
            "1..0",
            " 1.95.0",
        ] {
            assert!(!is_canonical(bad), "{bad}");
        }
    }

    proptest::proptest! {
        /// The client's [`canonical`] never writes a version the collector's [`is_canonical`]
        /// refuses, and is the identity on canonical versions.
        #[test]
        fn canonical_output_is_canonical(version in "(go|v)?[0-9.]{0,12}(-(nightly|beta|dev|beta\\.[0-9]{0,4}|[ -~]{0,8}))?( \\([ -~]{0,12}\\))?") {
            if let Some(written) = canonical(&version) {
                proptest::prop_assert!(is_canonical(&written), "{version:?} -> {written:?}");
                proptest::prop_assert_eq!(canonical(&written), Some(written.clone()));
            }
            if is_canonical(&version) {
                proptest::prop_assert_eq!(canonical(&version), Some(version.clone()));
            }
        }
    }
}
