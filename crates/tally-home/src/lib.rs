//! Where tally keeps its data, and whether it counts at all.
//!
//! - [`env`](mod@env): the process's environment ([`ProcessEnv`], copied once) and tally's own
//!   variables out of it ([`Env`]); every variable is declared in `tally_env`.
//! - [`fsio`]: the one way into the data directory (no link followed, nothing blocks).
//! - [`Home`]: the data directory (`$TALLY_DIR`, else `$XDG_STATE_HOME/tally`, else
//!   `$HOME/.local/state/tally`) and its layout (see `ARCHITECTURE.md`).
//! - `mode.rs`, [`Mode`] and [`effective_mode`]: `off`, `local` (the default), `on` with its
//!   consent date; the environment can only lower the stored mode.
//! - `week.rs`, [`Home::week_of`]: the installation's week schedule, starting on a weekday
//!   chosen at random once and stored race-free.
//! - `store.rs`, [`Store`]: the counter files of the data directory (naming, opening the
//!   current week's file, quarantining invalid ones, listing).
//! - [`Home::count`]: what the shim and the wrapper call once they have read the mode
//!   ([`effective_mode`]) themselves; [`count_invocation`] does both in one call.
//! - [`retention`]: deleting old weeks.
//!
//! Promises: in mode off (including `TALLY=off` and `DO_NOT_TRACK`), nothing here creates or
//! writes anything, not even a directory. Files are created 0600 and directories 0700. Nothing
//! here panics on bad files or environments; errors say what is wrong and how to fix it.

#![forbid(unsafe_code)]

pub mod env;
pub mod fsio;
mod mode;
pub mod retention;
mod store;
mod week;

pub use mode::{Mode, effective_mode};
pub use store::*;
pub use week::Week;

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};

pub use env::Env;
pub use fsio::read_small;
pub use tally_protocol::Day;
pub use tally_sys::{CounterFile, FileMeta, ReadError, Snapshot, parse as parse_counter_file};

/// Errors of the data directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No data directory: none of TALLY_DIR, XDG_STATE_HOME, HOME is usable.
    #[error(
        "tally has no data directory: set TALLY_DIR or XDG_STATE_HOME to an absolute path, or HOME"
    )]
    NoHome,
    /// A file system operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// The mode file holds something else than `off`, `local` or `on YYYY-MM-DD`.
    #[error(
        "mode file {} holds {content:?}, not `off`, `local` or `on YYYY-MM-DD`; run `tally off`, `tally local` or `tally on` to rewrite it",
        path.display()
    )]
    BadModeFile {
        /// The mode file.
        path: PathBuf,
        /// Its content (at most 64 characters).
        content: String,
    },
    /// The weekday file holds something else than an English weekday name.
    #[error(
        "weekday file {} holds {content:?}, not a weekday name like `tuesday`; delete it and tally will choose a new week start",
        path.display()
    )]
    BadWeekdayFile {
        /// The weekday file.
        path: PathBuf,
        /// Its content (at most 64 characters).
        content: String,
    },
    /// A program name that breaks the shared rule ([`tally_protocol::is_program_name`]): no
    /// counter file is made for it.
    #[error(
        "program name {0:?} is not 1 to 64 lowercase ASCII letters, digits, `-` and `_` starting with a letter or digit; nothing is counted for it"
    )]
    BadProgramName(String),
    /// A day outside the supported calendar range.
    #[error("day arithmetic out of range near {0}")]
    DayOutOfRange(Day),
    /// A counter file operation failed.
    #[error(transparent)]
    Counter(#[from] tally_sys::Error),
}

fn io_error<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

fn snippet(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Creates a directory and its parents with mode 0700.
pub(crate) fn make_dir(path: &Path) -> Result<(), Error> {
    fsio::make_dir(path).map_err(io_error(path, "create directory"))
}

/// Replaces `path` atomically (see [`fsio::write_atomic`]).
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), Error> {
    fsio::write_atomic(path, contents).map_err(io_error(path, "replace"))
}

