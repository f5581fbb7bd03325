//! Where tally keeps its data, and whether it counts at all.
//!
//! - [`env`](mod@env): the registry of every environment variable tally reads, and the per-process
//!   snapshot [`Env`] (read once).
//! - [`Home`]: the data directory (`$TALLY_DIR`, else `$XDG_STATE_HOME/tally`, else
//!   `$HOME/.local/state/tally`) and its layout (see `ARCHITECTURE.md`).
//! - [`Mode`] and [`effective_mode`]: `off`, `local` (the default), `on` with its consent date;
//!   the environment can only lower the stored mode.
//! - [`Home::week_of`]: the installation's week schedule, starting on a weekday chosen at random
//!   once and stored race-free.
//! - [`Store`]: the counter files of the data directory (naming, opening the current week's file,
//!   quarantining invalid ones, listing).
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
pub mod retention;

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use env::{Env, ProcessEnv};
pub use fsio::read_small;
pub use tally_protocol::Day;
pub use tally_sys::{
    CounterFile, FileId, FileMeta, ReadError, Snapshot, parse as parse_counter_file,
};

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

/// Whether tally counts and uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing is counted, written or started.
    Off,
    /// Count on this machine; send nothing. The default.
    Local,
    /// Count, and upload weeks that began after `since` (the consent date).
    On {
        /// The day `tally on` was run.
        since: Day,
    },
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Off => f.write_str("off"),
            Mode::Local => f.write_str("local"),
            Mode::On { since } => write!(f, "on {since}"),
        }
    }
}

impl FromStr for Mode {
    type Err = ();
    /// Parses the mode file's content: `off`, `local` or `on YYYY-MM-DD` (surrounding
    /// whitespace allowed).
    fn from_str(s: &str) -> Result<Mode, ()> {
        let s = s.trim();
        match s {
            "off" => Ok(Mode::Off),
            "local" => Ok(Mode::Local),
            _ => {
                let day = s.strip_prefix("on ").ok_or(())?.trim();
                day.parse().map(|since| Mode::On { since }).map_err(|_| ())
            }
        }
    }
}

/// One week of the installation's schedule: `[start, end)`, seven days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Week {
    /// First day.
    pub start: Day,
    /// The day after the last day (exclusive): `start + 7`.
    pub end: Day,
}

impl Week {
    /// The week starting on weekday `start_weekday` that contains `day`.
    pub fn containing(day: Day, start_weekday: time::Weekday) -> Result<Week, Error> {
        let today = i64::from(day.0.weekday().number_days_from_monday());
        let first = i64::from(start_weekday.number_days_from_monday());
        let back = (today - first).rem_euclid(7);
        let start = day.plus_days(-back).ok_or(Error::DayOutOfRange(day))?;
        let end = start.plus_days(7).ok_or(Error::DayOutOfRange(day))?;
        Ok(Week { start, end })
    }
}

const WEEKDAYS: [time::Weekday; 7] = [
    time::Weekday::Monday,
    time::Weekday::Tuesday,
    time::Weekday::Wednesday,
    time::Weekday::Thursday,
    time::Weekday::Friday,
    time::Weekday::Saturday,
    time::Weekday::Sunday,
];

/// The weekday file's spelling. A table of literals rather than `time`'s `Display` lowercased:
/// the shim parses the file on every run, and this allocates nothing.
fn weekday_name(w: time::Weekday) -> &'static str {
    match w {
        time::Weekday::Monday => "monday",
        time::Weekday::Tuesday => "tuesday",
        time::Weekday::Wednesday => "wednesday",
        time::Weekday::Thursday => "thursday",
        time::Weekday::Friday => "friday",
        time::Weekday::Saturday => "saturday",
        time::Weekday::Sunday => "sunday",
    }
}

