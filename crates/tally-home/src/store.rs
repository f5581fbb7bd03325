//! The counter store: counter file names (program, normalised version, OS, arch, week), opening
//! the current week's file, quarantining invalid ones, listing, and counting an invocation.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::*;
use tally_sys::FileId;

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

/// Whether `v` is what [`normalize_version`] gives (the protocol's own check, which allocates
/// nothing: the shim asks on every run).
pub fn is_normalized_version(v: &str) -> bool {
    v == UNKNOWN_VERSION || tally_protocol::version::is_canonical(v)
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
/// component) and is sanitized like the rest otherwise. A file is counted into and read only
/// under the name its own header gives ([`name_disagreement`]).
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

/// Why a counter file's header disagrees with its file name, if it does: which of the fields
/// that make up the name (program, version, OS, arch, week) name something else, in words that
/// carry none of the values (a `.reason` file is a file tally writes). Such a file is never
/// counted into and never read under either name: a file is trusted only when its name is
/// [`counter_file_name`] of its own header.
pub fn name_disagreement(path: &Path, meta: &FileMeta) -> Option<String> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let expected = counter_file_name(meta);
    if name == expected {
        return None;
    }
    // Both names split into their fields: `<program>@<version>-<os>-<arch>-<week>.v1.count`,
    // with no `-` in the first four (sanitized) and the week last.
    fn fields(name: &str) -> Option<[&str; 5]> {
        let (program, rest) = name.strip_suffix(".v1.count")?.split_once('@')?;
        let mut parts = rest.splitn(4, '-');
        Some([
            program,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        ])
    }
    const FIELDS: [&str; 5] = ["program", "version", "OS", "arch", "week"];
    let differ: Vec<&str> = match (fields(name), fields(&expected)) {
        (Some(found), Some(wanted)) => FIELDS
            .iter()
            .zip(found.iter().zip(wanted.iter()))
            .filter(|(_, (a, b))| a != b)
            .map(|(field, _)| *field)
            .collect(),
        _ => Vec::new(),
    };
    Some(if differ.is_empty() {
        "its header does not describe the file its name says it is".to_string()
    } else {
        format!(
            "its header names another {} than its file name; tally counts into and reads a file \
             only under its own header's name",
            differ.join(", ")
        )
    })
}

/// The counter files of one data directory.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) home: Home,
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
    /// future-format file is quarantined and a fresh one started. A program name that breaks
    /// [`tally_protocol::is_program_name`] is an error, with nothing created.
    pub fn open_current(
        &self,
        program: &str,
        version: &str,
        today: Day,
    ) -> Result<(CounterFile, bool), Error> {
        // The one rule for program names, the collector's too: anything else never becomes a
        // file (its name and header would carry it into every report).
        if !tally_protocol::is_program_name(program) {
            return Err(Error::BadProgramName(snippet(program)));
        }
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
                // Another program's (or week's) file put at this one's name: moved aside like a
                // corrupt one. A file whose header agrees with its name but not with `meta` is
                // another program's own (two names sanitized alike) and stays.
                Err(tally_sys::Error::MetaMismatch { found, file_id, .. }) if !quarantined => {
                    let Some(reason) = name_disagreement(&path, &found) else {
                        return Err(tally_sys::Error::MetaMismatch {
                            path,
                            expected: Box::new(meta),
                            found,
                            file_id,
                        }
                        .into());
                    };
                    self.quarantine_if_same(&path, file_id, &reason)?;
                    quarantined = true;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Adds 1 to each of `names` in the current file (see [`Store::open_current`]) and hands the
    /// file back still mapped (see [`Counted`]). Corruption that only shows while walking the
    /// file (a chain cycle, a pointer past the end) is handled like corruption found at open:
    /// the file is quarantined, a fresh one started, and all the names counted there.
    pub fn count_names(
        &self,
        program: &str,
        version: &str,
        today: Day,
        names: &[&str],
    ) -> Result<Counted, Error> {
        let (file, created) = self.open_current(program, version, today)?;
        let (file, created) = match names.iter().try_for_each(|name| file.add(name, 1)) {
            Ok(()) => (file, created),
            Err(e) if e.needs_quarantine() => {
                let path = file.path().to_path_buf();
                drop(file);
                self.quarantine_if_same(&path, e.file_id(), &quarantine_reason(&e))?;
                let (file, created) = self.open_current(program, version, today)?;
                for name in names {
                    file.add(name, 1)?;
                }
                (file, created)
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Counted {
            created_file: created,
            file,
        })
    }

    /// Every counter file (`*.count` in `counters/`), sorted by path, each read with
    /// [`Store::read`]. A missing directory is an empty list. Invalid files come back as errors
    /// (see [`ReadError::is_invalid_file`]); nothing is moved.
    pub fn list(&self) -> Vec<(PathBuf, Result<Snapshot, ReadError>)> {
        let mut paths = self.counter_paths();
        paths.sort();
        paths
            .into_iter()
            .map(|p| {
                let r = Self::read(&p);
                (p, r)
            })
            .collect()
    }

    /// Reads and parses the counter file at `path`; a file whose header disagrees with its
    /// name ([`name_disagreement`]) is an invalid file, like a corrupt one.
    pub fn read(path: &Path) -> Result<Snapshot, ReadError> {
        let snapshot = tally_sys::read_file(path)?;
        match name_disagreement(path, &snapshot.meta) {
            None => Ok(snapshot),
            Some(reason) => Err(ReadError::Parse {
                path: path.to_path_buf(),
                source: tally_sys::ParseError::Corrupt(reason),
            }),
        }
    }

    /// Paths of the counter files, unsorted: every `*.count` entry, links and special files
    /// included (reading them fails as an invalid file, so that they are moved aside like any
    /// corrupt one). A `counters/` that is not a real directory is not read through.
    pub(crate) fn counter_paths(&self) -> Vec<PathBuf> {
        fsio::visible_entries(&self.home.counters_dir(), ".count")
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
            .count_names(program, version, today, names)?;
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
