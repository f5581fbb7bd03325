//! Writing the config cache's files through `tally_home::fsio` (which they are also read with,
//! directly): crash-safe writes (a reader sees the old file or the new one, never a torn one)
//! into a config directory made on first need, and never a link followed or a FIFO waited on in
//! the data directory.

use std::path::Path;

use tally_home::fsio;

/// Writes `bytes` to `path` atomically: a new temporary file in the same directory, written,
/// flushed to disk, renamed over `path`, then the directory synced so the rename survives a
/// crash. Creates the parent directory if it is missing; a link or anything else than a
/// directory in its place is an error, never followed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // The directory's own name is checked; above it is the data directory the user named.
    fsio::own_dir(dir.parent().unwrap_or(dir), dir)?;
    fsio::write_atomic(path, bytes)
}
