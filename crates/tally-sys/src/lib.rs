//! tally's system layer: every `unsafe` line of tally is in this crate, behind safe functions
//! whose contracts are written on them. It holds:
//! - counter files: memory shared between processes (this page, and [`CounterFile`]);
//! - [`startup`]: what the process was started with (arguments, environment, the path it was
//!   started by), read without a system call;
//! - [`clock`]: the time, without the vDSO;
//! - [`spawn`]: a child that inherits exactly what this process inherited (the waiting
//!   `RUSTC_WRAPPER`);
//! - [`detach`]: a helper process that outlives this one, for work that must not hold the
//!   tool up (a slow version query, a compiler's late output);
//! - [`safe_open`]: opening a file of the data directory without following a link or blocking.
//!
//! # Counter files
//!
//! Memory-mapped, lock-free, shared by every process of a user at once. A counter file holds the counts of one (program, version, OS, arch, week). Many processes map
//! the same file and increment it concurrently (cargo runs many `rustc` at once); increments are
//! atomic adds on the shared mapping, and adding a new counter name or growing the file is
//! lock-free and safe against other processes doing the same at the same moment. No increment
//! is ever lost, and a process killed at any instant leaves a file that still parses.
//!
//! This crate promises:
//! - [`parse`] and [`read_file`] never panic and never loop on any bytes; every check is bounded.
//! - [`CounterFile::add`] never corrupts a file: past a cap (name length [`MAX_NAME_LEN`], number
//!   of counters [`MAX_COUNTERS`], file size [`MAX_FILE_SIZE`]) the increment is refused and added
//!   to the file's `dropped` count instead.
//! - Files are created atomically (fully written under a temporary name, then hard-linked into
//!   place), with mode 0600, and every descriptor is close-on-exec (the process that maps a file
//!   is about to `exec` the real tool).
//! - A remap never loops: the mapping reserves [`MAX_FILE_SIZE`] bytes of address space once,
//!   so growth never remaps; a pointer past the known end is re-checked against the file size
//!   exactly once and is then reported as corruption (compare golang/go#68311).
//!
//! Every `unsafe` block says why it is sound, and every `unsafe fn` has a `# Safety` list.
//!
//! ## A mapped file that shrinks
//!
//! A mapping does not shrink with its file: if another program truncates a counter file while
//! tally has it mapped, touching a page past the new end raises `SIGBUS`. tally itself never
//! shrinks a counter file (files are created whole by a hard link, only ever grow, and are
//! moved aside by `rename`, never truncated), every offset is checked against the file's length
//! (`fstat`, once) before its page is first touched, and the shim keeps a file mapped only from
//! its count to its `exec`, a fraction of a millisecond. The wrapper, which keeps its file mapped
//! through a whole compile, checks the length again ([`CounterFile::still_whole`], one `fstat`)
//! before it counts the compile's outcome, and counts nothing when the file shrank. What is left
//! is a truncation by another program in the microseconds between that check (or the shim's
//! `fstat`) and the increments, which kills that one run with `SIGBUS`; the next run finds a
//! file shorter than its header says and quarantines it. A tool counting through
//! `tally-counter` keeps its file mapped for its whole life and does not check (its docs say
//! why): a truncation by another program kills it at its next increment.
//! `tests/integration/mapped.rs` holds both sides: everything tally does in `counters/` while
//! another process has a file mapped, and the `SIGBUS` of a truncation.
//!
//! # File format
//!
//! Specified once, in `docs/counter-file-format.md` (precise enough that `fuzz/make_seeds.py`,
//! an independent writer made from it alone, produces files this crate reads exactly:
//! `tests/sys/parser.rs`). The constants below ([`MAX_NAME_LEN`], [`MAX_COUNTERS`],
//! [`MAX_FILE_SIZE`], ...) are the format's caps.

#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "linux")]
pub mod clock;
#[cfg(unix)]
pub mod detach;
mod layout;
mod mapped;
mod parse;
pub mod safe_open;
#[cfg(unix)]
pub mod spawn;
#[cfg(target_os = "linux")]
pub mod startup;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

pub use layout::{MAX_META_FIELD_LEN, MAX_META_LEN, PAGE_SIZE};
pub use mapped::{Counter, CounterFile, FileId};
pub use parse::parse;

/// Longest counter name, in bytes. Longer names are not stored: the increment goes to `dropped`.
pub const MAX_NAME_LEN: usize = 240;

/// Most records (distinct counter names) one file holds. Past it, increments of new names go to
/// `dropped`.
pub const MAX_COUNTERS: usize = 4096;

/// Largest size a counter file ever grows to (1 MiB). Past it, new names go to `dropped`.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// What a counter file is about: taken from its header, never from its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileMeta {
    /// Program counted, e.g. `rustc`.
    pub program: String,
    /// Its version, e.g. `1.82.0`.
    pub version: String,
    /// Operating system (`std::env::consts::OS`).
    pub os: String,
    /// CPU architecture (`std::env::consts::ARCH`).
    pub arch: String,
    /// First day of the week, `YYYY-MM-DD`.
    pub week_start: String,
    /// Day after the last day of the week (exclusive), `YYYY-MM-DD`.
    pub week_end: String,
}