/// tally's data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The data directory: `$TALLY_DIR`, else `$XDG_STATE_HOME/tally`, else
    /// `$HOME/.local/state/tally`. Each must be an absolute path (a relative `XDG_STATE_HOME` is
    /// ignored as the XDG spec says; a relative `TALLY_DIR` means no home at all, so tally never
    /// writes into whatever directory a tool happens to run in). Creates nothing.
    pub fn locate(env: &Env) -> Option<Home> {
        let absolute = |name: &str| {
            env.get(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .map(|p| p.is_absolute().then_some(p))
        };
        if let Some(dir) = absolute(env::TALLY_DIR) {
            return dir.map(Home::at);
        }
        if let Some(Some(state)) = absolute(env::XDG_STATE_HOME) {
            return Some(Home::at(state.join("tally")));
        }
        let home = absolute(env::HOME)??;
        Some(Home::at(home.join(".local/state/tally")))
    }

    /// A data directory at `root` (which need not exist).
    pub fn at(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `counters/`: counter files.
    pub fn counters_dir(&self) -> PathBuf {
        self.root.join("counters")
    }

    /// `quarantine/`: invalid files moved aside, each with a `.reason` file.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.root.join("quarantine")
    }

    /// `reports/`: `local/`, `pending/`, `sent/`, `refused/`.
    pub fn reports_dir(&self) -> PathBuf {
        self.root.join("reports")
    }

    /// `config/`: endpoint, cached config and ratchet.
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }

    /// `versions/`: the shims' cache of real tools' versions.
    pub fn versions_dir(&self) -> PathBuf {
        self.root.join("versions")
    }

    /// The mode file.
    pub fn mode_path(&self) -> PathBuf {
        self.root.join("mode")
    }

    /// The weekday file.
    pub fn weekday_path(&self) -> PathBuf {
        self.root.join("weekday")
    }

    /// Makes sure `dir` (inside the data directory) is a real directory tally can use, creating
    /// what is missing. A link, file or special file in the way below the root (something tally
    /// did not make) is moved into `quarantine/` like any corrupt entry, never followed, and a
    /// fresh directory is made in its place. The root is the user's and is followed; something
    /// wrong at `quarantine/` itself is an error.
    pub fn own_dir(&self, dir: &Path) -> Result<(), Error> {
        let below = dir.strip_prefix(&self.root).unwrap_or(Path::new(""));
        make_dir(&self.root)?;
        let quarantine = self.quarantine_dir();
        let mut at = self.root.clone();
        for part in below.components() {
            at.push(part);
            match fsio::dir_state(&at).map_err(io_error(&at, "inspect"))? {
                fsio::DirState::Dir => continue,
                fsio::DirState::Missing => {}
                fsio::DirState::NotDir(found) if at != quarantine => {
                    let name = part.as_os_str().to_string_lossy();
                    let reason = format!(
                        "{} stood where tally keeps its `{name}` directory; tally never follows \
                         links or uses special files in its data directory",
                        found.what
                    );
                    self.counter_store().quarantine(&at, &reason)?;
                }
                fsio::DirState::NotDir(found) => {
                    return Err(io_error(&at, "use")(fsio::not_a_directory(&at, found)));
                }
            }
            fsio::make_one_dir(&at).map_err(io_error(&at, "create directory"))?;
        }
        Ok(())
    }

    /// The counter files of this data directory.
    pub fn counter_store(&self) -> Store {
        Store { home: self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::week::{WEEKDAYS, parse_weekday, weekday_name};

    #[test]
    fn weekday_names_are_times_lowercased_and_parse_back() {
        for w in WEEKDAYS {
            assert_eq!(weekday_name(w), w.to_string().to_ascii_lowercase());
            assert_eq!(parse_weekday(weekday_name(w)), Some(w));
            assert_eq!(
                parse_weekday(&format!(" {}\n", w.to_string().to_uppercase())),
                Some(w)
            );
        }
        assert_eq!(parse_weekday("someday"), None);
    }

    #[test]
    fn normalised_versions_are_the_upload_copys() {
        for raw in [
            "1.95.0",
            "go1.19.8",
            "go1.19.8-custom-/home/alice/secret",
            "1.19",
            "1.96.0-nightly",
            "1.8.0-stable",
            "1.96.0-beta.3",
            "1.96.0-beta.12345",
            "01.2.3",
            "1.2.3.4",
            "unknown",
            "",
            "devel go1.23-abc /tmp/x",
            "99999999999999999999.1.1",
            "1.2.3-dev",
            "1.2.3-nightly-x",
        ] {
            let want = tally_protocol::version::canonical(raw)
                .unwrap_or_else(|| UNKNOWN_VERSION.to_string());
            assert_eq!(normalize_version(raw), want, "{raw:?}");
            assert!(is_normalized_version(&want), "{want:?}");
            assert_eq!(is_normalized_version(raw), raw == want, "{raw:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_hand_check_agrees_with_the_protocol(raw in "(go)?[0-9]{1,3}(\\.[0-9]{1,3}){0,3}(-[a-z]{0,8}(\\.[0-9]{0,4})?)?( .*)?") {
            let want = tally_protocol::version::canonical(&raw)
                .unwrap_or_else(|| UNKNOWN_VERSION.to_string());
            proptest::prop_assert_eq!(normalize_version(&raw).into_owned(), want.clone());
            proptest::prop_assert_eq!(is_normalized_version(&raw), raw == want);
        }
    }

    #[test]
    fn modes_round_trip() {
        for text in ["off", "local", "on 2026-11-24"] {
            let mode: Mode = text.parse().unwrap();
            assert_eq!(mode.to_string(), text);
        }
        for bad in ["", "on", "on yesterday", "ON 2026-11-24", "maybe"] {
            assert!(bad.parse::<Mode>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn weeks_start_on_the_chosen_weekday() {
        let day: Day = "2026-11-24".parse().unwrap(); // a Tuesday
        let w = Week::containing(day, time::Weekday::Tuesday).unwrap();
        assert_eq!(w.start, day);
        let w = Week::containing(day, time::Weekday::Wednesday).unwrap();
        assert_eq!(w.start.to_string(), "2026-11-18");
        assert_eq!(w.end.to_string(), "2026-11-25");
    }

    #[test]
    fn sanitizes_file_names() {
        assert_eq!(
            sanitize_component("1.82.0 (f6e511eec 2024)"),
            "1.82.0__f6e511eec_2024_"
        );
        assert_eq!(sanitize_component("../etc"), "_._etc");
        assert_eq!(sanitize_component("a/b"), "a_b");
        let mut meta = FileMeta {
            program: "rustc".into(),
            version: "1.95.0 (x)".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            week_start: "2026-11-24".into(),
            week_end: "2026-12-01".into(),
        };
        assert_eq!(
            counter_file_name(&meta),
            "rustc@1.95.0__x_-linux-x86_64-2026-11-24.v1.count"
        );
        meta.week_start = "../2026".into();
        assert_eq!(
            counter_file_name(&meta),
            "rustc@1.95.0__x_-linux-x86_64-_._2026.v1.count"
        );
    }
}
