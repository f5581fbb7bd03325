//! The record of the last upload run, `upload.last.json` in the data directory, which
//! `tally status` shows. It holds the day of the run (nothing finer) and what became of it.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tally_protocol::Day;

/// File name of the record, in the data directory.
pub const LAST_UPLOAD_FILE: &str = "upload.last.json";

/// What the last upload run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastUpload {
    /// The day the run happened.
    pub day: Day,
    /// Reports the collector accepted.
    pub sent: u32,
    /// Reports the collector refused (never retried).
    pub refused: u32,
    /// Reports kept for a later run (server error or no network).
    pub retry: u32,
    /// One line: what happened, or why nothing was sent.
    pub result: String,
}

/// Reads the record, if there is a readable one (a link or special file is not).
pub fn read_last(data_dir: &Path) -> Option<LastUpload> {
    let bytes = tally_home::fsio::read_capped(&data_dir.join(LAST_UPLOAD_FILE), 64 * 1024)
        .ok()
        .flatten()?;
    serde_json::from_slice(&bytes).ok()
}

/// Replaces the record.
pub fn write_last(data_dir: &Path, last: &LastUpload) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(last).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    tally_home::fsio::write_atomic(&data_dir.join(LAST_UPLOAD_FILE), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_last(dir.path()), None);
        let last = LastUpload {
            day: "2026-11-24".parse().unwrap(),
            sent: 1,
            refused: 0,
            retry: 2,
            result: "sent 1, 2 kept for a later run".into(),
        };
        write_last(dir.path(), &last).unwrap();
        assert_eq!(read_last(dir.path()), Some(last));
    }
}