/// Everything a counter file holds, as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The file's header metadata.
    pub meta: FileMeta,
    /// Every counter and its count.
    pub counters: BTreeMap<String, u64>,
    /// Increments refused because a cap was reached (name too long, too many counters, file
    /// too large).
    pub dropped: u64,
}

/// Why bytes are not a valid counter file. Returned by [`parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The bytes are not a valid counter file of a version this crate knows.
    #[error("not a valid tally counter file: {0}")]
    Corrupt(String),
    /// A counter file of a newer format.
    #[error(
        "counter file format version {found} is newer than this tally understands (version {supported}); upgrade tally to read it"
    )]
    FutureVersion {
        /// Version in the file.
        found: u32,
        /// Newest version this crate reads.
        supported: u32,
    },
}

/// Why a counter file could not be read. Returned by [`read_file`].
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read counter file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is larger than any valid counter file.
    #[error(
        "counter file {} is {size} bytes, more than the {max} byte cap of the format; it is not a tally counter file",
        path.display(),
        max = MAX_FILE_SIZE
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The file's bytes are not a valid counter file.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: ParseError,
    },
}

impl ReadError {
    /// True when the file exists but is not a valid counter file of a known version: the caller
    /// should move it aside (quarantine) rather than retry.
    pub fn is_invalid_file(&self) -> bool {
        matches!(self, ReadError::TooLarge { .. } | ReadError::Parse { .. })
    }
}

/// Errors of [`CounterFile`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call on the file failed (permissions, full disk, missing directory, ...).
    #[error("counter file {}: cannot {action}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done, e.g. "open", "extend".
        action: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// The existing file is not a valid counter file; move it aside and start a fresh one.
    #[error("counter file {} is corrupt ({reason}); it should be quarantined and a fresh file started", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// Identity of the file found corrupt, so that a caller moving it aside can check that
        /// the path still names that same file (another process may have replaced it already).
        file_id: Option<FileId>,
    },
    /// The existing file has a newer format version.
    #[error(
        "counter file {} has format version {found}, newer than this tally's {FORMAT_VERSION}; it should be quarantined (upgrade tally to read it)",
        path.display()
    )]
    FutureVersion {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Identity of the file (see [`Error::Corrupt`]).
        file_id: Option<FileId>,
    },
    /// The file at this path describes another program/version/os/arch/week than asked for
    /// (two names sanitized to the same file name).
    #[error(
        "counter file {} holds {found:?}, not the expected {expected:?}; not counting into it",
        path.display()
    )]
    MetaMismatch {
        /// The file.
        path: PathBuf,
        /// What the caller asked for.
        expected: Box<FileMeta>,
        /// What the file's header says.
        found: Box<FileMeta>,
        /// Identity of the file (see [`Error::Corrupt`]): a caller that finds the header at odds
        /// with the file's name moves it aside.
        file_id: Option<FileId>,
    },
    /// The metadata given for a new file cannot be stored.
    #[error("invalid counter file metadata: {0}")]
    InvalidMeta(String),
    /// The counter name cannot be stored (empty).
    #[error("invalid counter name: {0}")]
    InvalidName(String),
}

impl Error {
    /// True when the file should be moved aside and a fresh one started.
    pub fn needs_quarantine(&self) -> bool {
        matches!(self, Error::Corrupt { .. } | Error::FutureVersion { .. })
    }

    /// Identity of the invalid file, when known.
    pub fn file_id(&self) -> Option<FileId> {
        match self {
            Error::Corrupt { file_id, .. }
            | Error::FutureVersion { file_id, .. }
            | Error::MetaMismatch { file_id, .. } => *file_id,
            _ => None,
        }
    }
}

/// Reads and parses the counter file at `path`.
///
/// The file is copied with one `read` and parsed; a file being written concurrently yields a
/// valid snapshot of some moment (records are published only after their bytes are written).
pub fn read_file(path: &Path) -> Result<Snapshot, ReadError> {
    use std::io::Read;
    let io_err = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    // A link or special file in the counters directory is an invalid counter file (moved
    // aside by the callers), never followed or waited on.
    let file = safe_open::open_read(path).map_err(|e| match safe_open::not_regular(&e) {
        Some(found) => ReadError::Parse {
            path: path.to_path_buf(),
            source: ParseError::Corrupt(found.to_string()),
        },
        None => io_err(e),
    })?;
    let size = file.metadata().map_err(io_err)?.len();
    // Writers never extend a file past the cap, so anything larger is not ours.
    if size > MAX_FILE_SIZE {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            size,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    parse(&bytes).map_err(|source| ReadError::Parse {
        path: path.to_path_buf(),
        source,
    })
}
