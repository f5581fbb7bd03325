//! The shell files `tally setup --modify-path` puts its PATH line in and `--uninstall` takes it
//! out of (`~/.profile`, `~/.bashrc`, `~/.zshrc`): which of their lines are tally's, and how to
//! change a file without losing a line of it or undoing how its user protected it.
//!
//! Promises:
//! - Only tally's lines go: a line carrying [`MARK`], and install.sh's old block exactly as
//!   install.sh wrote it (its start line, one `export PATH=` line, its end line). A block that is
//!   not whole (its end line missing, a line of the user's inside) is not guessed at: the file is
//!   refused, naming the line, and the user removes the block.
//! - Every file is looked at, and every change decided ([`plan_add`], [`plan_remove`]), before
//!   any file is changed; a single refusal and setup changes nothing at all.
//! - A file is read only if it is a regular file (a link to one is followed: dotfiles managers
//!   link them), opened without waiting: a FIFO, socket, device or directory is named and never
//!   opened for reading.
//! - A file is changed only if it is a regular file owned by the user running setup (root
//!   included) with its owner's write permission. A read-only file, or one that belongs to
//!   someone else, is the user's way of saying "not this one": it is named, with what to do.
//! - A changed file keeps its mode, owner and group and, where it has other hard links, its
//!   inode: a file with one link is replaced atomically (a temporary file beside it, then
//!   `rename`, as editors save); a file with more, or one whose directory setup cannot write, is
//!   written in place, so that every link sees the change. A link to a dotfile stays a link.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nix::unistd::{AccessFlags, Uid, User};
use tally_home::fsio;

/// The marker at the end of the PATH line setup writes; any line containing it is setup's.
pub(super) const MARK: &str = "# tally shims: `tally setup --uninstall` removes this line";
/// The marker of the line in a shell file setup created (then `--uninstall` deletes the file
/// if nothing else was written to it).
const MARK_CREATED: &str =
    "# tally shims: `tally setup --uninstall` removes this line and this file, which it created";
/// The first and last lines of the three-line block earlier versions of install.sh wrote:
/// removed like the marked line when the block is whole.
const LEGACY_BEGIN: &[u8] = b"# >>> tally shims (added by tally's install.sh";
const LEGACY_END: &[u8] = b"# <<< tally shims <<<";
/// How the line between them starts.
const LEGACY_LINE: &[u8] = b"export PATH=";

/// The shell files setup edits, relative to the home directory, and whether it creates the
/// file when it is missing (`~/.profile` is read by every login shell; the others only where
/// the user has them).
pub(super) const SHELL_FILES: &[(&str, bool)] =
    &[(".profile", true), (".bashrc", false), (".zshrc", false)];

/// The largest shell file setup reads: anything bigger is not a profile it edits.
const MAX_LEN: u64 = 16 * 1024 * 1024;

/// A shell file as setup read it: a regular file, through a link if its name is one.
pub(super) struct Found {
    /// The name setup shows (`~/.bashrc`).
    shown: PathBuf,
    /// Where the file really is (links resolved): what gets written.
    real: PathBuf,
    bytes: Vec<u8>,
    /// The open file's metadata, as read.
    meta: fs::Metadata,
}

