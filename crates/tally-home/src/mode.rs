//! Modes and consent: `off`, `local` (the default) and `on` with the day consent was given, as
//! stored in the data directory's `mode` file, and the effective mode once the environment
//! (`TALLY`, `DO_NOT_TRACK`) has had its say. The environment can only lower the stored mode.

use std::str::FromStr;

use std::io;

use crate::{Day, Env, Error, Home, io_error, make_dir, read_small, snippet, write_atomic};

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

impl Home {
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
