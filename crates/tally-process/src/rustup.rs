//! Seeing through rustup's proxies cheaply, the way rustup itself picks a toolchain, so that the
//! version tally records is the toolchain's, not rustup's.
//!
//! Order (rustup's): a leading `+toolchain` argument, `RUSTUP_TOOLCHAIN`, a directory override
//! in `$RUSTUP_HOME/settings.toml`, `rust-toolchain.toml` / `rust-toolchain` in the working
//! directory or any parent, then `default_toolchain` in `settings.toml`. Only file reads and
//! stats: rustup is never run.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Whether `real` (the tool found on PATH) is a rustup proxy: a symbolic link that resolves to
/// a binary named `rustup`, or a hard link to the `rustup` beside it (both are how rustup
/// installs its proxies). Costs one `lstat` for a plain binary such as a toolchain's rustc.
pub fn is_rustup_proxy(real: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(real) else {
        return false;
    };
    is_rustup_proxy_given(real, meta.file_type().is_symlink(), &meta)
}

/// [`is_rustup_proxy`] for a file already looked at: `symlink` says whether `real` is a
/// symbolic link, and `meta` is what `stat` said about it (for a plain file, the same as what
/// `lstat` says). A plain binary then costs no system call at all.
pub fn is_rustup_proxy_given(real: &Path, symlink: bool, meta: &std::fs::Metadata) -> bool {
    if symlink {
        return std::fs::canonicalize(real)
            .ok()
            .and_then(|p| p.file_name().map(|n| n == "rustup" || n == "rustup-init"))
            .unwrap_or(false);
    }
    use std::os::unix::fs::MetadataExt;
    meta.nlink() > 1
        && real.parent().is_some_and(|dir| {
            std::fs::metadata(dir.join("rustup"))
                .is_ok_and(|r| r.dev() == meta.dev() && r.ino() == meta.ino())
        })
}

/// Environment lookups this module needs (not tally's own variables).
pub struct RustupEnv {
    pub rustup_toolchain: Option<OsString>,
    pub rustup_home: Option<PathBuf>,
    pub home: Option<PathBuf>,
}

impl RustupEnv {
    /// The variables out of an environment already copied.
    pub fn from_snapshot(env: &tally_home::env::ProcessEnv) -> RustupEnv {
        RustupEnv {
            rustup_toolchain: env.non_empty("RUSTUP_TOOLCHAIN"),
            rustup_home: env.non_empty("RUSTUP_HOME").map(PathBuf::from),
            home: env.non_empty("HOME").map(PathBuf::from),
        }
    }

    fn rustup_home(&self) -> Option<PathBuf> {
        self.rustup_home
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".rustup")))
    }
}

/// The binary rustup would run for `tool` given these arguments, working directory and
/// environment; `None` if it cannot be worked out cheaply (tally then records `unknown`).
pub fn toolchain_binary(
    tool: &str,
    args: &[OsString],
    cwd: &Path,
    env: &RustupEnv,
) -> Option<PathBuf> {
    let rustup_home = env.rustup_home()?;
    let settings = std::fs::read_to_string(rustup_home.join("settings.toml"))
        .ok()
        .and_then(|s| s.parse::<toml::Table>().ok());
    let host = settings
        .as_ref()
        .and_then(|s| s.get("default_host_triple")?.as_str().map(String::from))
        .unwrap_or_else(host_triple);

    let from_arg = args
        .first()
        .and_then(|a| a.to_str())
        .and_then(|a| a.strip_prefix('+'))
        .map(String::from);
    let choice = from_arg
        .map(Choice::Name)
        .or_else(|| {
            env.rustup_toolchain
                .as_deref()
                .map(|t| Choice::Name(t.to_string_lossy().into_owned()))
        })
        .or_else(|| directory_override(settings.as_ref(), cwd).map(Choice::Name))
        .or_else(|| toolchain_file(cwd))
        .or_else(|| {
            settings.as_ref().and_then(|s| {
                s.get("default_toolchain")?
                    .as_str()
                    .map(|t| Choice::Name(t.to_string()))
            })
        })?;
    let dir = match choice {
        Choice::Path(p) => p,
        Choice::Name(name) => {
            let toolchains = rustup_home.join("toolchains");
            let exact = toolchains.join(&name);
            if exact.is_dir() {
                exact
            } else {
                toolchains.join(format!("{name}-{host}"))
            }
        }
    };
    let bin = dir.join("bin").join(tool);
    bin.is_file().then_some(bin)
}

enum Choice {
    Name(String),
    Path(PathBuf),
}

/// `[overrides]` in settings.toml maps directories to toolchains (`rustup override set`).
fn directory_override(settings: Option<&toml::Table>, cwd: &Path) -> Option<String> {
    let overrides = settings?.get("overrides")?.as_table()?;
    cwd.ancestors()
        .find_map(|dir| overrides.get(dir.to_str()?)?.as_str().map(String::from))
}

