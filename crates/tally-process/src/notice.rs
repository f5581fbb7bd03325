//! The first-run notice: the first time tally counts anything, it says once, on stderr, what it
//! does, where the data is, how to see it and how to turn it off. Never on a non-terminal, never
//! in CI, never twice (a `notice-shown` marker in the data directory, created exclusively, so
//! parallel compiles print it at most once). Checked only when a counter file was just created,
//! or when the count is handed to a helper because the tool's version is not cached yet (the
//! helper has no terminal; a first run always finds the cache empty), so it costs nothing
//! normally.

use std::io::{IsTerminal, Write};
use std::path::Path;

use tally_home::Env;

/// The marker file's name in the data directory.
pub const MARKER: &str = "notice-shown";

/// The notice text for data kept in `data_dir`.
pub fn text(data_dir: &Path) -> String {
    format!(
        "tally: counting which subcommands and flags (never their values) you use with cargo, \
         rustc, rustfmt, go and gofmt, on this machine only: nothing is sent unless you run \
         `tally on`.\n\
         tally: data: {}\n\
         tally: see it with `tally show`; turn it off with `tally off` (or TALLY=off for one shell). \
         This notice is shown once.\n",
        data_dir.display()
    )
}

/// Prints the notice if it is due and `stderr` is a terminal. Returns whether it printed.
pub fn maybe_show(env: &Env, data_dir: &Path) -> bool {
    let stderr = std::io::stderr();
    if env.is_ci() || !stderr.is_terminal() {
        return false;
    }
    show_once(data_dir, &mut stderr.lock())
}

/// Writes the notice to `out` unless the marker exists; creates the marker first, exclusively.
pub fn show_once(data_dir: &Path, out: &mut dyn Write) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(data_dir.join(MARKER));
    if created.is_err() {
        return false;
    }
    out.write_all(text(data_dir).as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_once() {
        let tmp = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        assert!(show_once(tmp.path(), &mut out));
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("tally show") && text.contains("tally off") && text.contains("TALLY=off")
        );
        assert!(text.contains(&tmp.path().display().to_string()));
        let mut again = Vec::new();
        assert!(!show_once(tmp.path(), &mut again));
        assert!(again.is_empty());
    }

    #[test]
    fn never_in_ci() {
        let tmp = tempfile::tempdir().unwrap();
        let env = Env::from_pairs([("CI".into(), "true".into())]);
        assert!(!maybe_show(&env, tmp.path()));
        assert!(!tmp.path().join(MARKER).exists());
    }
}
