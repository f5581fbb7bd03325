//! Byte layout of format version 1 (see the crate docs for the specification), shared by the
//! parser and the mapped writer so that the two cannot disagree.

use crate::{FORMAT_VERSION, FileMeta, MAX_COUNTERS, MAX_FILE_SIZE, MAX_NAME_LEN, ParseError};

/// The eight magic bytes every counter file starts with.
pub(crate) const MAGIC: &[u8; 8] = b"TALLYCNT";

pub(crate) const OFF_VERSION: usize = 8;
pub(crate) const OFF_HEADER_LEN: usize = 12;
pub(crate) const OFF_ALLOC_LIMIT: usize = 16;
pub(crate) const OFF_RECORD_COUNT: usize = 20;
pub(crate) const OFF_DROPPED: usize = 24;
pub(crate) const OFF_META_LEN: usize = 32;
pub(crate) const OFF_BUCKET_COUNT: usize = 36;
pub(crate) const OFF_PAGE_SIZE: usize = 40;
pub(crate) const OFF_RESERVED: usize = 44;
/// Size of the fixed binary header; the metadata text starts here.
pub(crate) const FIXED_HEADER_LEN: usize = 48;

/// Number of hash buckets (chain heads).
pub(crate) const BUCKETS: u32 = 512;
/// Size of the hash table in bytes.
pub(crate) const TABLE_LEN: u32 = BUCKETS * 4;

/// Records never cross a multiple of this (16 KiB).
pub const PAGE_SIZE: u64 = 16 * 1024;

/// Longest metadata text, in bytes.
pub const MAX_META_LEN: usize = 1024;
/// Longest header (fixed part, metadata and padding): everything before the hash table.
pub(crate) const MAX_HEADER_LEN: usize = align32((FIXED_HEADER_LEN + MAX_META_LEN) as u64) as usize;

/// Longest metadata value, in bytes.
pub const MAX_META_FIELD_LEN: usize = 128;

/// Record header: count (8), name_len (4), next (4).
pub(crate) const RECORD_HEADER_LEN: u32 = 16;
/// Offset of `name_len` in a record.
pub(crate) const REC_NAME_LEN: u32 = 8;
/// Offset of `next` in a record.
pub(crate) const REC_NEXT: u32 = 12;
/// `next` value of a record that lost an insertion race and is never linked.
pub(crate) const DEAD: u32 = u32::MAX;

/// Metadata keys, in the order they must appear.
const META_KEYS: [&str; 6] = ["program", "version", "os", "arch", "week-start", "week-end"];

/// Rounds up to a multiple of 32.
pub(crate) const fn align32(n: u64) -> u64 {
    (n + 31) & !31
}

/// Total size of the record holding a name of `name_len` bytes.
pub(crate) const fn record_len(name_len: usize) -> u64 {
    align32(RECORD_HEADER_LEN as u64 + name_len as u64)
}

/// 32-bit FNV-1a.
pub(crate) fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Bucket a name belongs to.
pub(crate) fn bucket_of(name: &[u8]) -> u32 {
    fnv1a32(name) % BUCKETS
}

/// Where a record of `len` bytes goes if the first free byte is `limit`: at `limit`, or at the
/// next page boundary when it would cross one.
pub(crate) fn place_record(limit: u64, len: u64) -> u64 {
    let page_end = (limit / PAGE_SIZE + 1) * PAGE_SIZE;
    if limit + len > page_end {
        page_end
    } else {
        limit
    }
}

/// True when `[offset, offset + len)` lies within one page.
pub(crate) fn within_one_page(offset: u64, len: u64) -> bool {
    len > 0 && offset / PAGE_SIZE == (offset + len - 1) / PAGE_SIZE
}

/// Checks one metadata value.
fn check_meta_value(key: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{key} is empty"));
    }
    if value.len() > MAX_META_FIELD_LEN {
        return Err(format!(
            "{key} is {} bytes long, more than {MAX_META_FIELD_LEN}",
            value.len()
        ));
    }
    if value.chars().any(|c| c.is_ascii_control()) {
        return Err(format!("{key} contains a control character"));
    }
    if key.starts_with("week-") && !is_day_shaped(value) {
        return Err(format!("{key} {value:?} is not of the form YYYY-MM-DD"));
    }
    Ok(())
}