/// Reads the shell file at `path`: only a regular file (a link to one is followed), opened
/// without waiting. `Ok(None)`: nothing is there. `Err`: why setup leaves it alone.
fn look(path: &Path) -> Result<Option<Found>, String> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == ErrorKind::NotFound => {
            return match fs::read_link(path) {
                Ok(to) => Err(format!(
                    "it is a link to {}, which does not exist: fix or remove the link",
                    to.display()
                )),
                Err(_) => Ok(None),
            };
        }
        Err(err) => return Err(format!("it cannot be looked at ({err})")),
    };
    if let Some(found) = fsio::kind_of(meta.file_type()) {
        return Err(format!(
            "it is {}, not a regular file, and tally setup reads and edits only regular files",
            found.what
        ));
    }
    let real = fs::canonicalize(path).map_err(|err| format!("it cannot be resolved ({err})"))?;
    // O_NONBLOCK: if a FIFO took the file's place since the look above, the open still returns
    // at once, and the check below refuses it.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(fsio::FLAGS)
        .open(&real)
        .map_err(|err| format!("it cannot be read ({err})"))?;
    let opened = file
        .metadata()
        .map_err(|err| format!("it cannot be read ({err})"))?;
    if !opened.is_file() || (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        return Err("it changed while tally setup looked at it; run setup again".to_string());
    }
    if opened.len() > MAX_LEN {
        return Err(format!(
            "it is {} bytes, more than the {MAX_LEN} of any shell profile tally setup edits",
            opened.len()
        ));
    }
    let mut bytes = Vec::with_capacity(opened.len() as usize);
    file.take(MAX_LEN)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("it cannot be read ({err})"))?;
    Ok(Some(Found {
        shown: path.to_path_buf(),
        real,
        bytes,
        meta: opened,
    }))
}

/// Why setup must not change `found`, if it must not: someone else owns it, its owner made it
/// read-only, or it cannot be written (a read-only file system). Root's write permission
/// ignores the mode, so the mode is read, not only `access`.
fn refuse_to_change(found: &Found) -> Option<String> {
    let me = Uid::effective();
    let owner = Uid::from_raw(found.meta.uid());
    if owner != me {
        return Some(format!(
            "it is owned by {} and you are {}: tally setup changes only your own files",
            who(owner),
            who(me)
        ));
    }
    let mode = found.meta.mode() & 0o7777;
    if mode & 0o200 == 0 {
        return Some(format!(
            "it is read-only (mode {mode:04o}), and tally setup does not change a file you \
             protected: make it writable (chmod u+w {}) or edit it yourself",
            found.shown.display()
        ));
    }
    if let Err(err) = nix::unistd::access(&found.real, AccessFlags::W_OK) {
        return Some(format!("it cannot be written ({})", err.desc()));
    }
    None
}

/// `root (uid 0)`, or `uid 1234` for a user without a name.
fn who(uid: Uid) -> String {
    match User::from_uid(uid) {
        Ok(Some(user)) => format!("{} (uid {uid})", user.name),
        _ => format!("uid {uid}"),
    }
}

/// One change to a shell file, decided before any is made.
pub(super) struct Change {
    action: Action,
    /// The line of output that says what was done.
    said: String,
}

enum Action {
    Create { path: PathBuf, contents: Vec<u8> },
    Write { found: Found, contents: Vec<u8> },
    Delete { found: Found },
}

/// What setup is to do to the shell files: the changes, or, if any file is refused, why (one
/// line each, naming the file); then it changes nothing.
#[derive(Default)]
pub(super) struct Plan {
    pub(super) changes: Vec<Change>,
    pub(super) refused: Vec<String>,
}

impl Plan {
    fn refuse(&mut self, path: &Path, why: &str) {
        self.refused
            .push(format!("left {} alone: {why}", path.display()));
    }
}

