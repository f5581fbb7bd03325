//! A counter file mapped for writing: lookup, lock-free insertion, and increments.
//!
//! The mapping always spans [`MAX_FILE_SIZE`] bytes of address space, however long the file is,
//! so growing the file never needs a remap (golang/go#68311 was a loop re-mapping a file that had
//! not grown; golang/go#68358 a crash when another process grew it). Bytes are only touched once
//! the file is known to cover them: `known_len` caches the file length, and an offset past it
//! is re-checked with one `fstat` before being called corrupt.
//!
//! Every access to the shared bytes goes through atomics, except the name bytes of a record,
//! which are written once by the process that allocated the record before it is published and
//! never change afterwards.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use crate::layout::{
    BUCKETS, DEAD, MAX_HEADER_LEN, OFF_ALLOC_LIMIT, OFF_DROPPED, OFF_RECORD_COUNT, REC_NAME_LEN,
    REC_NEXT, bucket_of, initial_image, name_fits, parse_header, place_record, record_len,
    within_one_page,
};
use crate::{Error, FileMeta, MAX_COUNTERS, MAX_FILE_SIZE, ParseError, safe_open};

/// Identity of a file (device and inode), to tell whether a path still names a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

impl FileId {
    /// Identity from metadata already read.
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// Identity of the file `path` resolves to, symbolic links followed: whether two paths
    /// name one binary (a shim is a link to tally). `None` when nothing is there.
    pub fn of_target(path: &Path) -> Option<FileId> {
        std::fs::metadata(path).ok().map(|m| FileId::of(&m))
    }

    /// Identity of an open file.
    pub fn of_file(file: &File) -> io::Result<FileId> {
        Ok(FileId::of(&file.metadata()?))
    }

    /// Identity of the file a path names now. A symbolic link is not followed: its identity is
    /// the link's own (tally moves links aside, never what they point to).
    pub fn of_path(path: &Path) -> io::Result<FileId> {
        Ok(FileId::of(&std::fs::symlink_metadata(path)?))
    }
}

/// A counter file, mapped shared for reading and writing. `Send + Sync`: every method works
/// through atomics on the mapping.
#[derive(Debug)]
pub struct CounterFile {
    map: MmapRaw,
    file: File,
    path: PathBuf,
    meta: FileMeta,
    table: u64,
    records_start: u64,
    /// Bytes the file is known to have; only ever grows.
    known_len: AtomicU64,
}

/// One counter of a mapped file: incrementing it is a single atomic add.
#[derive(Debug, Clone, Copy)]
pub struct Counter<'a> {
    cell: &'a AtomicU64,
    stored: bool,
}

impl Counter<'_> {
    /// Adds `delta` (wrapping at 2^64, which no real count reaches).
    #[inline]
    pub fn add(&self, delta: u64) {
        le_fetch_add(self.cell, delta);
    }

    /// False when this counter could not be stored (a cap was reached) and its increments go
    /// to the file's `dropped` count.
    pub fn is_stored(&self) -> bool {
        self.stored
    }
}

#[inline]
fn le_fetch_add(cell: &AtomicU64, delta: u64) {
    #[cfg(target_endian = "little")]
    {
        cell.fetch_add(delta, Ordering::Relaxed);
    }
    #[cfg(not(target_endian = "little"))]
    {
        let mut current = cell.load(Ordering::Relaxed);
        loop {
            let next = u64::from_le(current).wrapping_add(delta).to_le();
            match cell.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
    }
}

fn load_u32(cell: &AtomicU32, order: Ordering) -> u32 {
    u32::from_le(cell.load(order))
}

fn store_u32(cell: &AtomicU32, value: u32, order: Ordering) {
    cell.store(value.to_le(), order);
}

fn cas_u32(cell: &AtomicU32, current: u32, new: u32) -> Result<(), u32> {
    cell.compare_exchange(
        current.to_le(),
        new.to_le(),
        Ordering::AcqRel,
        Ordering::Acquire,
    )
    .map(|_| ())
    .map_err(u32::from_le)
}

static TEMP_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Opens an existing counter file for reading and writing, without updating its access time
/// where the kernel allows that.
///
/// Mapping a file counts as reading it, and under `relatime` (the usual mount option) a read
/// updates the access time whenever it is older than the modification time, which the last
/// count always makes it: an inode update, with a journal transaction, on every count, for a
/// time nothing reads (about 0.01 ms of the shim's hand-over; bench/README.md, "Shims").
/// `O_NOATIME` is only allowed to the file's owner (or with `CAP_FOWNER`); anyone else, a
/// reader of another user's files, opens the file as usual.
///
/// Like every open in the data directory it adds [`safe_open::FLAGS`] (no link followed, no
/// wait on a FIFO). The file type is checked by [`CounterFile::map_file`] with the `fstat` it
/// makes anyway, so the hot path pays no extra system call for it.
fn open_read_write(path: &Path) -> io::Result<File> {
    let flags = safe_open::FLAGS;
    #[cfg(target_os = "linux")]
    match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags | libc::O_NOATIME)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
        opened => return opened,
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags)
        .open(path)
}