/// `DDDD-DD-DD` with ASCII digits (calendar validity is the caller's business).
fn is_day_shaped(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, &c)| {
            if i == 4 || i == 7 {
                c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

fn meta_values(meta: &FileMeta) -> [&str; 6] {
    [
        &meta.program,
        &meta.version,
        &meta.os,
        &meta.arch,
        &meta.week_start,
        &meta.week_end,
    ]
}

/// Encodes the metadata text, or says why it cannot be stored.
pub(crate) fn encode_meta(meta: &FileMeta) -> Result<String, String> {
    let mut text = String::new();
    for (key, value) in META_KEYS.iter().zip(meta_values(meta)) {
        check_meta_value(key, value)?;
        text.push_str(key);
        text.push_str(": ");
        text.push_str(value);
        text.push('\n');
    }
    if text.len() > MAX_META_LEN {
        return Err(format!(
            "metadata is {} bytes, more than {MAX_META_LEN}",
            text.len()
        ));
    }
    Ok(text)
}

/// Decodes the metadata text.
fn decode_meta(bytes: &[u8]) -> Result<FileMeta, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "metadata is not UTF-8".to_string())?;
    let Some(body) = text.strip_suffix('\n') else {
        return Err("metadata does not end with a newline".into());
    };
    let mut values: Vec<String> = Vec::with_capacity(META_KEYS.len());
    let mut lines = body.split('\n');
    for key in META_KEYS {
        let line = lines
            .next()
            .ok_or_else(|| format!("metadata line {key:?} is missing"))?;
        let value = line
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(": "))
            .ok_or_else(|| {
                format!(
                    "metadata line {:?} should start with {key:?}",
                    line.chars().take(40).collect::<String>()
                )
            })?;
        check_meta_value(key, value)?;
        values.push(value.to_string());
    }
    if lines.next().is_some() {
        return Err("metadata has extra lines".into());
    }
    let mut it = values.into_iter();
    let mut next = || it.next().unwrap_or_default();
    Ok(FileMeta {
        program: next(),
        version: next(),
        os: next(),
        arch: next(),
        week_start: next(),
        week_end: next(),
    })
}

/// The fixed header and metadata of a file, validated.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub meta: FileMeta,
    /// Offset of the hash table.
    pub table: u64,
    /// Offset of the first record.
    pub records_start: u64,
    pub alloc_limit: u64,
    pub dropped: u64,
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

fn corrupt(msg: impl Into<String>) -> ParseError {
    ParseError::Corrupt(msg.into())
}

