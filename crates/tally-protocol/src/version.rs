//! Lenient version matching for the config's per-program version ranges.
//!
//! Tool versions come in several spellings (`1.95.0`, `1.96.0-nightly`, `go1.19.8`, `1.19`).
//! A config names semver ranges (`>=1.70.0`, `1.95.*`). A version matches a range when its
//! numeric `major.minor.patch` does; pre-release and build tags are ignored, so a nightly is
//! treated as the release it leads up to. A version that cannot be read (`unknown`) matches
//! nothing, so it is never uploaded.

use semver::{Version, VersionReq};

/// Reads the numeric core of a tool version, or `None` if it has none.
pub fn numeric_core(version: &str) -> Option<Version> {
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
    Some(Version::new(major, minor, patch))
}

/// The form of a tool version that may leave the machine: the numeric `major.minor.patch`,
/// followed by `-nightly`, `-beta`, `-beta.N` or `-dev` when the version names that channel, and
/// nothing else. A locally built toolchain's version can carry a path or a commit description;
/// none of that is ever uploaded. `None` when there is no numeric core.
pub fn canonical(version: &str) -> Option<String> {
    let core = numeric_core(version)?;
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
        Some(beta)
            if beta.strip_prefix("-beta.").is_some_and(|n| {
                !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit())
            }) =>
        {
            beta.to_string()
        }
        _ => String::new(),
    };
    Some(format!(
        "{}.{}.{}{channel}",
        core.major, core.minor, core.patch
    ))
}

/// Whether `version` lies in the semver range `req`.
pub fn matches(req: &VersionReq, version: &str) -> bool {
    numeric_core(version).is_some_and(|v| req.matches(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(canonical("1.95.0").as_deref(), Some("1.95.0"));
        assert_eq!(canonical("go1.19.8").as_deref(), Some("1.19.8"));
        assert_eq!(canonical("1.19").as_deref(), Some("1.19.0"));
        assert_eq!(
            canonical("1.96.0-nightly").as_deref(),
            Some("1.96.0-nightly")
        );
        assert_eq!(canonical("1.96.0-beta.3").as_deref(), Some("1.96.0-beta.3"));
        assert_eq!(
            canonical("1.96.0-dev (/home/alice/rust abc123)").as_deref(),
            Some("1.96.0-dev")
        );
        assert_eq!(canonical("1.96.0-alice-secret").as_deref(), Some("1.96.0"));
        assert_eq!(canonical("1.96.0-beta.12345").as_deref(), Some("1.96.0"));
        assert_eq!(canonical("devel go1.23-abc /tmp/x"), None);
        assert_eq!(canonical("unknown"), None);
    }

    #[test]
    fn matches_ranges() {
        let req = VersionReq::parse(">=1.70.0").unwrap();
        assert!(matches(&req, "1.95.0"));
        assert!(matches(&req, "1.96.0-nightly"));
        assert!(!matches(&req, "1.69.9"));
        assert!(!matches(&req, "unknown"));
    }
}