/// The changes that put the marked `line` last in each shell file (creating `~/.profile` if
/// missing), an earlier marked line or install.sh's old block removed.
pub(super) fn plan_add(home: &Path, line: &str) -> Plan {
    let mut plan = Plan::default();
    for (name, create) in SHELL_FILES {
        let path = home.join(name);
        let found = match look(&path) {
            Err(why) => {
                plan.refuse(&path, &why);
                continue;
            }
            Ok(None) => {
                if *create {
                    if let Err(err) = nix::unistd::access(home, AccessFlags::W_OK) {
                        plan.refuse(
                            &path,
                            &format!(
                                "it does not exist and cannot be created ({} is not writable: {})",
                                home.display(),
                                err.desc()
                            ),
                        );
                        continue;
                    }
                    plan.changes.push(Change {
                        said: format!("Created {} with the PATH line.", path.display()),
                        action: Action::Create {
                            path,
                            contents: format!("{line}  {MARK_CREATED}\n").into_bytes(),
                        },
                    });
                }
                continue;
            }
            Ok(Some(found)) => found,
        };
        let stripped = match without_ours(&found.bytes) {
            Ok(stripped) => stripped,
            Err(why) => {
                plan.refuse(&path, &why);
                continue;
            }
        };
        let wanted = if stripped.created && stripped.text.is_empty() {
            format!("{line}  {MARK_CREATED}\n").into_bytes()
        } else {
            with_line(&stripped.text, &format!("{line}  {MARK}"))
        };
        if wanted == found.bytes {
            continue;
        }
        if let Some(why) = refuse_to_change(&found) {
            plan.refuse(&path, &why);
            continue;
        }
        plan.changes.push(Change {
            said: if stripped.removed == 0 {
                format!("Added the PATH line to the end of {}.", path.display())
            } else {
                format!("Moved the PATH line to the end of {}.", path.display())
            },
            action: Action::Write {
                found,
                contents: wanted,
            },
        });
    }
    plan
}

/// The changes that remove tally's lines from each shell file, and a file setup created once
/// nothing else is in it.
pub(super) fn plan_remove(home: &Path) -> Plan {
    let mut plan = Plan::default();
    for (name, _) in SHELL_FILES {
        let path = home.join(name);
        let found = match look(&path) {
            Err(why) => {
                plan.refuse(&path, &why);
                continue;
            }
            Ok(None) => continue,
            Ok(Some(found)) => found,
        };
        let stripped = match without_ours(&found.bytes) {
            Ok(stripped) if stripped.removed == 0 => continue,
            Ok(stripped) => stripped,
            Err(why) => {
                plan.refuse(&path, &why);
                continue;
            }
        };
        if let Some(why) = refuse_to_change(&found) {
            plan.refuse(&path, &why);
            continue;
        }
        // Deleted only under its own name (never the target of a link) and only if no other
        // name holds it.
        let own_name = fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
        plan.changes.push(
            if stripped.created && stripped.text.is_empty() && own_name && found.meta.nlink() == 1 {
                Change {
                    said: format!(
                        "Deleted {} (tally setup had created it for the PATH line).",
                        path.display()
                    ),
                    action: Action::Delete { found },
                }
            } else {
                Change {
                    said: format!("Removed the PATH line from {}.", path.display()),
                    action: Action::Write {
                        found,
                        contents: stripped.text,
                    },
                }
            },
        );
    }
    plan
}

/// Makes one planned change; returns the line that says what was done.
pub(super) fn apply(change: Change) -> anyhow::Result<String> {
    match change.action {
        Action::Create { path, contents } => {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(fsio::FLAGS)
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            file.write_all(&contents)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Action::Write { found, contents } => write(&found, &contents)?,
        Action::Delete { found } => {
            let now = fs::symlink_metadata(&found.shown).ok();
            if now.is_none_or(|now| (now.dev(), now.ino()) != (found.meta.dev(), found.meta.ino()))
            {
                bail!(
                    "{} changed while tally setup ran; run it again",
                    found.shown.display()
                );
            }
            fs::remove_file(&found.shown)
                .with_context(|| format!("cannot remove {}", found.shown.display()))?;
        }
    }
    Ok(change.said)
}

/// Gives `found` the bytes `contents`, keeping its mode, owner, group and links (see the module
/// docs).
fn write(found: &Found, contents: &[u8]) -> anyhow::Result<()> {
    if found.meta.nlink() == 1
        && replace(found, contents)
            .with_context(|| format!("cannot replace {}", found.shown.display()))?
    {
        return Ok(());
    }
    write_in_place(found, contents)
        .with_context(|| format!("cannot write {}", found.shown.display()))
}

/// Replaces the file through a temporary file beside it and a `rename`. `Ok(false)`: that would
/// not keep what the file is (its directory is not writable, its group cannot be given to the
/// new file), and the file must be written in place instead.
fn replace(found: &Found, contents: &[u8]) -> std::io::Result<bool> {
    let dir = found.real.parent().unwrap_or(Path::new("/"));
    let mut tmp = match tempfile::Builder::new()
        .prefix(".tally-setup.")
        .tempfile_in(dir)
    {
        Ok(tmp) => tmp,
        Err(err) if err.kind() == ErrorKind::PermissionDenied => return Ok(false),
        Err(err) => return Err(err),
    };
    if tmp.as_file().metadata()?.gid() != found.meta.gid()
        && std::os::unix::fs::fchown(tmp.as_file(), None, Some(found.meta.gid())).is_err()
    {
        return Ok(false);
    }
    tmp.write_all(contents)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(found.meta.mode() & 0o7777))?;
    tmp.as_file().sync_all()?;
    still_as_found(found, &fs::symlink_metadata(&found.real)?)?;
    tmp.persist(&found.real).map_err(|err| err.error)?;
    Ok(true)
}

