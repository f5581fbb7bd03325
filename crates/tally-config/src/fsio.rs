//! Crash-safe file writes: a reader sees the old file or the new one, never a torn one.

use std::io::Write as _;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, written,
/// flushed to disk, renamed over `path`, then the directory synced so the rename survives a
/// crash. Creates the parent directory if it is missing.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Durability of the rename; some file systems refuse to open a directory, which only costs
    // durability, not correctness.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads a file, but refuses one larger than `max` bytes (so a corrupt or hostile file can't
/// make tally allocate without bound). `Ok(None)` if it doesn't exist.
pub fn read_capped(path: &Path, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(max as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > max {
        return Err(std::io::Error::other(format!(
            "{} is over {max} bytes; delete it and let tally fetch it again",
            path.display()
        )));
    }
    Ok(Some(bytes))
}
