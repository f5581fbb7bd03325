//! The one parser every reader uses (reports, `tally show`). Total and bounded: it checks every
//! offset before using it and visits at most [`MAX_COUNTERS`] records, so no input makes it
//! panic or loop.

use std::collections::BTreeMap;

use crate::layout::{
    BUCKETS, REC_NAME_LEN, REC_NEXT, bucket_of, parse_header, record_len, u32_at, u64_at,
    within_one_page,
};
use crate::{MAX_COUNTERS, MAX_NAME_LEN, ParseError, Snapshot};

fn corrupt(msg: String) -> ParseError {
    ParseError::Corrupt(msg)
}

/// Parses the bytes of a counter file.
pub fn parse(bytes: &[u8]) -> Result<Snapshot, ParseError> {
    let file_len = bytes.len() as u64;
    let header = parse_header(bytes, file_len)?;
    let mut counters = BTreeMap::new();
    let mut visited = std::collections::HashSet::new();
    for bucket in 0..BUCKETS {
        let head_at = header.table as usize + 4 * bucket as usize;
        let mut offset = u64::from(u32_at(bytes, head_at));
        while offset != 0 {
            if !visited.insert(offset) {
                return Err(corrupt(format!(
                    "a hash chain has a cycle: the record at {offset} is reached twice"
                )));
            }
            if visited.len() > MAX_COUNTERS {
                return Err(corrupt(format!(
                    "more than {MAX_COUNTERS} records are reachable: a chain has a cycle or the file is overfull"
                )));
            }
            if offset % 32 != 0 || offset < header.records_start {
                return Err(corrupt(format!(
                    "record offset {offset} in bucket {bucket} is not a record position"
                )));
            }
            if offset + 16 > file_len {
                return Err(corrupt(format!(
                    "record offset {offset} in bucket {bucket} points past the end of the file ({file_len} bytes)"
                )));
            }
            let at = offset as usize;
            let name_len = u32_at(bytes, at + REC_NAME_LEN as usize) as usize;
            if name_len == 0 || name_len > MAX_NAME_LEN {
                return Err(corrupt(format!(
                    "record at {offset} has name length {name_len}, outside 1..={MAX_NAME_LEN}"
                )));
            }
            let len = record_len(name_len);
            let end = offset + len;
            if end > file_len || end > header.alloc_limit {
                return Err(corrupt(format!(
                    "record at {offset} ends at {end}, past the end of the file ({file_len}) or the allocated area ({})",
                    header.alloc_limit
                )));
            }
            if !within_one_page(offset, len) {
                return Err(corrupt(format!(
                    "record at {offset} crosses a page boundary"
                )));
            }
            let name_bytes = &bytes[at + 16..at + 16 + name_len];
            let name = std::str::from_utf8(name_bytes)
                .map_err(|_| corrupt(format!("record at {offset} has a name that is not UTF-8")))?;
            if bucket_of(name_bytes) != bucket {
                return Err(corrupt(format!(
                    "record at {offset} ({name:?}) is in bucket {bucket}, but its name hashes to another"
                )));
            }
            let count = u64_at(bytes, at);
            if counters.insert(name.to_string(), count).is_some() {
                return Err(corrupt(format!("counter {name:?} appears twice")));
            }
            offset = u64::from(u32_at(bytes, at + REC_NEXT as usize));
        }
    }
    Ok(Snapshot {
        meta: header.meta,
        counters,
        dropped: header.dropped,
    })
}
