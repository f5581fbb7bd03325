//! Which entries of the data directory are tally's: the one answer `tally clean` and
//! `tally setup --uninstall --purge` delete by.
//!
//! Promises: an entry is tally's only if tally gives its name to entries of the directory it
//! is in ([`TALLY_ENTRIES`] at the top; counter files in `counters/`; quarantined files with
//! their `.reason` in `quarantine/`; the four folders in `reports/` and weekly reports with
//! their `.reason` in each; the cached config's files in `config/`; version cache entries in
//! `versions/`; wrapper links in `wrappers/`), or it is one of tally's temporary files there.
//! tally's directories are walked to every depth, never through a link (a link is an entry
//! like a file: deleting it deletes the link). Anything else, at any depth, is not tally's
//! (a directory where tally keeps only files too) and is never deleted.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tally_home::Day;

/// Every name tally gives to an entry at the top of its data directory.
pub(crate) const TALLY_ENTRIES: &[&str] = &[
    "counters",
    "quarantine",
    "reports",
    "config",
    "versions",
    "wrappers",
    "mode",
    "weekday",
    tally_upload::lock::TOKEN_FILE,
    tally_upload::lock::LOCK_FILE,
    tally_upload::state::LAST_UPLOAD_FILE,
    tally_process::notice::MARKER,
];

/// The data directory's entries, sorted into tally's and the rest.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    /// tally's entries that are not directories it walks (files, links, special files): each
    /// deleted by itself.
    pub(crate) files: Vec<PathBuf>,
    /// tally's directories below the root, deepest first: removed once emptied.
    pub(crate) dirs: Vec<PathBuf>,
    /// Everything else: never deleted.
    pub(crate) foreign: Vec<PathBuf>,
}

impl Inventory {
    /// Whether tally holds nothing here.
    pub(crate) fn holds_nothing_of_tallys(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }

    /// Up to three of the entries that are not tally's, relative to `root`, for a message.
    pub(crate) fn some_foreign(&self, root: &Path) -> String {
        let mut shown: Vec<String> = self
            .foreign
            .iter()
            .take(3)
            .map(|path| {
                path.strip_prefix(root)
                    .unwrap_or(path)
                    .display()
                    .to_string()
            })
            .collect();
        if self.foreign.len() > 3 {
            shown.push("...".to_string());
        }
        shown.join(", ")
    }
}

/// The directories tally keeps, each with its own names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Root,
    Counters,
    Quarantine,
    Reports,
    ReportFolder,
    Config,
    Versions,
    Wrappers,
}

/// What an entry is, by its name in its directory.
enum Kind {
    /// One of tally's files (or a link or special file at such a name).
    Entry,
    /// One of tally's directories, walked when it is a real one.
    Dir(Dir),
    /// Not tally's.
    Foreign,
}

/// Sorts everything under `root` (a missing `root` holds nothing).
pub(crate) fn inventory(root: &Path) -> anyhow::Result<Inventory> {
    let mut inventory = Inventory::default();
    match fs::symlink_metadata(root) {
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(inventory),
        _ => walk(root, Dir::Root, &mut inventory)?,
    }
    Ok(inventory)
}

fn walk(dir: &Path, kind: Dir, inventory: &mut Inventory) -> anyhow::Result<()> {
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    names.sort();
    let siblings: BTreeSet<&OsString> = names.iter().collect();
    for name in &names {
        let path = dir.join(name);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            // Gone since the listing.
            continue;
        };
        let kind = match name.to_str() {
            Some(name) => classify(kind, name, &siblings),
            None => Kind::Foreign,
        };
        match kind {
            Kind::Dir(sub) if meta.is_dir() => {
                walk(&path, sub, inventory)?;
                inventory.dirs.push(path);
            }
            // tally never makes a directory where it keeps files.
            Kind::Entry if meta.is_dir() => inventory.foreign.push(path),
            // A file or link where a directory of tally's belongs was moved there by tally or
            // planted; either way the name is tally's (a link is deleted, never followed).
            Kind::Entry | Kind::Dir(_) => inventory.files.push(path),
            Kind::Foreign => inventory.foreign.push(path),
        }
    }
    Ok(())
}