/// An open that failed because the path is a link or special file: a corrupt entry, to be
/// moved aside like any other, with the identity of what is there now (the link itself).
fn open_error(path: &Path, source: io::Error) -> Error {
    match safe_open::not_regular(&source) {
        Some(found) => Error::Corrupt {
            path: path.to_path_buf(),
            reason: found.to_string(),
            file_id: FileId::of_path(path).ok(),
        },
        None => Error::Io {
            path: path.to_path_buf(),
            action: "open",
            source,
        },
    }
}

impl CounterFile {
    /// Opens the counter file at `path`, creating it (mode 0600) if it does not exist, and maps
    /// it. Returns whether this call created it.
    ///
    /// A new file is written in full under a temporary name in the same directory and then
    /// hard-linked into place, so no process ever sees a half-initialized file; when two
    /// processes create it at once, one link wins and both use the winner's file.
    ///
    /// `Err(Error::Corrupt)` / `Err(Error::FutureVersion)`: the existing file is not a valid file
    /// of this format; the caller should quarantine it. `Err(Error::MetaMismatch)`: the file
    /// describes something else than `meta`.
    pub fn open_or_create(path: &Path, meta: &FileMeta) -> Result<(CounterFile, bool), Error> {
        let (file, created) = match open_read_write(path) {
            Ok(file) => (file, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let image = initial_image(meta).map_err(Error::InvalidMeta)?;
                create_by_link(path, &image)?
            }
            Err(source) => return Err(open_error(path, source)),
        };
        let this = Self::map_file(file, path)?;
        if this.meta != *meta {
            return Err(Error::MetaMismatch {
                path: path.to_path_buf(),
                expected: Box::new(meta.clone()),
                found: Box::new(this.meta.clone()),
                file_id: FileId::of_file(&this.file).ok(),
            });
        }
        Ok((this, created))
    }

    /// Opens and maps an existing counter file, whatever it describes.
    pub fn open_existing(path: &Path) -> Result<CounterFile, Error> {
        let file = open_read_write(path).map_err(|source| open_error(path, source))?;
        Self::map_file(file, path)
    }

