//! Starting the daily upload from the hot path, at most once a day, never blocking the tool.
//!
//! In mode `on` only (not in CI unless `TALLY_ALLOW_CI_UPLOAD` is set, never with
//! `TALLY_DEBUG_UPLOAD`), one `stat` of `<data>/upload.token` decides: missing or older than
//! 24 h means a run is due. The token is touched first, so parallel compiles do not all start
//! one (`tally upload` also holds a lock, so two never send at once). The run is
//! `<tally> upload --background` (the CLI binary: this one, or the `tally` installed beside
//! `tally-shim`; without one, no run), started through `sh -c '… &'`, which returns at once: the
//! uploader is reparented to init, is never a child of the tool tally hands over to (a stray
//! child could confuse tools that wait for any child), and has no stdio. `tally upload
//! --background` calls `setsid` itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use tally_home::{Env, Mode};

/// At most one run per this interval.
pub const INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// Whether the environment allows a background upload in `mode`.
pub fn allowed(env: &Env, mode: Mode) -> bool {
    use tally_home::env::{TALLY_ALLOW_CI_UPLOAD, TALLY_DEBUG_UPLOAD, is_truthy};
    matches!(mode, Mode::On { .. })
        && env.get(TALLY_DEBUG_UPLOAD).is_none()
        && (!env.is_ci() || env.get(TALLY_ALLOW_CI_UPLOAD).is_some_and(is_truthy))
}

/// Whether a run is due by the token's mtime (missing or unreadable: due). A link's own time
/// is read, never its target's (and touching the token then refuses the link: no run).
pub fn due(token: &Path, now: SystemTime) -> bool {
    match std::fs::symlink_metadata(token).and_then(|m| m.modified()) {
        Ok(mtime) => now
            .duration_since(mtime)
            .map(|age| age >= INTERVAL)
            .unwrap_or(false),
        Err(_) => true,
    }
}

/// Checks and, if due, touches the token and starts the upload with the CLI binary `cli` gives
/// (asked only then). Returns whether one was started. Every failure means "not started".
pub fn maybe_start(
    env: &Env,
    mode: Mode,
    data_dir: &Path,
    cli: impl FnOnce() -> Option<PathBuf>,
) -> bool {
    if !allowed(env, mode) {
        return false;
    }
    let token = data_dir.join("upload.token");
    if !due(&token, tally_home::env::now()) {
        return false;
    }
    let Some(tally) = cli() else { return false };
    // Never through a link, never waiting on a FIFO: a planted token means no background run,
    // and the tool runs at once.
    if tally_home::fsio::touch(&token).is_err() {
        return false;
    }
    Command::new("/bin/sh")
        .arg("-c")
        .arg("\"$0\" upload --background </dev/null >/dev/null 2>&1 &")
        .arg(tally)
        .env_remove(tally_home::env::TALLY_FORCE_ARG0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_in_mode_on_and_never_in_ci_or_debug() {
        let on = Mode::On {
            since: "2026-11-01".parse().unwrap(),
        };
        assert!(allowed(&Env::from_strs(&[]), on));
        assert!(!allowed(&Env::from_strs(&[]), Mode::Local));
        assert!(!allowed(&Env::from_strs(&[]), Mode::Off));
        assert!(!allowed(&Env::from_strs(&[("CI", "true")]), on));
        assert!(allowed(
            &Env::from_strs(&[("CI", "true"), ("TALLY_ALLOW_CI_UPLOAD", "1")]),
            on
        ));
        assert!(!allowed(
            &Env::from_strs(&[("TALLY_DEBUG_UPLOAD", "1")]),
            on
        ));
    }

    #[test]
    fn due_once_a_day_by_token_mtime() {
        let tmp = tempfile::tempdir().unwrap();
        let token = tmp.path().join("upload.token");
        let now = SystemTime::now();
        assert!(due(&token, now));
        tally_home::fsio::touch(&token).unwrap();
        assert!(!due(&token, now));
        assert!(due(&token, now + INTERVAL + Duration::from_secs(1)));
    }

    #[test]
    fn starts_detached_and_touches_the_token() {
        let tmp = tempfile::tempdir().unwrap();
        let marker = tmp.path().join("ran");
        let fake = tmp.path().join("tally");
        std::fs::write(
            &fake,
            format!("#!/bin/sh\necho \"$@\" > {}\n", marker.display()),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let on = Mode::On {
            since: "2026-11-01".parse().unwrap(),
        };
        let cli = || Some(fake.clone());
        assert!(maybe_start(&Env::from_strs(&[]), on, tmp.path(), cli));
        assert!(tmp.path().join("upload.token").exists());
        // Not again the same day.
        assert!(!maybe_start(&Env::from_strs(&[]), on, tmp.path(), cli));
        // The detached child runs on its own; wait for it, bounded.
        for _ in 0..500 {
            if std::fs::read_to_string(&marker).is_ok_and(|s| s.contains("upload --background")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the background upload never ran");
    }
}