/// Validates the header. `bytes` holds the start of the file (at least up to the hash table
/// when the file is that long); `file_len` is the whole file's length.
pub(crate) fn parse_header(bytes: &[u8], file_len: u64) -> Result<Header, ParseError> {
    if file_len == 0 {
        return Err(corrupt("the file is empty (zero length)"));
    }
    if file_len > MAX_FILE_SIZE {
        return Err(corrupt(format!(
            "the file is {file_len} bytes, more than the {MAX_FILE_SIZE} byte cap"
        )));
    }
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        if MAGIC.starts_with(bytes) {
            return Err(corrupt(format!(
                "truncated: {file_len} bytes, shorter than the header"
            )));
        }
        return Err(corrupt(
            "wrong magic: the file does not start with TALLYCNT",
        ));
    }
    if bytes.len() < FIXED_HEADER_LEN {
        return Err(corrupt(format!(
            "truncated: {file_len} bytes, shorter than the {FIXED_HEADER_LEN} byte header"
        )));
    }
    let version = u32_at(bytes, OFF_VERSION);
    if version == 0 {
        return Err(corrupt("format version 0 is invalid"));
    }
    if version > FORMAT_VERSION {
        return Err(ParseError::FutureVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let meta_len = u32_at(bytes, OFF_META_LEN) as usize;
    if meta_len > MAX_META_LEN {
        return Err(corrupt(format!(
            "metadata length {meta_len} is more than {MAX_META_LEN}"
        )));
    }
    let header_len = u64::from(u32_at(bytes, OFF_HEADER_LEN));
    let expected_header_len = align32((FIXED_HEADER_LEN + meta_len) as u64);
    if header_len != expected_header_len {
        return Err(corrupt(format!(
            "header length {header_len} does not match the metadata length {meta_len} (expected {expected_header_len})"
        )));
    }
    let buckets = u32_at(bytes, OFF_BUCKET_COUNT);
    if buckets != BUCKETS {
        return Err(corrupt(format!(
            "bucket count {buckets}, expected {BUCKETS}"
        )));
    }
    let page = u32_at(bytes, OFF_PAGE_SIZE);
    if u64::from(page) != PAGE_SIZE {
        return Err(corrupt(format!("page size {page}, expected {PAGE_SIZE}")));
    }
    if u32_at(bytes, OFF_RESERVED) != 0 {
        return Err(corrupt("reserved header field is not zero"));
    }
    let records_start = header_len + u64::from(TABLE_LEN);
    if file_len < records_start || (bytes.len() as u64) < header_len {
        return Err(corrupt(format!(
            "truncated: {file_len} bytes, shorter than the header and hash table ({records_start} bytes)"
        )));
    }
    let meta_end = FIXED_HEADER_LEN + meta_len;
    let meta = decode_meta(&bytes[FIXED_HEADER_LEN..meta_end]).map_err(corrupt)?;
    if bytes[meta_end..header_len as usize].iter().any(|&b| b != 0) {
        return Err(corrupt("padding after the metadata is not zero"));
    }
    let alloc_limit = u64::from(u32_at(bytes, OFF_ALLOC_LIMIT));
    if alloc_limit < records_start || alloc_limit > MAX_FILE_SIZE {
        return Err(corrupt(format!(
            "allocation limit {alloc_limit} is outside the record area [{records_start}, {MAX_FILE_SIZE}]"
        )));
    }
    let record_count = u32_at(bytes, OFF_RECORD_COUNT) as usize;
    if record_count > MAX_COUNTERS {
        return Err(corrupt(format!(
            "record count {record_count} is more than the cap of {MAX_COUNTERS}"
        )));
    }
    Ok(Header {
        meta,
        table: header_len,
        records_start,
        alloc_limit,
        dropped: u64_at(bytes, OFF_DROPPED),
    })
}

/// Length of a fresh file: one page, written in full so that no later write through the mapping
/// lands in a hole (which on a full disk would fault instead of failing cleanly).
pub(crate) const INITIAL_FILE_LEN: u64 = PAGE_SIZE;

/// The bytes of a fresh, empty file: header, hash table, and an empty first record page.
pub(crate) fn initial_image(meta: &FileMeta) -> Result<Vec<u8>, String> {
    let text = encode_meta(meta)?;
    let header_len = align32((FIXED_HEADER_LEN + text.len()) as u64) as usize;
    let records_start = header_len + TABLE_LEN as usize;
    let mut image = vec![0u8; INITIAL_FILE_LEN as usize];
    image[..8].copy_from_slice(MAGIC);
    let mut put = |off: usize, v: u32| image[off..off + 4].copy_from_slice(&v.to_le_bytes());
    put(OFF_VERSION, FORMAT_VERSION);
    put(OFF_HEADER_LEN, header_len as u32);
    put(OFF_ALLOC_LIMIT, records_start as u32);
    put(OFF_RECORD_COUNT, 0);
    put(OFF_META_LEN, text.len() as u32);
    put(OFF_BUCKET_COUNT, BUCKETS);
    put(OFF_PAGE_SIZE, PAGE_SIZE as u32);
    image[FIXED_HEADER_LEN..FIXED_HEADER_LEN + text.len()].copy_from_slice(text.as_bytes());
    Ok(image)
}

/// Checks a counter name before storing it: `Ok(false)` when it is too long to store (the
/// increment is dropped, not an error).
pub(crate) fn name_fits(name: &str) -> Result<bool, crate::Error> {
    if name.is_empty() {
        return Err(crate::Error::InvalidName(
            "a counter name cannot be empty".into(),
        ));
    }
    Ok(name.len() <= MAX_NAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_vectors() {
        // Published FNV-1a 32-bit test vectors.
        assert_eq!(fnv1a32(b""), 0x811c9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn records_never_cross_pages() {
        assert_eq!(place_record(PAGE_SIZE - 32, 32), PAGE_SIZE - 32);
        assert_eq!(place_record(PAGE_SIZE - 32, 64), PAGE_SIZE);
        assert!(within_one_page(PAGE_SIZE - 32, 32));
        assert!(!within_one_page(PAGE_SIZE - 32, 64));
    }
}