    fn map_file(file: File, path: &Path) -> Result<CounterFile, Error> {
        let io_err = |action, source| Error::Io {
            path: path.to_path_buf(),
            action,
            source,
        };
        let metadata = file.metadata().map_err(|e| io_err("stat", e))?;
        let file_len = metadata.len();
        let file_id = Some(FileId {
            dev: metadata.dev(),
            ino: metadata.ino(),
        });
        // A FIFO, socket, device or directory at a counter file's path is never mapped.
        if let Some(found) = safe_open::kind_of(metadata.file_type()) {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                reason: found.to_string(),
                file_id,
            });
        }
        let map = MmapOptions::new()
            .len(MAX_FILE_SIZE as usize)
            .map_raw(&file)
            .map_err(|e| io_err("map", e))?;
        // Copy the header out of the mapping (no extra system call), touching only bytes that
        // the file has.
        let mut head = [0u8; MAX_HEADER_LEN];
        let available = usize::try_from(file_len)
            .unwrap_or(usize::MAX)
            .min(MAX_HEADER_LEN);
        for (i, byte) in head[..available].iter_mut().enumerate() {
            // SAFETY: `i < available <= file_len`, so the byte is inside both the mapping
            // (MAX_FILE_SIZE >= MAX_HEADER_LEN) and the file. A volatile read of one byte is
            // sound even while another process updates the header's atomic fields; validation
            // only relies on fields that never change after creation.
            *byte = unsafe { map.as_ptr().add(i).read_volatile() };
        }
        let head = &head[..available];
        let header = parse_header(head, file_len).map_err(|e| match e {
            ParseError::Corrupt(reason) => Error::Corrupt {
                path: path.to_path_buf(),
                reason,
                file_id,
            },
            ParseError::FutureVersion { found, .. } => Error::FutureVersion {
                path: path.to_path_buf(),
                found,
                file_id,
            },
        })?;
        Ok(CounterFile {
            map,
            file,
            path: path.to_path_buf(),
            meta: header.meta,
            table: header.table,
            records_start: header.records_start,
            known_len: AtomicU64::new(file_len),
        })
    }

    /// The file's metadata (from its header).
    pub fn meta(&self) -> &FileMeta {
        &self.meta
    }

    /// The path this file was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds `delta` to the counter `name`, creating it if needed. Lock-free; never loses counts.
    /// Past a cap the increment is added to the file's `dropped` count and `Ok(())` is returned.
    pub fn add(&self, name: &str, delta: u64) -> Result<(), Error> {
        self.counter(name)?.add(delta);
        Ok(())
    }

    /// The counter `name`, created if needed, for repeated increments without a lookup.
    pub fn counter(&self, name: &str) -> Result<Counter<'_>, Error> {
        if !name_fits(name)? {
            return Ok(self.dropped_counter());
        }
        let offset = match self.lookup(name)? {
            Some(offset) => offset,
            None => match self.insert(name)? {
                Some(offset) => offset,
                None => return Ok(self.dropped_counter()),
            },
        };
        Ok(Counter {
            cell: self.u64_cell(offset)?,
            stored: true,
        })
    }

    /// Whether the file is still as long as this process has relied on it being (one `fstat`):
    /// `false` once another program has truncated it.
    ///
    /// A mapping does not shrink with its file, and touching a page past the new end raises
    /// `SIGBUS` (see the crate docs, "A mapped file that shrinks"). A caller that keeps a file
    /// mapped for long, as the wrapper does through a whole compile, asks this before it counts
    /// again and leaves the file alone when it says `false`.
    pub fn still_whole(&self) -> bool {
        self.file
            .metadata()
            .is_ok_and(|m| m.len() >= self.known_len.load(Ordering::Acquire))
    }

    /// Increments refused so far because a cap was reached.
    pub fn dropped(&self) -> u64 {
        u64::from_le(self.dropped_cell().load(Ordering::Relaxed))
    }

    fn dropped_counter(&self) -> Counter<'_> {
        Counter {
            cell: self.dropped_cell(),
            stored: false,
        }
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            reason,
            file_id: FileId::of_file(&self.file).ok(),
        }
    }

    /// Makes sure the file is at least `end` bytes long as far as this process knows, checking
    /// the real length once (no loop) when the cached one is too short.
    fn covered(&self, end: u64) -> bool {
        if end <= self.known_len.load(Ordering::Acquire) {
            return true;
        }
        match self.file.metadata() {
            Ok(m) => {
                let len = m.len().min(MAX_FILE_SIZE);
                self.known_len.fetch_max(len, Ordering::AcqRel);
                end <= len
            }
            Err(_) => false,
        }
    }

    /// The atomic u32 at `offset`, which the caller has checked lies in the file.
    fn u32_cell(&self, offset: u64) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= MAX_FILE_SIZE);
        // SAFETY: the mapping is MAX_FILE_SIZE bytes long and page-aligned, so `offset` (a
        // multiple of 4, in bounds, asserted above) gives an aligned pointer inside it. Callers
        // check the file covers it, so the page is backed. The memory is shared with other
        // processes that access it only atomically, and it lives as long as `self.map`, which
        // outlives the returned reference.
        unsafe { AtomicU32::from_ptr(self.map.as_mut_ptr().add(offset as usize).cast::<u32>()) }
    }

    /// The atomic u64 at `offset`, checked to lie in the file.
    fn u64_cell(&self, offset: u64) -> Result<&AtomicU64, Error> {
        if !offset.is_multiple_of(8) || offset + 8 > MAX_FILE_SIZE || !self.covered(offset + 8) {
            return Err(self.corrupt(format!("counter at {offset} is outside the file")));
        }
        // SAFETY: as in `u32_cell`: aligned (multiple of 8 in a page-aligned mapping), inside
        // the mapping, backed by the file (checked above), accessed only atomically by everyone,
        // and borrowed no longer than `self.map` lives.
        Ok(
            unsafe {
                AtomicU64::from_ptr(self.map.as_mut_ptr().add(offset as usize).cast::<u64>())
            },
        )
    }

    fn dropped_cell(&self) -> &AtomicU64 {
        // SAFETY: OFF_DROPPED is 8-aligned and inside the header, which `map_file` checked the
        // file contains; accessed only atomically; lives as long as `self.map`.
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().add(OFF_DROPPED).cast::<u64>()) }
    }

    fn head_cell(&self, bucket: u32) -> &AtomicU32 {
        self.u32_cell(self.table + 4 * u64::from(bucket))
    }

    /// Checks that a record offset read from the file is a plausible record that lies in the
    /// file, and returns its name length.
    fn check_record(&self, offset: u64) -> Result<usize, Error> {
        if !offset.is_multiple_of(32) || offset < self.records_start || offset + 16 > MAX_FILE_SIZE
        {
            return Err(self.corrupt(format!("record offset {offset} is not a record position")));
        }
        if !self.covered(offset + 16) {
            return Err(self.corrupt(format!(
                "record offset {offset} points past the end of the file"
            )));
        }
        let name_len = load_u32(
            self.u32_cell(offset + u64::from(REC_NAME_LEN)),
            Ordering::Relaxed,
        ) as usize;
        if name_len == 0 || name_len > crate::MAX_NAME_LEN {
            return Err(self.corrupt(format!("record at {offset} has name length {name_len}")));
        }
        let len = record_len(name_len);
        if offset + len > MAX_FILE_SIZE
            || !within_one_page(offset, len)
            || !self.covered(offset + len)
        {
            return Err(self.corrupt(format!(
                "record at {offset} does not lie within one page of the file"
            )));
        }
        Ok(name_len)
    }

    /// True when the record at `offset` (already checked) holds `name`.
    fn record_has_name(&self, offset: u64, name_len: usize, name: &str) -> bool {
        if name_len != name.len() {
            return false;
        }
        // SAFETY: `check_record` verified that [offset + 16, offset + 16 + name_len) lies in the
        // mapping and in the file. Name bytes are written once, before the record is published
        // with a release store that our acquire load of the chain synchronizes with, and never
        // change afterwards, so reading them as plain bytes does not race.
        let stored = unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().add(offset as usize + 16), name_len)
        };
        stored == name.as_bytes()
    }

    /// Walks the chain starting at `head` looking for `name`. Bounded by MAX_COUNTERS steps.
    fn find_in_chain(&self, mut offset: u64, name: &str) -> Result<Option<u64>, Error> {
        let mut steps = 0;
        while offset != 0 {
            steps += 1;
            if steps > MAX_COUNTERS {
                return Err(self.corrupt("a hash chain has a cycle".into()));
            }
            let name_len = self.check_record(offset)?;
            if self.record_has_name(offset, name_len, name) {
                return Ok(Some(offset));
            }
            offset = u64::from(load_u32(
                self.u32_cell(offset + u64::from(REC_NEXT)),
                Ordering::Acquire,
            ));
        }
        Ok(None)
    }

    fn lookup(&self, name: &str) -> Result<Option<u64>, Error> {
        let head = load_u32(
            self.head_cell(bucket_of(name.as_bytes())),
            Ordering::Acquire,
        );
        self.find_in_chain(u64::from(head), name)
    }

    /// Reserves one unit of the counter cap. False when the cap is reached.
    fn reserve_record_slot(&self) -> bool {
        let cell = self.u32_cell(OFF_RECORD_COUNT as u64);
        let mut current = load_u32(cell, Ordering::Relaxed);
        loop {
            if current as usize >= MAX_COUNTERS {
                return false;
            }
            match cas_u32(cell, current, current + 1) {
                Ok(()) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Reserves `len` bytes for a record. `Ok(None)` when the file-size cap is reached.
    fn reserve_bytes(&self, len: u64) -> Result<Option<u64>, Error> {
        let cell = self.u32_cell(OFF_ALLOC_LIMIT as u64);
        let mut current = load_u32(cell, Ordering::Acquire);
        loop {
            let limit = u64::from(current);
            if limit < self.records_start || limit % 32 != 0 {
                return Err(self.corrupt(format!("allocation limit {limit} is invalid")));
            }
            let offset = place_record(limit, len);
            let end = offset + len;
            if end > MAX_FILE_SIZE {
                return Ok(None);
            }
            match cas_u32(cell, current, end as u32) {
                Ok(()) => return Ok(Some(offset)),
                Err(actual) => current = actual,
            }
        }
    }

    /// Inserts a record for `name` (lock-free); returns its offset, or `None` past a cap.
    fn insert(&self, name: &str) -> Result<Option<u64>, Error> {
        if !self.reserve_record_slot() {
            return Ok(None);
        }
        let len = record_len(name.len());
        let Some(offset) = self.reserve_bytes(len)? else {
            return Ok(None);
        };
        // These bytes are ours alone: writing zeros over exactly them extends the file when it
        // is shorter, and can neither shrink it nor overwrite another writer's bytes.
        if !self.covered(offset + len) {
            self.file
                .write_all_at(&vec![0u8; len as usize], offset)
                .map_err(|source| Error::Io {
                    path: self.path.clone(),
                    action: "extend",
                    source,
                })?;
            self.known_len.fetch_max(offset + len, Ordering::AcqRel);
        }
        // SAFETY: [offset + 16, offset + 16 + name.len()) lies inside our reservation, which is
        // inside the mapping (end <= MAX_FILE_SIZE) and the file (extended above). No other
        // process writes or reads these bytes until the record is published below.
        unsafe {
            std::ptr::copy_nonoverlapping(
                name.as_ptr(),
                self.map.as_mut_ptr().add(offset as usize + 16),
                name.len(),
            );
        }
        store_u32(
            self.u32_cell(offset + u64::from(REC_NAME_LEN)),
            name.len() as u32,
            Ordering::Relaxed,
        );
        let next_cell = self.u32_cell(offset + u64::from(REC_NEXT));
        let head_cell = self.head_cell(bucket_of(name.as_bytes()));
        let mut head = load_u32(head_cell, Ordering::Acquire);
        loop {
            // Search the very chain we are about to link in front of. Another process may have
            // inserted this name after our caller's lookup and before our load of the head:
            // linking without this check would put the name in the chain twice (the
            // 16-process test caught exactly that).
            if let Some(winner) = self.find_in_chain(u64::from(head), name)? {
                store_u32(next_cell, DEAD, Ordering::Relaxed);
                return Ok(Some(winner));
            }
            store_u32(next_cell, head, Ordering::Relaxed);
            match cas_u32(head_cell, head, offset as u32) {
                Ok(()) => return Ok(Some(offset)),
                // Someone changed the chain: check it again from its new head.
                Err(new_head) => head = new_head,
            }
        }
    }

    /// Reads every counter of the mapped file right now, with atomic loads.
    pub fn snapshot(&self) -> Result<crate::Snapshot, Error> {
        let mut counters = std::collections::BTreeMap::new();
        let mut visited = 0;
        for bucket in 0..BUCKETS {
            let mut offset = u64::from(load_u32(self.head_cell(bucket), Ordering::Acquire));
            while offset != 0 {
                visited += 1;
                if visited > MAX_COUNTERS {
                    return Err(self.corrupt("a hash chain has a cycle".into()));
                }
                let name_len = self.check_record(offset)?;
                // SAFETY: see `record_has_name`: checked in bounds, immutable once published.
                let bytes = unsafe {
                    std::slice::from_raw_parts(
                        self.map.as_ptr().add(offset as usize + 16),
                        name_len,
                    )
                };
                let name = std::str::from_utf8(bytes)
                    .map_err(|_| self.corrupt(format!("record at {offset} is not UTF-8")))?;
                let count = u64::from_le(self.u64_cell(offset)?.load(Ordering::Relaxed));
                counters.insert(name.to_string(), count);
                offset = u64::from(load_u32(
                    self.u32_cell(offset + u64::from(REC_NEXT)),
                    Ordering::Acquire,
                ));
            }
        }
        Ok(crate::Snapshot {
            meta: self.meta.clone(),
            counters,
            dropped: self.dropped(),
        })
    }
}

/// Creates the file at `path` atomically: the full initial image is written under a temporary
/// name and hard-linked into place. Returns the open file and whether this call's link won.
fn create_by_link(path: &Path, image: &[u8]) -> Result<(File, bool), Error> {
    let io_err = |action, source| Error::Io {
        path: path.to_path_buf(),
        action,
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sequence = TEMP_SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let temp = dir.join(format!(
        ".{base}.{}.{sequence}.{nanos}.tmp",
        std::process::id()
    ));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(|e| io_err("create", e))?;
    if let Err(e) = file.write_all_at(image, 0) {
        let _ = std::fs::remove_file(&temp);
        return Err(io_err("write", e));
    }
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok((file, true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            drop(file);
            let file = open_read_write(path).map_err(|e| open_error(path, e))?;
            Ok((file, false))
        }
        Err(e) => Err(io_err("link", e)),
    }
}