/// What the entry `name` of a directory of kind `dir` is; `siblings` are all the directory's
/// names (a quarantined file is tally's when its `.reason` is beside it).
fn classify(dir: Dir, name: &str, siblings: &BTreeSet<&OsString>) -> Kind {
    let temporary = name.starts_with('.') && name.ends_with(".tmp");
    let ours = match dir {
        Dir::Root => {
            let sub = match name {
                "counters" => Some(Dir::Counters),
                "quarantine" => Some(Dir::Quarantine),
                "reports" => Some(Dir::Reports),
                "config" => Some(Dir::Config),
                "versions" => Some(Dir::Versions),
                "wrappers" => Some(Dir::Wrappers),
                _ => None,
            };
            if let Some(sub) = sub {
                return Kind::Dir(sub);
            }
            TALLY_ENTRIES.contains(&name)
                || (temporary
                    && TALLY_ENTRIES
                        .iter()
                        .any(|known| name[1..].starts_with(known)))
        }
        Dir::Counters => temporary || (!name.starts_with('.') && name.ends_with(".count")),
        Dir::Quarantine => {
            temporary
                || name.ends_with(".reason")
                || siblings.contains(&OsString::from(format!("{name}.reason")))
        }
        Dir::Reports => {
            if [
                tally_report::build::LOCAL,
                tally_report::build::PENDING,
                tally_report::build::SENT,
                tally_report::build::REFUSED,
            ]
            .contains(&name)
            {
                return Kind::Dir(Dir::ReportFolder);
            }
            temporary
        }
        Dir::ReportFolder => {
            let report = name.strip_suffix(".reason").unwrap_or(name);
            temporary
                || report
                    .strip_suffix(".json")
                    .is_some_and(|day| day.parse::<Day>().is_ok())
        }
        Dir::Config => {
            temporary
                || [
                    tally_config::endpoint::ENDPOINT_FILE,
                    tally_config::cache::CONFIG_FILE,
                    tally_config::cache::SIGNATURE_FILE,
                    tally_config::cache::STATE_FILE,
                    tally_config::ratchet::RATCHET_FILE,
                ]
                .contains(&name)
        }
        // `<tool>-<16 hex digits>`, and the version helpers' two lock files.
        Dir::Versions => {
            temporary
                || [
                    tally_process::version::QUERIES_LOCK,
                    tally_process::version::PENDING_LOCK,
                ]
                .contains(&name)
                || name.rsplit_once('-').is_some_and(|(tool, hash)| {
                    !tool.is_empty()
                        && tool.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                        && is_hex16(hash)
                })
        }
        // `tally-<16 hex digits>`, made under `.tally-<16 hex digits>.<pid>` first.
        Dir::Wrappers => {
            let made = name.strip_prefix('.').map_or(name, |hidden| {
                hidden
                    .rsplit_once('.')
                    .filter(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
                    .map_or("", |(link, _)| link)
            });
            temporary || made.strip_prefix("tally-").is_some_and(is_hex16)
        }
    };
    if ours { Kind::Entry } else { Kind::Foreign }
}

fn is_hex16(text: &str) -> bool {
    text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_tally_gives_are_tallys_at_every_depth() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let ours = [
            "mode",
            ".mode.12.ab.tmp",
            "upload.last.json",
            "counters/rustc@1.95.0-linux-x86_64-2026-11-16.v1.count",
            "counters/.rustc@1.95.0-linux-x86_64-2026-11-16.v1.count.7.0.12.tmp",
            "quarantine/x.count",
            "quarantine/x.count.reason",
            "reports/local/2026-11-16.json",
            "reports/refused/2026-11-16.json.reason",
            "reports/pending/.2026-11-16.json.7.00aa.tmp",
            "config/endpoint.json",
            "config/config.json.minisig",
            "versions/cargo-fmt-0123456789abcdef",
            "versions/queries.lock",
            "versions/pending.lock",
            "wrappers/tally-0123456789abcdef",
            "wrappers/.tally-0123456789abcdef.4242",
        ];
        let foreign = [
            "notes.txt",
            "counters/notes.txt",
            "quarantine/mine.txt",
            "reports/local/my-notes.txt",
            "reports/local/2026-11-16.json.bak",
            "config/keys.txt",
            "versions/cargo",
            "wrappers/mine",
        ];
        for name in ours.iter().chain(&foreign) {
            let path = root.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, "x").unwrap();
        }
        // A directory where tally keeps files, and a link where it keeps a directory.
        fs::create_dir_all(root.join("counters/old.count/inside")).unwrap();
        fs::create_dir_all(root.join("reports/archive")).unwrap();
        fs::write(root.join("reports/archive/2026-11-16.json"), "x").unwrap();
        std::os::unix::fs::symlink("/", root.join("versions/rustc-0123456789abcdef")).unwrap();
        fs::remove_dir_all(root.join("reports/sent")).ok();
        std::os::unix::fs::symlink("/", root.join("reports/sent")).unwrap();

        let found = inventory(root).unwrap();
        let relative = |paths: &[PathBuf]| -> Vec<String> {
            paths
                .iter()
                .map(|p| p.strip_prefix(root).unwrap().display().to_string())
                .collect()
        };
        // `found` lists exactly `planted` and `more`, in any order.
        let same_set = |found: &[PathBuf], planted: &[&str], more: [&str; 2]| {
            let mut found = relative(found);
            found.sort();
            let mut want: Vec<String> =
                planted.iter().chain(&more).map(|s| s.to_string()).collect();
            want.sort();
            assert_eq!(found, want);
        };
        same_set(
            &found.files,
            &ours,
            ["versions/rustc-0123456789abcdef", "reports/sent"],
        );
        same_set(
            &found.foreign,
            &foreign,
            ["counters/old.count", "reports/archive"],
        );
        // Deepest first.
        let dirs = relative(&found.dirs);
        let at = |d: &str| dirs.iter().position(|x| x == d).unwrap();
        assert!(at("reports/local") < at("reports"), "{dirs:?}");
    }
}