fn parse_weekday(s: &str) -> Option<time::Weekday> {
    let s = s.trim();
    WEEKDAYS
        .into_iter()
        .find(|w| weekday_name(*w).eq_ignore_ascii_case(s))
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

    /// The stored mode: a missing file (or data directory) means [`Mode::Local`]; a file that
    /// cannot be read or parsed is an error saying how to fix it.
    pub fn stored_mode(&self) -> Result<Mode, Error> {
        let path = self.mode_path();
        match read_small(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                text.parse().map_err(|()| Error::BadModeFile {
                    content: snippet(&text),
                    path,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Mode::Local),
            Err(e) => Err(io_error(&path, "read")(e)),
        }
    }

    /// Stores the mode atomically (temporary file + rename), creating the data directory.
    pub fn set_mode(&self, mode: Mode) -> Result<(), Error> {
        make_dir(&self.root)?;
        write_atomic(&self.mode_path(), format!("{mode}\n").as_bytes())
    }

    /// The stored week-start weekday, if one was chosen. Creates nothing.
    pub fn stored_weekday(&self) -> Result<Option<time::Weekday>, Error> {
        let path = self.weekday_path();
        match read_small(&path).and_then(|bytes| {
            String::from_utf8(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
        }) {
            Ok(text) => parse_weekday(&text)
                .map(Some)
                .ok_or_else(|| Error::BadWeekdayFile {
                    content: snippet(&text),
                    path,
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(Error::BadWeekdayFile {
                content: "(not UTF-8)".into(),
                path,
            }),
            Err(e) => Err(io_error(&path, "read")(e)),
        }
    }

    /// The installation's week-start weekday, choosing one at random and storing it the first
    /// time. Race-free: the file is written complete under a temporary name and hard-linked
    /// into place, so when processes race exactly one choice wins and all of them read it.
    pub fn weekday(&self) -> Result<time::Weekday, Error> {
        if let Some(w) = self.stored_weekday()? {
            return Ok(w);
        }
        make_dir(&self.root)?;
        let choice = WEEKDAYS[fastrand::usize(..WEEKDAYS.len())];
        let path = self.weekday_path();
        fsio::create_exclusive(&path, format!("{}\n", weekday_name(choice)).as_bytes())
            .map_err(io_error(&path, "create"))?;
        self.stored_weekday()?.ok_or_else(|| Error::Io {
            path: self.weekday_path(),
            action: "read back",
            source: io::Error::new(io::ErrorKind::NotFound, "weekday file vanished"),
        })
    }

    /// The week of this installation's schedule that contains `day`.
    pub fn week_of(&self, day: Day) -> Result<Week, Error> {
        Week::containing(day, self.weekday()?)
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

/// The mode in force for this process: the stored mode, lowered (never raised) by the
/// environment. No data directory, or a mode file that cannot be read, means [`Mode::Off`]:
/// when in doubt, tally does nothing.
pub fn effective_mode(env: &Env, home: Option<&Home>) -> Mode {
    if env.forces_off() {
        return Mode::Off;
    }
    let Some(home) = home else {
        return Mode::Off;
    };
    match home.stored_mode() {
        Ok(Mode::On { .. }) if env.lowers_to_local() => Mode::Local,
        Ok(mode) => mode,
        Err(_) => Mode::Off,
    }
}

/// What a version is when it has no numeric core (and what a tool without one counts under).
pub const UNKNOWN_VERSION: &str = "unknown";

/// The version kept on disk for `raw` (a tool's own version text): the same canonical form
/// the upload copy uses ([`tally_protocol::version::canonical`]: `major.minor.patch` and a
/// `-nightly`, `-beta`, `-beta.N` or `-dev` channel, nothing else), or `unknown`. So neither a
/// counter file's name nor its header, nor any report, keeps what a custom build prints after
/// the number (`go1.19.8-<anything>`, a path, a commit). Borrows when `raw` is already
/// normalised, which the version cache makes the case on every shim run.
pub fn normalize_version(raw: &str) -> std::borrow::Cow<'_, str> {
    if is_normalized_version(raw) {
        return std::borrow::Cow::Borrowed(raw);
    }
    match tally_protocol::version::canonical(raw) {
        Some(v) => std::borrow::Cow::Owned(v),
        None => std::borrow::Cow::Borrowed(UNKNOWN_VERSION),
    }
}

/// Whether `v` is what [`normalize_version`] gives (checked by hand, without allocating: the
/// shim asks on every run).
pub fn is_normalized_version(v: &str) -> bool {
    if v == UNKNOWN_VERSION {
        return true;
    }
    /// A decimal number without leading zeros, and the rest.
    fn number(s: &str) -> Option<&str> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let digits = &s[..end];
        let fits = digits.len() <= 19 && !(digits.len() > 1 && digits.starts_with('0'));
        (!digits.is_empty() && fits).then(|| &s[end..])
    }
    let Some(rest) = number(v)
        .and_then(|r| r.strip_prefix('.'))
        .and_then(number)
        .and_then(|r| r.strip_prefix('.'))
        .and_then(number)
    else {
        return false;
    };
    match rest {
        "" | "-nightly" | "-dev" | "-beta" => true,
        _ => rest.strip_prefix("-beta.").is_some_and(|n| {
            !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit())
        }),
    }
}

/// Replaces every byte outside `[A-Za-z0-9._+~]` with `_`, for file names.
pub fn sanitize_component(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '~') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // A leading dot would hide the file (and `..` must never be a component).
    match cleaned.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None => cleaned,
    }
}

/// The file name of a counter file: `<program>@<version>-<os>-<arch>-<weekstart>.v1.count`,
/// e.g. `rustc@1.91.0-linux-x86_64-2026-11-24.v1.count`. Program, version, OS and arch are
/// sanitized to `[A-Za-z0-9._+~]` (anything else becomes `_`, so they contain no `-`); the week
/// start keeps its `YYYY-MM-DD` dashes when it is a valid day (it is the fixed-length last
/// component) and is sanitized like the rest otherwise. Readers trust the file's header, never
/// its name.
pub fn counter_file_name(meta: &FileMeta) -> String {
    // A day parses only from its one canonical `YYYY-MM-DD` text, so that text is the name's.
    let week_start = match meta.week_start.parse::<Day>() {
        Ok(_) => meta.week_start.clone(),
        Err(_) => sanitize_component(&meta.week_start),
    };
    // Put together by hand rather than with `format!`: the shim does this on every run.
    let mut name = String::with_capacity(64);
    for (part, separator) in [
        (sanitize_component(&meta.program), "@"),
        (sanitize_component(&meta.version), "-"),
        (sanitize_component(&meta.os), "-"),
        (sanitize_component(&meta.arch), "-"),
        (week_start, ".v1.count"),
    ] {
        name.push_str(&part);
        name.push_str(separator);
    }
    name
}

/// The counter files of one data directory.
#[derive(Debug, Clone)]
pub struct Store {
    home: Home,
}

impl Store {
    /// The data directory.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// The metadata of the counter file for `program`/`version` on this OS and arch in `week`.
    /// The version is normalised ([`normalize_version`]): the raw text never reaches a file.
    pub fn meta_for(program: &str, version: &str, week: Week) -> FileMeta {
        FileMeta {
            program: program.to_string(),
            version: normalize_version(version).into_owned(),
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            week_start: week.start.to_string(),
            week_end: week.end.to_string(),
        }
    }

    /// The hot-path entry: the counter file for this program/version/os/arch in the week
    /// containing `today`, creating directories and the file as needed. A corrupt or
    /// future-format file is quarantined and a fresh one started.
    pub fn open_current(
        &self,
        program: &str,
        version: &str,
        today: Day,
    ) -> Result<(CounterFile, bool), Error> {
        let week = self.home.week_of(today)?;
        let meta = Self::meta_for(program, version, week);
        let dir = self.home.counters_dir();
        let path = dir.join(counter_file_name(&meta));
        // One `lstat` per count: a link at `counters/` is never followed (the counter file is
        // opened `O_NOFOLLOW`, which only covers its own name).
        let mut made_dir = fsio::is_own_dir(&dir);
        if !made_dir {
            self.home.own_dir(&dir)?;
            made_dir = true;
        }
        let mut quarantined = false;
        loop {
            match CounterFile::open_or_create(&path, &meta) {
                Ok(opened) => return Ok(opened),
                // Removed since the check (`tally clean`): once more.
                Err(tally_sys::Error::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound && made_dir =>
                {
                    self.home.own_dir(&dir)?;
                    made_dir = false;
                }
                Err(e) if e.needs_quarantine() && !quarantined => {
                    self.quarantine_if_same(&path, e.file_id(), &quarantine_reason(&e))?;
                    quarantined = true;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Adds 1 to each of `names` in the current file (see [`Store::open_current`]). Corruption
    /// that only shows while walking the file (a chain cycle, a pointer past the end) is handled
    /// like corruption found at open: the file is quarantined, a fresh one started, and all the
    /// names counted there. Returns whether a file was created.
    pub fn count_names(
        &self,
        program: &str,
        version: &str,
        today: Day,
        names: &[&str],
    ) -> Result<bool, Error> {
        self.count_names_kept(program, version, today, names)
            .map(|counted| counted.created_file)
    }

    /// [`Store::count_names`], handing back the file still mapped (see [`Counted`]).
    pub fn count_names_kept(
        &self,
        program: &str,
        version: &str,
        today: Day,
        names: &[&str],
    ) -> Result<Counted, Error> {
        let (file, created) = self.open_current(program, version, today)?;
        let Err(e) = names.iter().try_for_each(|name| file.add(name, 1)) else {
            return Ok(Counted {
                created_file: created,
                file,
            });
        };
        if !e.needs_quarantine() {
            return Err(e.into());
        }
        let path = file.path().to_path_buf();
        drop(file);
        self.quarantine_if_same(&path, e.file_id(), &quarantine_reason(&e))?;
        let (file, created) = self.open_current(program, version, today)?;
        for name in names {
            file.add(name, 1)?;
        }
        Ok(Counted {
            created_file: created,
            file,
        })
    }

    /// Every counter file (`*.count` in `counters/`), sorted by path, each parsed. A missing
    /// directory is an empty list. Invalid files come back as errors (see
    /// [`ReadError::is_invalid_file`]); nothing is moved.
    pub fn list(&self) -> Vec<(PathBuf, Result<Snapshot, ReadError>)> {
        let mut paths = self.counter_paths();
        paths.sort();
        paths
            .into_iter()
            .map(|p| {
                let r = tally_sys::read_file(&p);
                (p, r)
            })
            .collect()
    }

    /// Paths of the counter files, unsorted: every `*.count` entry, links and special files
    /// included (reading them fails as an invalid file, so that they are moved aside like any
    /// corrupt one). A `counters/` that is not a real directory is not read through.
    pub(crate) fn counter_paths(&self) -> Vec<PathBuf> {
        let Ok(entries) = fsio::read_own_dir(&self.home.counters_dir()) else {
            return Vec::new();
        };
        entries
            .into_iter()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.') && n.ends_with(".count"))
            })
            .collect()
    }

    /// Moves `path` into `quarantine/` (never overwriting an earlier quarantined file) and
    /// writes `<name>.reason` beside it. Returns the new path. A link is moved itself: what it
    /// points to is never read, moved or touched.
    pub fn quarantine(&self, path: &Path, reason: &str) -> Result<PathBuf, Error> {
        let qdir = self.home.quarantine_dir();
        fsio::own_dir(self.home.root(), &qdir).map_err(io_error(&qdir, "create directory"))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "unnamed".into());
        let mut target = None;
        for i in 0..1000u32 {
            let candidate = if i == 0 {
                qdir.join(&name)
            } else {
                qdir.join(format!("{name}.{i}"))
            };
            // A hard link never replaces an existing file, unlike rename.
            match fs::hard_link(path, &candidate) {
                Ok(()) => {
                    fs::remove_file(path)
                        .or_else(|e| {
                            if e.kind() == io::ErrorKind::NotFound {
                                Ok(())
                            } else {
                                Err(e)
                            }
                        })
                        .map_err(io_error(path, "remove"))?;
                    target = Some(candidate);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(_) if fs::symlink_metadata(&candidate).is_err() => {
                    // No hard links here (another file system): rename instead.
                    fs::rename(path, &candidate).map_err(io_error(path, "quarantine"))?;
                    target = Some(candidate);
                    break;
                }
                Err(e) => return Err(io_error(path, "quarantine")(e)),
            }
        }
        let target = target.ok_or_else(|| Error::Io {
            path: path.to_path_buf(),
            action: "quarantine",
            source: io::Error::other(
                "1000 quarantined files of this name already exist; run `tally clean`",
            ),
        })?;
        // A hard link keeps the old modification time; retention counts from the move. Never
        // through a link or on a special file (the open refuses both): a link's target is not
        // tally's to touch.
        if let Ok(f) = fsio::open(&target, OpenOptions::new().write(true)) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        let mut reason_path = target.clone().into_os_string();
        reason_path.push(".reason");
        write_atomic(Path::new(&reason_path), format!("{reason}\n").as_bytes())?;
        Ok(target)
    }

    /// Quarantines `path` only if it is still the file found invalid (identity `id`): another
    /// process may already have moved it and started a fresh file there.
    fn quarantine_if_same(
        &self,
        path: &Path,
        id: Option<FileId>,
        reason: &str,
    ) -> Result<(), Error> {
        match (id, FileId::of_path(path)) {
            (Some(found), Ok(now)) if found != now => Ok(()),
            (_, Err(e)) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            _ => self.quarantine(path, reason).map(|_| ()),
        }
    }
}

/// Why a counter file was moved aside, in words that name no path (a `.reason` file is a file
/// tally writes, and paths never appear in those).
pub fn quarantine_reason(error: &tally_sys::Error) -> String {
    match error {
        tally_sys::Error::Corrupt { reason, .. } => {
            format!("not a valid tally counter file: {reason}")
        }
        tally_sys::Error::FutureVersion { found, .. } => format!(
            "counter file format version {found} is newer than this tally understands (version {}); upgrade tally to read it",
            tally_sys::FORMAT_VERSION
        ),
        _ => "the file cannot be used as a counter file".to_string(),
    }
}

/// Why a file that [`tally_sys::read_file`] rejected is invalid, without its path.
pub fn read_error_reason(error: &ReadError) -> String {
    match error {
        ReadError::Parse { source, .. } => source.to_string(),
        ReadError::TooLarge { size, .. } => format!(
            "the file is {size} bytes, more than the {} byte cap of the format",
            tally_sys::MAX_FILE_SIZE
        ),
        ReadError::Io { source, .. } => format!("cannot be read: {source}"),
    }
}

/// What [`count_invocation`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountOutcome {
    /// Mode off (or no data directory): nothing was touched.
    Skipped,
    /// The names were counted.
    Counted {
        /// Whether this call created the week's counter file.
        created_file: bool,
    },
}

/// What counting leaves behind: the week's counter file, still mapped and open, and whether
/// this count created it. Dropping it unmaps and closes the file. The shim and the wrapper
/// instead keep it until their `exec`, which unmaps and closes it along with the rest of the
/// process: a `munmap` and a `close` fewer on every compile (bench/README.md, "Shims"). The
/// count itself is already in the file, shared with every other process, whatever happens to
/// this mapping.
#[derive(Debug)]
pub struct Counted {
    /// Whether this count created the week's counter file.
    pub created_file: bool,
    file: CounterFile,
}

impl Counted {
    /// The file counted in.
    pub fn file(&self) -> &CounterFile {
        &self.file
    }
}

impl Home {
    /// Adds 1 to each of `names` in the file of `program` and `version` for the week containing
    /// `today`, creating it as needed; the file comes back still mapped (see [`Counted`]). No
    /// mode check: for callers that already know the effective mode is not off (the shim and
    /// the wrapper read it once).
    pub fn count(
        &self,
        today: Day,
        program: &str,
        version: &str,
        names: &[&str],
    ) -> Result<Counted, Error> {
        let counted = self
            .counter_store()
            .count_names_kept(program, version, today, names)?;
        if counted.created_file {
            // A new file means a new week (or a new program version): the one moment, at most
            // weekly per program, when the hot path pays for retention. This keeps the
            // footprint bounded in mode `local`, where no daily upload run ever sweeps.
            // Failures are the sweep's own business; counting already succeeded.
            let _ = retention::sweep(self, today);
        }
        Ok(counted)
    }
}

/// Checks the mode, then counts: if the effective mode is off, returns `Ok(Skipped)` having
/// touched nothing (no directories); a mode file that cannot be read is an error, also with
/// nothing touched. Otherwise opens the current week's file and adds 1 to each
/// name. Errors are returned. (The shim and the wrapper read the mode once themselves and call
/// [`Home::count`].)
pub fn count_invocation(
    env: &Env,
    program: &str,
    version: &str,
    names: &[&str],
) -> Result<CountOutcome, Error> {
    if env.forces_off() {
        return Ok(CountOutcome::Skipped);
    }
    let Some(home) = Home::locate(env) else {
        return Ok(CountOutcome::Skipped);
    };
    // A mode file that cannot be read or parsed counts as off (see `effective_mode`); the
    // error is still returned so that the caller can tell why nothing was counted.
    if home.stored_mode()? == Mode::Off {
        return Ok(CountOutcome::Skipped);
    }
    let created_file = home
        .count(env.today(), program, version, names)?
        .created_file;
    Ok(CountOutcome::Counted { created_file })
}

#[cfg(test)]
mod tests {
    use super::*;

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