/// Writes the new bytes into the file itself: only what follows the old bytes when the change
/// only adds (no byte of the user's is rewritten), else everything, then the length.
fn write_in_place(found: &Found, contents: &[u8]) -> std::io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(fsio::FLAGS)
        .open(&found.real)?;
    still_as_found(found, &file.metadata()?)?;
    match contents.strip_prefix(found.bytes.as_slice()) {
        Some(added) => file.write_all_at(added, found.bytes.len() as u64)?,
        None => {
            file.write_all_at(contents, 0)?;
            file.set_len(contents.len() as u64)?;
        }
    }
    file.sync_all()
}

/// Refuses to write a file that is no longer the one read (another file at its name, or
/// written to since).
fn still_as_found(found: &Found, now: &fs::Metadata) -> std::io::Result<()> {
    if (now.dev(), now.ino(), now.len()) == (found.meta.dev(), found.meta.ino(), found.meta.len())
        && now.mtime_nsec() == found.meta.mtime_nsec()
        && now.mtime() == found.meta.mtime()
    {
        Ok(())
    } else {
        Err(std::io::Error::other(
            "it changed while tally setup ran; run setup again",
        ))
    }
}

/// The shell files in `home` that hold setup's line (for what setup says afterwards).
pub(super) fn holding_the_line(home: &Path) -> Vec<PathBuf> {
    SHELL_FILES
        .iter()
        .map(|(name, _)| home.join(name))
        .filter(|path| match look(path) {
            Ok(Some(found)) => {
                without_ours(&found.bytes).is_ok_and(|stripped| stripped.removed > 0)
            }
            _ => false,
        })
        .collect()
}

/// A shell file's bytes without tally's lines.
#[derive(Debug, PartialEq, Eq)]
struct Stripped {
    text: Vec<u8>,
    /// How many of tally's lines (or old blocks) there were.
    removed: usize,
    /// Whether a removed line said that setup created the file.
    created: bool,
}

/// `text` without every line that carries [`MARK`] and without install.sh's old blocks, every
/// other byte kept. A marked line that ends the file without a newline was written after a
/// newline setup added (the file had no final one): that newline goes with it. `Err`: an old
/// block that is not whole, which is left for the user to remove (which of its lines are
/// tally's cannot be told).
fn without_ours(text: &[u8]) -> Result<Stripped, String> {
    let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
    let mut out = Vec::with_capacity(text.len());
    let mut removed = 0;
    let mut created = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let bare = bare(line);
        if bare.starts_with(LEGACY_BEGIN) {
            let len = old_block_len(&lines[i..]).ok_or_else(|| {
                format!(
                    "line {} starts an old tally block (`{}`) that does not end as install.sh \
                     wrote it (one `export PATH=` line, then `{}`), so which lines are tally's \
                     cannot be told: remove that block yourself",
                    i + 1,
                    String::from_utf8_lossy(LEGACY_BEGIN),
                    String::from_utf8_lossy(LEGACY_END)
                )
            })?;
            removed += 1;
            i += len;
            continue;
        }
        i += 1;
        if contains(bare, MARK.as_bytes()) {
            removed += 1;
            created |= contains(bare, MARK_CREATED.as_bytes());
            if !line.ends_with(b"\n") && out.ends_with(b"\n") {
                out.pop();
            }
            continue;
        }
        out.extend_from_slice(line);
    }
    Ok(Stripped {
        text: out,
        removed,
        created,
    })
}

