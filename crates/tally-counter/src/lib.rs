//! Counter files: memory-mapped, lock-free, shared by every process of a user at once.
//!
//! A counter file holds the counts of one (program, version, OS, arch, week). Many processes map
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
//! This is the only crate of tally with `unsafe` code; every `unsafe` block says why it is sound.
//! That is also why it holds two modules unrelated to counters, for the shim's hot path:
//! [`startup`], its reads of what the process was started with (its environment, the path it
//! was started by) without a system call, and [`clock`], the time without the vDSO.
//!
//! # File format, version 1
//!
//! The format is modelled on Go's telemetry counter files (`internal/counter/file.go`) but is
//! little-endian everywhere, versioned, and capped. All integers are little-endian. Offsets are
//! byte offsets from the start of the file. The same text is in `docs/counter-file-format.md`.
//!
//! ## Fixed header (48 bytes)
//!
//! | offset | size | field | meaning |
//! | --- | --- | --- | --- |
//! | 0 | 8 | magic | the ASCII bytes `TALLYCNT` |
//! | 8 | 4 | version | format version; this crate writes and reads `1`. `0` is invalid; above `1` is a future version |
//! | 12 | 4 | header_len | `H`, offset of the hash table: exactly `align32(48 + meta_len)` |
//! | 16 | 4 | alloc_limit | first unallocated byte of the record area (atomic; only ever grows) |
//! | 20 | 4 | record_count | records allocated, live or dead (atomic; at most [`MAX_COUNTERS`]) |
//! | 24 | 8 | dropped | increments refused because a cap was reached (atomic) |
//! | 32 | 4 | meta_len | length of the metadata text, at most [`MAX_META_LEN`] |
//! | 36 | 4 | bucket_count | number of hash buckets: exactly `512` |
//! | 40 | 4 | page_size | record page size: exactly `16384` |
//! | 44 | 4 | reserved | zero |
//!
//! ## Metadata (offset 48, `meta_len` bytes, then zero padding up to `H`)
//!
//! UTF-8 text, exactly six lines in this order, each `key: value\n`:
//! `program`, `version`, `os`, `arch`, `week-start`, `week-end`. Values are 1 to
//! [`MAX_META_FIELD_LEN`] bytes with no control characters (below U+0020, or U+007F).
//! `week-start` and `week-end` have the shape `DDDD-DD-DD` (the week is `[start, end)`).
//! Readers trust this header, never the file name.
//!
//! ## Hash table (offset `H`, 2048 bytes)
//!
//! 512 little-endian `u32` chain heads. `0` means an empty chain; otherwise the offset of the
//! first record of the chain. A name belongs to bucket `fnv1a32(name) % 512`, where `fnv1a32`
//! is 32-bit FNV-1a (offset basis `0x811c9dc5`, prime `0x01000193`) over the name's bytes.
//!
//! ## Records (from `R = H + 2048` up to `alloc_limit`)
//!
//! A record starts at an offset that is a multiple of 32, at or after `R`, and is
//! `align32(16 + name_len)` bytes long. It never crosses a multiple of `page_size` (16 KiB):
//! if it would, it starts at the next page instead. Layout:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | count (atomic `u64`) |
//! | 8 | 4 | name_len: 1 to [`MAX_NAME_LEN`] |
//! | 12 | 4 | next: offset of the next record in the chain, `0` at the end; `0xFFFFFFFF` marks a dead record |
//! | 16 | name_len | name, UTF-8 |
//!
//! A reader follows the 512 chains and nothing else: records that are not reachable from a chain
//! head (dead records, allocations interrupted by a crash) are ignored. A valid file satisfies:
//! every reachable record lies wholly inside the file and inside `[R, alloc_limit)`, is in the
//! bucket its name hashes to, no name appears twice, and at most [`MAX_COUNTERS`] records are
//! reachable (which also bounds the walk of a chain with a cycle). `alloc_limit` may exceed the
//! file length (a writer was killed between allocating and extending the file) but never
//! [`MAX_FILE_SIZE`]. The file may be longer than `alloc_limit`.
//!
//! ## Writing protocol
//!
//! - Increment: an atomic add on `count` (no syscall).
//! - New name: reserve one unit of `record_count` by compare-and-swap (refused at the cap), then
//!   reserve bytes by compare-and-swap on `alloc_limit` (refused past [`MAX_FILE_SIZE`]). The
//!   reserved bytes belong to this writer alone: it extends the file by writing zeros over exactly
//!   that range with `pwrite` (which can never shrink the file or clobber another writer's bytes),
//!   writes `name_len` and the name, sets `next` to the current chain head and publishes the record
//!   by compare-and-swap of the chain head (release). If that fails, it searches the new chain for
//!   the name: when another writer inserted it first, it marks its own record dead and uses the
//!   winner's; otherwise it retries with the new head.
//! - Refused increments (a cap was reached) are added to `dropped`.

#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "linux")]
pub mod clock;
mod layout;
mod mapped;
mod parse;
#[cfg(unix)]
pub mod spawn;
pub mod safe_open;
#[cfg(target_os = "linux")]
pub mod startup;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

pub use layout::{MAX_META_FIELD_LEN, MAX_META_LEN, PAGE_SIZE};
pub use mapped::{CounterFile, FileId};
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
            Error::Corrupt { file_id, .. } | Error::FutureVersion { file_id, .. } => *file_id,
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