/// `rust-toolchain.toml` (`[toolchain] channel = "…"` or `path = "…"`) or the legacy
/// one-line `rust-toolchain`, in `cwd` or the nearest parent that has one.
fn toolchain_file(cwd: &Path) -> Option<Choice> {
    for dir in cwd.ancestors() {
        for name in ["rust-toolchain", "rust-toolchain.toml"] {
            let path = dir.join(name);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let text = text.trim();
            if name == "rust-toolchain" && !text.contains('[') && !text.is_empty() {
                return Some(Choice::Name(text.to_string()));
            }
            let table = text.parse::<toml::Table>().ok()?;
            let toolchain = table.get("toolchain")?.as_table()?;
            if let Some(channel) = toolchain.get("channel").and_then(|c| c.as_str()) {
                return Some(Choice::Name(channel.to_string()));
            }
            let p = toolchain.get("path")?.as_str()?;
            return Some(Choice::Path(dir.join(p)));
        }
    }
    None
}

/// The target triple this binary was built for, which is the host rustup uses by default.
fn host_triple() -> String {
    let arch = std::env::consts::ARCH;
    match std::env::consts::OS {
        "linux" => format!(
            "{arch}-unknown-linux-{}",
            if cfg!(target_env = "musl") {
                "musl"
            } else {
                "gnu"
            }
        ),
        "macos" => format!("{arch}-apple-darwin"),
        os => format!("{arch}-unknown-{os}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_rustup(tmp: &Path) -> RustupEnv {
        let home = tmp.join("rustup");
        for tc in [
            "stable-x86_64-unknown-linux-gnu",
            "nightly-x86_64-unknown-linux-gnu",
            "1.80.0-x86_64-unknown-linux-gnu",
        ] {
            let bin = home.join("toolchains").join(tc).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("rustc"), "").unwrap();
        }
        std::fs::write(
            home.join("settings.toml"),
            format!(
                "default_host_triple = \"x86_64-unknown-linux-gnu\"\ndefault_toolchain = \"stable-x86_64-unknown-linux-gnu\"\n[overrides]\n\"{}\" = \"1.80.0-x86_64-unknown-linux-gnu\"\n",
                tmp.join("overridden").display()
            ),
        )
        .unwrap();
        RustupEnv {
            rustup_toolchain: None,
            rustup_home: Some(home),
            home: None,
        }
    }

    fn tc(p: Option<PathBuf>) -> String {
        p.unwrap()
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn recognises_proxies_by_link() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path();
        std::fs::write(bin.join("rustup"), "").unwrap();
        std::os::unix::fs::symlink(bin.join("rustup"), bin.join("cargo")).unwrap();
        std::fs::hard_link(bin.join("rustup"), bin.join("rustc")).unwrap();
        std::fs::write(bin.join("rustfmt"), "").unwrap();
        assert!(is_rustup_proxy(&bin.join("cargo")));
        assert!(is_rustup_proxy(&bin.join("rustc")));
        assert!(!is_rustup_proxy(&bin.join("rustfmt")));
        assert!(!is_rustup_proxy(&bin.join("missing")));
    }

    #[test]
    fn resolves_like_rustup() {
        let tmp = tempfile::tempdir().unwrap();
        let mut env = fake_rustup(tmp.path());
        let project = tmp.path().join("project/sub");
        std::fs::create_dir_all(&project).unwrap();
        let none: Vec<OsString> = vec![];
        assert_eq!(
            tc(toolchain_binary("rustc", &none, &project, &env)),
            "stable-x86_64-unknown-linux-gnu"
        );
        std::fs::write(
            tmp.path().join("project/rust-toolchain.toml"),
            "[toolchain]\nchannel = \"nightly\"\n",
        )
        .unwrap();
        assert_eq!(
            tc(toolchain_binary("rustc", &none, &project, &env)),
            "nightly-x86_64-unknown-linux-gnu"
        );
        let overridden = tmp.path().join("overridden/deep");
        std::fs::create_dir_all(&overridden).unwrap();
        assert_eq!(
            tc(toolchain_binary("rustc", &none, &overridden, &env)),
            "1.80.0-x86_64-unknown-linux-gnu"
        );
        env.rustup_toolchain = Some("1.80.0".into());
        assert_eq!(
            tc(toolchain_binary("rustc", &none, &project, &env)),
            "1.80.0-x86_64-unknown-linux-gnu"
        );
        let plus = vec![OsString::from("+stable"), OsString::from("-V")];
        assert_eq!(
            tc(toolchain_binary("rustc", &plus, &project, &env)),
            "stable-x86_64-unknown-linux-gnu"
        );
        assert!(toolchain_binary("rustc", &[OsString::from("+missing")], &project, &env).is_none());
        assert!(toolchain_binary("cargo", &none, &project, &env).is_none());
    }
}