/// `line` without its newline.
fn bare(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// How many lines the old block starting at `lines[0]` has, if it is whole: its start line,
/// at most one `export PATH=` line, its end line.
fn old_block_len(lines: &[&[u8]]) -> Option<usize> {
    let at = |i: usize| lines.get(i).map(|line| bare(line));
    match (at(1), at(2)) {
        (Some(end), _) if end == LEGACY_END => Some(2),
        (Some(export), Some(end)) if export.starts_with(LEGACY_LINE) && end == LEGACY_END => {
            Some(3)
        }
        _ => None,
    }
}

/// `text` with `line` as its last line. A file that did not end in a newline gets one before
/// the line and none after it, so that removing the line gives back the same bytes.
fn with_line(text: &[u8], line: &str) -> Vec<u8> {
    let mut out = text.to_vec();
    if text.is_empty() || text.ends_with(b"\n") {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    } else {
        out.push(b'\n');
        out.extend_from_slice(line.as_bytes());
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(line: &str) -> String {
        format!("{line}  {MARK}")
    }

    const BEGIN: &str =
        "# >>> tally shims (added by tally's install.sh; remove with ./install.sh --uninstall) >>>";

    #[test]
    fn adding_then_removing_the_line_gives_back_the_same_bytes() {
        let line = marked("export PATH=\"$HOME/x:$PATH\"");
        for original in [
            &b""[..],
            b"# mine\n",
            b"# mine, no final newline",
            b"a\n\n\nb\n",
            b"\xff\xfe not UTF-8\n",
        ] {
            let added = with_line(original, &line);
            let stripped = without_ours(&added).unwrap();
            assert_eq!(
                stripped.text,
                original,
                "{:?}",
                String::from_utf8_lossy(original)
            );
            assert_eq!(stripped.removed, 1);
            // Adding again to what was added changes nothing.
            assert_eq!(with_line(&without_ours(&added).unwrap().text, &line), added);
        }
    }

    #[test]
    fn every_marked_line_and_whole_old_blocks_go_and_nothing_else() {
        let text = format!(
            "a\n{}\nb\n{BEGIN}\nexport PATH=\"/h/bin:$PATH\"\n# <<< tally shims <<<\nc\n{BEGIN}\n# <<< tally shims <<<\n{}\n",
            marked("export PATH=old"),
            marked("export PATH=new")
        );
        let stripped = without_ours(text.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(stripped.text).unwrap(), "a\nb\nc\n");
        assert_eq!(stripped.removed, 4);
        assert!(!stripped.created);
        let created = without_ours(format!("x  {MARK_CREATED}\n").as_bytes()).unwrap();
        assert!(created.created && created.text.is_empty());
    }

    #[test]
    fn an_old_block_that_is_not_whole_is_refused_with_its_line() {
        for text in [
            // The end line missing: every line after the start was deleted once.
            format!("a\n{BEGIN}\nexport PATH=\"/h/bin:$PATH\"\nalias x=y\nexport EDITOR=vi\n"),
            format!("a\n{BEGIN}\nexport PATH=\"/h/bin:$PATH\""),
            format!("a\n{BEGIN}\n"),
            // A line of the user's inside.
            format!("a\n{BEGIN}\nexport PATH=\"/h/bin:$PATH\"\nalias x=y\n# <<< tally shims <<<\n"),
            format!("a\n{BEGIN}\nalias x=y\n# <<< tally shims <<<\n"),
        ] {
            let why = without_ours(text.as_bytes()).unwrap_err();
            assert!(
                why.starts_with("line 2 starts an old tally block"),
                "{text:?}: {why}"
            );
        }
    }
}
