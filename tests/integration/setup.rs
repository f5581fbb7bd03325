//! `tally setup` from the installed binary alone, in a temporary HOME: the shims, the one marked
//! PATH line, idempotence, `--uninstall [--purge]` leaving the home as it was, what it must
//! leave alone, `TALLY=off`; `tally status` when the shims are not first on PATH; the shell
//! completions in real shells and the man pages through groff. And once, the whole way a Rust
//! user goes: `cargo install` into a temporary root, `tally setup`, a real `cargo build`
//! through the shims, `tally setup --uninstall`; and the crates as they would be published
//! (`cargo package --workspace`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{
    TALLY, TALLY_SHIM, TOOLS, copy_dir, mkfifo, ok, run, within_deadline, write_script,
};

/// Every entry under `root`: directories, files with their bytes and permissions, links with
/// their targets.
fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            use std::os::unix::fs::PermissionsExt;
            let what = if meta.file_type().is_symlink() {
                format!("link to {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                walk(root, &path, out);
                "dir".to_string()
            } else if !meta.is_file() {
                // A FIFO is never opened here: that would wait for a writer.
                format!("special {:?}", meta.file_type())
            } else {
                format!(
                    "file {:o} {:?}",
                    meta.permissions().mode(),
                    String::from_utf8_lossy(&std::fs::read(&path).unwrap())
                )
            };
            out.insert(rel, what);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A user's home as setup finds it: shell files with content of their own (one without a final
/// newline, one a link into a dotfiles directory), and the usual `~/.local/share`.
struct Home {
    tmp: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let tmp = tempfile::Builder::new()
            .prefix("tally-setup-")
            .tempdir()
            .unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir_all(home.join(".local/share")).unwrap();
        std::fs::create_dir_all(home.join("dotfiles")).unwrap();
        std::fs::write(home.join(".profile"), "# my profile\nexport EDITOR=vi").unwrap();
        std::fs::write(home.join("dotfiles/bashrc"), "alias ll='ls -l'\n").unwrap();
        std::os::unix::fs::symlink("dotfiles/bashrc", home.join(".bashrc")).unwrap();
        Home { tmp }
    }

    fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    fn shims(&self) -> PathBuf {
        self.home().join(".local/share/tally/bin")
    }

    /// `tally ARGS` (the binary `tally`) with only this home's environment and `path`.
    fn tally(&self, tally: &Path, path: &OsString, args: &[&str]) -> Command {
        let mut cmd = Command::new(tally);
        cmd.args(args)
            .env_clear()
            .env("HOME", self.home())
            .env("TALLY_DIR", self.data())
            .env("PATH", path)
            .env("LANG", "C");
        cmd
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn real_path() -> OsString {
    std::env::var_os("PATH").unwrap()
}

/// `dirs` first, then the test's own PATH.
fn path_with(dirs: &[&Path]) -> OsString {
    let mut all: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    all.extend(std::env::split_paths(&real_path()));
    std::env::join_paths(all).unwrap()
}

const MARK: &str = "# tally shims: `tally setup --uninstall` removes this line";
const LINE: &str = r#"export PATH="$HOME/.local/share/tally/bin:$PATH""#;

#[test]
fn setup_is_idempotent_writes_one_line_and_uninstall_leaves_the_home_as_it_was() {
    let h = Home::new();
    let before = tree(&h.home());
    let tally = std::fs::canonicalize(TALLY).unwrap();
    let tally_shim = std::fs::canonicalize(TALLY_SHIM).unwrap();

    // Without --modify-path: the shims and the printed line, no shell file touched.
    let out = ok(&mut h.tally(&tally, &real_path(), &["setup"]));
    let said = stdout(&out);
    assert!(said.contains(LINE), "{said}");
    assert!(!said.contains("partial install"), "{said}");
    for name in TOOLS.iter().chain(&["tally"]) {
        assert_eq!(
            std::fs::read_link(h.shims().join(name)).unwrap(),
            if *name == "tally" {
                tally.clone()
            } else {
                tally_shim.clone()
            },
            "{name}"
        );
        assert!(
            said.contains(&format!("Linked {}", h.shims().join(name).display())),
            "one line per change: {said}"
        );
    }
    assert!(
        said.contains("Check: the shims hand over to cargo ("),
        "{said}"
    );
    assert_eq!(
        tree(&h.home()),
        {
            let mut expected = before.clone();
            expected.extend(
                tree(&h.home())
                    .into_iter()
                    .filter(|(p, _)| p.starts_with(".local/share/tally")),
            );
            expected
        },
        "no shell file touched without --modify-path"
    );

    // With it, twice: one marked line at the end of each file, the link kept a link.
    for round in 0..2 {
        let out = ok(&mut h.tally(&tally, &real_path(), &["setup", "--modify-path"]));
        let said = stdout(&out);
        if round == 1 {
            assert!(said.starts_with("Nothing to change"), "{said}");
        }
        for file in [".profile", ".bashrc"] {
            let text = std::fs::read_to_string(h.home().join(file)).unwrap();
            assert_eq!(text.matches(MARK).count(), 1, "{file}: {text}");
            assert!(
                text.lines().last().unwrap().starts_with(LINE),
                "{file}: {text}"
            );
        }
    }
    assert!(
        std::fs::symlink_metadata(h.home().join(".bashrc"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(!h.home().join(".zshrc").exists(), "no .zshrc was made");

    // A login shell reading the profile puts the shims first, and the shim counts.
    let shell_path = ok(Command::new("sh")
        .args(["-c", ". \"$HOME/.profile\"; printf %s \"$PATH\""])
        .env_clear()
        .env("HOME", h.home())
        .env("PATH", real_path()));
    let shell_path = OsString::from(stdout(&shell_path));
    assert_eq!(
        std::env::split_paths(&shell_path).next().unwrap(),
        h.shims()
    );
    let out = ok(h.tally(&h.shims().join("rustc"), &shell_path, &["-V"]).env(
        "RUSTUP_HOME",
        std::env::var_os("RUSTUP_HOME").unwrap_or_else(|| real_home().join(".rustup").into()),
    ));
    assert!(stdout(&out).starts_with("rustc "));
    crate::support::settle(&h.data());
    let counted = tally_home::Home::at(h.data()).counter_store().list();
    assert_eq!(counted.len(), 1, "the shim counted");

    // Uninstall with --purge: the home exactly as before, the data gone; again, harmless.
    let out = ok(&mut h.tally(&tally, &real_path(), &["setup", "--uninstall", "--purge"]));
    let said = stdout(&out);
    assert!(said.contains("Removed the PATH line from"), "{said}");
    assert!(said.contains("Deleted tally's data directory"), "{said}");
    assert_eq!(tree(&h.home()), before);
    assert!(!h.data().exists());
    let out = ok(&mut h.tally(&tally, &real_path(), &["setup", "--uninstall"]));
    assert!(stdout(&out).starts_with("Nothing to remove"), "{out:?}");
    assert_eq!(tree(&h.home()), before);
}

fn real_home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap()
}

#[test]
fn setup_makes_a_profile_it_then_deletes_and_moves_its_line_last() {
    let h = Home::new();
    std::fs::remove_file(h.home().join(".profile")).unwrap();
    std::fs::write(h.home().join(".zshrc"), "setopt autocd\n").unwrap();
    let before = tree(&h.home());
    let tally = std::fs::canonicalize(TALLY).unwrap();
    ok(&mut h.tally(&tally, &real_path(), &["setup", "--modify-path"]));
    assert!(
        std::fs::read_to_string(h.home().join(".profile"))
            .unwrap()
            .starts_with(LINE)
    );
    // rustup's installer adds its line after ours: setup moves its line back to the end.
    let zshrc = h.home().join(".zshrc");
    let mut text = std::fs::read_to_string(&zshrc).unwrap();
    text.push_str(". \"$HOME/.cargo/env\"\n");
    std::fs::write(&zshrc, &text).unwrap();
    let out = ok(&mut h.tally(&tally, &real_path(), &["setup", "--modify-path"]));
    assert!(
        stdout(&out).contains(&format!(
            "Moved the PATH line to the end of {}",
            zshrc.display()
        )),
        "{out:?}"
    );
    let text = std::fs::read_to_string(&zshrc).unwrap();
    assert_eq!(text.matches(MARK).count(), 1, "{text}");
    assert!(text.lines().last().unwrap().starts_with(LINE), "{text}");
    ok(&mut h.tally(&tally, &real_path(), &["setup", "--uninstall"]));
    let mut expected = before;
    expected.insert(
        PathBuf::from(".zshrc"),
        format!(
            "file 100644 {:?}",
            "setopt autocd\n. \"$HOME/.cargo/env\"\n"
        ),
    );
    assert_eq!(tree(&h.home()), expected);
}

#[test]
fn setup_leaves_what_is_not_its_own_and_says_so() {
    let h = Home::new();
    let tally = std::fs::canonicalize(TALLY).unwrap();
    // The user's own script where a shim would go.
    std::fs::create_dir_all(h.shims()).unwrap();
    let mine = h.shims().join("cargo");
    std::fs::write(&mine, "#!/bin/sh\nexec /usr/bin/true\n").unwrap();
    let out = run(&mut h.tally(&tally, &real_path(), &["setup"]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("left {} alone", mine.display())),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&mine).unwrap(),
        "#!/bin/sh\nexec /usr/bin/true\n"
    );
    assert_eq!(
        std::fs::read_link(h.shims().join("rustc")).unwrap(),
        std::fs::canonicalize(TALLY_SHIM).unwrap(),
        "the other shims were made"
    );
    ok(&mut h.tally(&tally, &real_path(), &["setup", "--uninstall"]));
    assert!(mine.exists(), "uninstall left the user's file");
    assert!(!h.shims().join("rustc").exists());

    // --purge refuses a data directory with anything of the user's, before changing anything.
    std::fs::remove_file(&mine).unwrap();
    ok(&mut h.tally(&tally, &real_path(), &["setup", "--modify-path"]));
    std::fs::create_dir_all(h.data().join("counters")).unwrap();
    std::fs::write(h.data().join("thesis.tex"), "...").unwrap();
    let err = refused(&h, &tally, &["setup", "--uninstall", "--purge"]);
    assert!(err.contains("thesis.tex"), "{err}");
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `tally status` in `h` with `path`, which must say that the shims are first on PATH for every
/// tool and run `binary`. Returns what it said.
fn status_says_the_shims_run(h: &Home, tally: &Path, path: &OsString, binary: &Path) -> String {
    let status = stdout(&ok(&mut h.tally(tally, path, &["status"])));
    assert!(
        status.contains(&format!(
            "(first on PATH for every tool), running {}\n",
            binary.display()
        )),
        "{status}"
    );
    status
}

/// Runs `tally ARGS` in `h`, which must refuse, within the deadline (a run that blocks fails):
/// exit status 1, and nothing under `h`'s temporary directory changed. Returns its stderr.
fn refused(h: &Home, tally: &Path, args: &[&str]) -> String {
    let before = tree(h.tmp.path());
    let out = within_deadline(&mut h.tally(tally, &real_path(), args));
    assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
    assert_eq!(tree(h.tmp.path()), before, "{args:?}: nothing changed");
    stderr(&out)
}

/// The first line of install.sh's old three-line block, and its last.
const OLD_BEGIN: &str =
    "# >>> tally shims (added by tally's install.sh; remove with ./install.sh --uninstall) >>>";
const OLD_END: &str = "# <<< tally shims <<<";

/// An old install.sh block that is not whole (its end line missing, a line of the user's
/// inside it) is not guessed at: setup and uninstall name the file and the line, and change
/// nothing at all. A whole block is still replaced by the marked line, every other line kept.
#[test]
fn an_old_block_that_is_not_whole_is_refused_and_no_line_is_lost() {
    let tally = std::fs::canonicalize(TALLY).unwrap();
    for (what, bashrc) in [
        (
            "its end line missing",
            format!(
                "alias ll='ls -l'\n{OLD_BEGIN}\nexport PATH=\"/old/bin:$PATH\"\nalias gs='git status'\nexport EDITOR=vi\n"
            ),
        ),
        (
            "a line of the user's inside",
            format!(
                "alias ll='ls -l'\n{OLD_BEGIN}\nexport PATH=\"/old/bin:$PATH\"\nalias gs='git status'\n{OLD_END}\nexport EDITOR=vi\n"
            ),
        ),
    ] {
        let h = Home::new();
        std::fs::write(h.home().join("dotfiles/bashrc"), &bashrc).unwrap();
        for args in [&["setup", "--modify-path"][..], &["setup", "--uninstall"]] {
            let err = refused(&h, &tally, args);
            assert!(
                err.contains(&format!(
                    "left {} alone",
                    h.home().join(".bashrc").display()
                )) && err.contains("line 2")
                    && err.contains("nothing was changed"),
                "{what}, {args:?}: {err}"
            );
        }
    }

    let h = Home::new();
    let bashrc = h.home().join("dotfiles/bashrc");
    std::fs::write(
        &bashrc,
        format!("alias ll='ls -l'\n{OLD_BEGIN}\nexport PATH=\"/old/bin:$PATH\"\n{OLD_END}\nexport EDITOR=vi\n"),
    )
    .unwrap();
    ok(&mut h.tally(&tally, &real_path(), &["setup", "--modify-path"]));
    assert_eq!(
        std::fs::read_to_string(&bashrc).unwrap(),
        format!("alias ll='ls -l'\nexport EDITOR=vi\n{LINE}  {MARK}\n")
    );
    ok(&mut h.tally(&tally, &real_path(), &["setup", "--uninstall"]));
    assert_eq!(
        std::fs::read_to_string(&bashrc).unwrap(),
        "alias ll='ls -l'\nexport EDITOR=vi\n"
    );
}

/// Whether this test runs as root (then it can give a file to another user).
fn is_root() -> bool {
    let out = ok(Command::new("id").arg("-u"));
    stdout(&out).trim() == "0"
}

/// The uid and gid of `nobody` on Debian, for files and runs of another, unprivileged user.
const NOBODY: u32 = 65534;

/// A read-only shell file, and one owned by another user, are the user's way of saying "not
/// this one": setup names the file, says what to do, exits 1 and changes nothing at all (no
/// other shell file, no shim), and uninstall likewise.
#[test]
fn protected_shell_files_are_named_and_nothing_is_changed() {
    let tally = std::fs::canonicalize(TALLY).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    let h = Home::new();
    let profile = h.home().join(".profile");
    std::fs::set_permissions(&profile, std::fs::Permissions::from_mode(0o444)).unwrap();
    // Nothing changed, .bashrc neither.
    let err = refused(&h, &tally, &["setup", "--modify-path"]);
    assert!(
        err.contains(&format!("left {} alone", profile.display()))
            && err.contains("read-only (mode 0444)")
            && err.contains("nothing was changed"),
        "{err}"
    );

    // Set up while writable, then protected: uninstall leaves its line and says so.
    std::fs::set_permissions(&profile, std::fs::Permissions::from_mode(0o644)).unwrap();
    ok(&mut h.tally(&tally, &real_path(), &["setup", "--modify-path"]));
    std::fs::set_permissions(&profile, std::fs::Permissions::from_mode(0o444)).unwrap();
    let err = refused(&h, &tally, &["setup", "--uninstall"]);
    assert!(err.contains("read-only"), "{err}");

    if !is_root() {
        eprintln!("skipping the other owner's file: giving a file away needs root");
        return;
    }
    // Run by root, a file of another user's is not root's to rewrite either.
    let h = Home::new();
    let bashrc = h.home().join("dotfiles/bashrc");
    std::os::unix::fs::chown(&bashrc, Some(NOBODY), Some(NOBODY)).unwrap();
    let err = refused(&h, &tally, &["setup", "--modify-path"]);
    assert!(
        err.contains(&format!(
            "left {} alone",
            h.home().join(".bashrc").display()
        )) && err.contains(&format!("uid {NOBODY}) and you are root (uid 0)")),
        "{err}"
    );
    assert_eq!(std::fs::metadata(&bashrc).unwrap().uid(), NOBODY);
}

/// The auditor's case as it happens: an ordinary user (uid 65534, run through `setpriv`) whose
/// `~/.bashrc` belongs to root. Setup refuses it, changes nothing, and leaves it root's; once
/// the file is the user's, setup edits it and keeps it the user's.
#[test]
fn an_ordinary_user_cannot_make_setup_replace_a_root_owned_file() {
    if !is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipping: needs root and setpriv (util-linux) to run setup as another user");
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let tally = std::fs::canonicalize(TALLY).unwrap();
    let h = Home::new();
    // The user's home and everything in it is theirs; the way there is open to them.
    std::fs::set_permissions(h.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = h.home();
    std::fs::remove_file(home.join(".bashrc")).unwrap();
    for entry in walk_all(&home) {
        std::os::unix::fs::lchown(&entry, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let bashrc = home.join(".bashrc");
    std::fs::write(&bashrc, "# the administrator's\n").unwrap();
    let as_nobody = |args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid",
            &NOBODY.to_string(),
            "--regid",
            &NOBODY.to_string(),
            "--clear-groups",
        ])
        .arg(&tally)
        .args(args)
        .env_clear()
        .env("HOME", &home)
        .env("TALLY_DIR", h.data())
        .env("PATH", real_path())
        .env("LANG", "C");
        run(&mut cmd)
    };
    if !as_nobody(&["--version"]).status.success() {
        eprintln!("skipping: uid {NOBODY} cannot run {}", tally.display());
        return;
    }
    let before = tree(h.tmp.path());
    let out = as_nobody(&["setup", "--modify-path"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("left {} alone", bashrc.display()))
            && err.contains("owned by root (uid 0)"),
        "{err}"
    );
    assert_eq!(tree(h.tmp.path()), before);
    assert_eq!(std::fs::metadata(&bashrc).unwrap().uid(), 0, "still root's");

    std::os::unix::fs::chown(&bashrc, Some(NOBODY), Some(NOBODY)).unwrap();
    let out = as_nobody(&["setup", "--modify-path"]);
    assert!(out.status.success(), "{out:?}");
    for file in [".profile", ".bashrc"] {
        let meta = std::fs::metadata(home.join(file)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (NOBODY, NOBODY), "{file}");
        let text = std::fs::read_to_string(home.join(file)).unwrap();
        assert!(
            text.lines().last().unwrap().starts_with(LINE),
            "{file}: {text}"
        );
    }
}

/// Every path under `dir`, `dir` included.
fn walk_all(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(walk_all(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A shell file with a second hard link (a dotfiles directory kept that way) is edited in
/// place: both names see the line come and go, and the file keeps its inode and its mode.
#[test]
fn a_hard_linked_shell_file_keeps_its_links_and_its_mode() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let tally = std::fs::canonicalize(TALLY).unwrap();
    let h = Home::new();
    let kept = h.home().join("dotfiles/zshrc");
    std::fs::write(&kept, "setopt autocd\n").unwrap();
    std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o640)).unwrap();
    let zshrc = h.home().join(".zshrc");
    std::fs::hard_link(&kept, &zshrc).unwrap();
    let profile = h.home().join(".profile");
    std::fs::set_permissions(&profile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let inode = std::fs::metadata(&kept).unwrap().ino();

    ok(&mut h.tally(&tally, &real_path(), &["setup", "--modify-path"]));
    for path in [&kept, &zshrc] {
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(
            (meta.ino(), meta.nlink(), meta.mode() & 0o7777),
            (inode, 2, 0o640),
            "{}",
            path.display()
        );
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            format!("setopt autocd\n{LINE}  {MARK}\n")
        );
    }
    assert_eq!(
        std::fs::metadata(&profile).unwrap().mode() & 0o7777,
        0o600,
        "mode kept"
    );

    ok(&mut h.tally(&tally, &real_path(), &["setup", "--uninstall"]));
    for path in [&kept, &zshrc] {
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(
            (meta.ino(), meta.nlink(), meta.mode() & 0o7777),
            (inode, 2, 0o640)
        );
        assert_eq!(std::fs::read_to_string(path).unwrap(), "setopt autocd\n");
    }
    assert_eq!(std::fs::metadata(&profile).unwrap().mode() & 0o7777, 0o600);
}

/// A FIFO at `~/.bashrc` is never opened for reading (that would wait for a writer forever):
/// setup and uninstall name it, finish at once, and change nothing, `~/.profile` included.
#[test]
fn a_fifo_at_a_shell_file_never_blocks_and_nothing_is_changed() {
    let tally = std::fs::canonicalize(TALLY).unwrap();
    let h = Home::new();
    let bashrc = h.home().join(".bashrc");
    mkfifo(&bashrc);
    let err = refused(&h, &tally, &["setup", "--modify-path"]);
    assert!(
        err.contains(&format!("left {} alone", bashrc.display())) && err.contains("a FIFO"),
        "{err}"
    );

    // Set up with a regular .bashrc; the FIFO comes after.
    std::fs::remove_file(&bashrc).unwrap();
    std::fs::write(&bashrc, "# mine\n").unwrap();
    ok(&mut h.tally(&tally, &real_path(), &["setup", "--modify-path"]));
    mkfifo(&bashrc);
    // .profile keeps its line, the shims stay.
    let err = refused(&h, &tally, &["setup", "--uninstall"]);
    assert!(err.contains("a FIFO"), "{err}");
}

/// Setup replaces a link in its directory only when it points at a tally binary (this one, a
/// copy of it elsewhere, or one since removed), never a user's link to their own program that
/// happens to be named `tally`; `--purge` deletes the data directory only when every file in
/// it, at every depth, is tally's.
#[test]
fn links_and_purge_touch_only_what_is_tallys() {
    let tally = std::fs::canonicalize(TALLY).unwrap();
    let h = Home::new();
    ok(&mut h.tally(&tally, &real_path(), &["setup"]));
    let theirs = write_script(&h.tmp.path().join("theirs/tally"), "echo mine");
    let older = h.tmp.path().join("older/tally");
    std::fs::create_dir_all(older.parent().unwrap()).unwrap();
    std::fs::copy(&tally, &older).unwrap();
    let removed = h.tmp.path().join("removed/tally");
    for (name, to) in [("cargo", &theirs), ("rustc", &older), ("go", &removed)] {
        std::fs::remove_file(h.shims().join(name)).unwrap();
        std::os::unix::fs::symlink(to, h.shims().join(name)).unwrap();
    }
    let out = run(&mut h.tally(&tally, &real_path(), &["setup"]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains(&format!("left {} alone", h.shims().join("cargo").display())),
        "{out:?}"
    );
    assert_eq!(std::fs::read_link(h.shims().join("cargo")).unwrap(), theirs);
    // Replaced by setup's own links, to the hot binary beside this `tally`.
    let hot = std::fs::canonicalize(TALLY_SHIM).unwrap();
    for name in ["rustc", "go"] {
        assert_eq!(
            std::fs::read_link(h.shims().join(name)).unwrap(),
            hot,
            "{name}"
        );
    }
    run(&mut h.tally(&tally, &real_path(), &["setup", "--uninstall"]));
    assert_eq!(std::fs::read_link(h.shims().join("cargo")).unwrap(), theirs);
    assert!(!h.shims().join("rustc").exists());

    // A file of the user's two levels down in the data directory.
    let local = h.data().join("reports/local");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("2026-11-16.json"), "{}").unwrap();
    std::fs::write(local.join("my-notes.txt"), "keep me").unwrap();
    std::fs::write(h.data().join("mode"), "local\n").unwrap();
    let before = tree(h.tmp.path());
    let out = run(&mut h.tally(&tally, &real_path(), &["setup", "--uninstall", "--purge"]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains("reports/local/my-notes.txt"),
        "{out:?}"
    );
    assert_eq!(tree(h.tmp.path()), before, "nothing changed");
    std::fs::remove_file(local.join("my-notes.txt")).unwrap();
    ok(&mut h.tally(&tally, &real_path(), &["setup", "--uninstall", "--purge"]));
    assert!(!h.data().exists());
}

#[test]
fn setup_works_with_tally_off_and_writes_no_data() {
    for (name, value) in [("TALLY", "off"), ("DO_NOT_TRACK", "1")] {
        let h = Home::new();
        let tally = std::fs::canonicalize(TALLY).unwrap();
        let out = ok(h
            .tally(&tally, &real_path(), &["setup", "--modify-path"])
            .env(name, value));
        assert!(stdout(&out).contains("count nothing"), "{out:?}");
        assert!(h.shims().join("cargo").exists());
        ok(
            h.tally(&h.shims().join("rustc"), &path_with(&[&h.shims()]), &["-V"])
                .env(name, value)
                .env(
                    "RUSTUP_HOME",
                    std::env::var_os("RUSTUP_HOME")
                        .unwrap_or_else(|| real_home().join(".rustup").into()),
                ),
        );
        assert!(!h.data().exists(), "{name}={value}: nothing written");
        ok(h.tally(&tally, &real_path(), &["setup", "--uninstall"])
            .env(name, value));
        assert!(!h.shims().exists());
    }
}

#[test]
fn status_says_when_the_shims_are_not_first_and_the_line_that_fixes_it() {
    let h = Home::new();
    let tally = std::fs::canonicalize(TALLY).unwrap();
    ok(&mut h.tally(&tally, &real_path(), &["setup"]));
    // A toolchain directory before the shims, as rustup's ~/.cargo/bin often is.
    let cargo_bin = h.tmp.path().join("cargo-bin");
    std::fs::create_dir(&cargo_bin).unwrap();
    for tool in ["cargo", "rustc"] {
        let real = which(tool);
        std::os::unix::fs::symlink(real, cargo_bin.join(tool)).unwrap();
    }
    let shadowed = path_with(&[&cargo_bin, &h.shims()]);
    let out = ok(&mut h.tally(&h.shims().join("tally"), &shadowed, &["status"]));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "cargo       not counted: {} comes before the shim on PATH",
            cargo_bin.join("cargo").display()
        )),
        "{text}"
    );
    assert!(text.contains(&format!("      {LINE}\n")), "{text}");
    let json = ok(&mut h.tally(&tally, &shadowed, &["status", "--json"]));
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["shims"]["fix"], LINE);
    assert_eq!(json["shims"]["first_on_path"], false);

    // Not on PATH at all: status still finds setup's directory and prints the line.
    let out = ok(&mut h.tally(&tally, &real_path(), &["status"]));
    assert!(stdout(&out).contains(LINE), "{out:?}");

    // First: no fix to print.
    let first = path_with(&[&h.shims(), &cargo_bin]);
    let out = ok(&mut h.tally(&tally, &first, &["status"]));
    let text = stdout(&out);
    assert!(text.contains("(first on PATH for every tool)"), "{text}");
    assert!(!text.contains(LINE), "{text}");
}

/// A `tally` without `tally-shim` beside it (a partial install): setup links the shims to
/// `tally` itself, and says what is missing and how to fix it. Once `tally-shim` is there, setup
/// moves the shims over, and `tally status` says which binary the shims and the wrapper run,
/// and names a shim still linked to `tally`.
#[test]
fn setup_links_the_shims_to_tally_shim_and_names_a_partial_install() {
    let h = Home::new();
    let install = h.tmp.path().join("install");
    std::fs::create_dir(&install).unwrap();
    let tally = install.join("tally");
    let hot = install.join("tally-shim");
    std::fs::copy(TALLY, &tally).unwrap();
    let said = stdout(&ok(&mut h.tally(&tally, &real_path(), &["setup"])));
    assert!(
        said.contains(&format!(
            "Check: there is no tally-shim beside {} (a partial install)",
            tally.display()
        )) && said.contains("`cargo install --locked tally-client`"),
        "{said}"
    );
    for name in TOOLS.iter().chain(&["tally"]) {
        assert_eq!(std::fs::read_link(h.shims().join(name)).unwrap(), tally);
    }
    let shims_first = path_with(&[&h.shims()]);
    status_says_the_shims_run(&h, &tally, &shims_first, &tally);

    // The rest of the install arrives: setup moves the tools' shims to it.
    std::fs::copy(TALLY_SHIM, &hot).unwrap();
    let said = stdout(&ok(&mut h.tally(&tally, &real_path(), &["setup"])));
    assert!(!said.contains("partial install"), "{said}");
    assert!(
        said.contains(&format!(
            "Linked {} to {} (it was a link to {}).",
            h.shims().join("cargo").display(),
            hot.display(),
            tally.display()
        )),
        "{said}"
    );
    for name in TOOLS {
        assert_eq!(std::fs::read_link(h.shims().join(name)).unwrap(), hot);
    }
    assert_eq!(std::fs::read_link(h.shims().join("tally")).unwrap(), tally);
    let status = status_says_the_shims_run(&h, &tally, &shims_first, &hot);
    assert!(
        status.contains(&format!(
            "Under cargo:  compiles counted: the cargo shim sets RUSTC_WRAPPER to {}\n",
            hot.display()
        )),
        "{status}"
    );
    let json = ok(&mut h.tally(&tally, &shims_first, &["status", "--json"]));
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let hot_text = hot.display().to_string();
    assert_eq!(json["shims"]["runs"], hot_text.as_str());
    assert_eq!(json["shims"]["wrapper"], hot_text.as_str());
    assert_eq!(json["shims"]["hot_binary"], hot_text.as_str());
    assert_eq!(json["shims"]["tools"][0]["runs"], hot_text.as_str());

    // One shim linked to `tally` by hand: named, with what setup would do.
    let rustc = h.shims().join("rustc");
    std::fs::remove_file(&rustc).unwrap();
    std::os::unix::fs::symlink(&tally, &rustc).unwrap();
    let status = stdout(&ok(&mut h.tally(&tally, &shims_first, &["status"])));
    assert!(
        status.contains(&format!(
            "  rustc       counted (through {}), runs",
            tally.display()
        )) && status.contains(&format!(
            "  `tally setup` links the shims to {}, which starts faster than tally",
            hot.display()
        )),
        "{status}"
    );
    ok(&mut h.tally(&tally, &real_path(), &["setup", "--uninstall"]));
    assert!(!h.shims().exists());
}

/// Where `tool` is on the test's PATH.
fn which(tool: &str) -> PathBuf {
    let out = ok(Command::new("sh").args(["-c", &format!("command -v {tool}")]));
    PathBuf::from(stdout(&out).trim())
}

/// Whether `program --version` runs; if not, the check that needs it skips with a message,
/// unless TALLY_REQUIRE_SHELLS=1 (CI), which makes it fail.
fn have(program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let package = match program {
        "groff" => "groff-base",
        "man" => "man-db",
        other => other,
    };
    if !found && std::env::var_os("TALLY_REQUIRE_SHELLS").is_some_and(|v| v == "1") {
        panic!("`{program}` is missing and TALLY_REQUIRE_SHELLS=1: install it (Debian: {package})");
    }
    if !found {
        eprintln!(
            "skipping the {program} check: not installed (Debian: apt-get install {package})"
        );
    }
    found
}

#[test]
fn completions_load_in_real_shells_for_both_binaries() {
    let server = server_binary();
    let tmp = tempfile::tempdir().unwrap();
    for (binary, name, sub) in [
        (PathBuf::from(TALLY), "tally", "setup"),
        (server, "tally-server", "keygen"),
    ] {
        for shell in ["bash", "zsh", "fish"] {
            let script = tmp.path().join(format!("{name}.{shell}"));
            let out = ok(Command::new(&binary).args(["completions", shell]));
            std::fs::write(&script, &out.stdout).unwrap();
            if shell != "bash" && !have(shell) {
                continue;
            }
            // Load the script and ask for the completions of `NAME <prefix of SUB>`.
            let prefix = &sub[..2];
            let program = match shell {
                "bash" => format!(
                    "source \"$0\"; COMP_WORDS=({name} {prefix}); COMP_CWORD=1; COMP_LINE=\"{name} {prefix}\"; COMP_POINT=${{#COMP_LINE}}; \
                     $(complete -p {name} | sed -E 's/.* -F ([^ ]+) .*/\\1/') {name} {prefix} {name}; printf '%s\\n' \"${{COMPREPLY[@]}}\""
                ),
                "zsh" => format!(
                    "autoload -U compinit && compinit -u -d \"$0.zcompdump\"; source \"$0\"; print -r -- ${{_comps[{name}]}}"
                ),
                _ => format!("source $argv[1]; complete -C '{name} {prefix}'"),
            };
            let out = ok(Command::new(shell)
                .args(["-c", &program, script.to_str().unwrap()])
                .env("HOME", tmp.path()));
            let said = stdout(&out);
            let expected = match shell {
                "zsh" => format!("_{name}"),
                _ => sub.to_string(),
            };
            assert!(
                said.lines()
                    .any(|l| l.split_whitespace().next() == Some(expected.as_str())),
                "{shell} completing `{name} {prefix}` gave {said:?}"
            );
        }
    }
}

/// The man pages of both binaries: printed, and written one per command with `--dir`; every
/// page that one refers to (`tally-status(1)`) is there, and groff renders each without a
/// warning (and `man -l` the top one) where they are installed.
#[test]
fn man_pages_render() {
    let server = server_binary();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man1");
    for (binary, name, sub) in [
        (PathBuf::from(TALLY), "tally", "setup"),
        (server, "tally-server", "keygen"),
    ] {
        let page = ok(Command::new(&binary).arg("man"));
        let page = String::from_utf8(page.stdout).unwrap();
        assert!(page.contains(&format!(".TH {name} 1")), "{page}");
        ok(Command::new(&binary).args(["man", "--dir"]).arg(&dir));
        assert_eq!(
            std::fs::read_to_string(dir.join(format!("{name}.1"))).unwrap(),
            page
        );
        let unescaped = page.replace("\\-", "-");
        let referred: Vec<&str> = unescaped
            .split_whitespace()
            .filter_map(|word| word.strip_suffix("(1)"))
            .collect();
        assert!(referred.len() > 3, "{page}");
        for referred in referred {
            assert!(dir.join(format!("{referred}.1")).is_file(), "{referred}");
        }
        assert!(dir.join(format!("{name}-{sub}.1")).is_file());
    }
    if !have("groff") {
        return;
    }
    for page in std::fs::read_dir(&dir).unwrap() {
        let page = std::fs::read(page.unwrap().path()).unwrap();
        // -z: parse only; -ww: every warning, on stderr.
        let out = pipe(
            Command::new("groff").args(["-man", "-Tutf8", "-ww", "-z"]),
            &page,
        );
        assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    }
    for (name, sub) in [("tally", "setup"), ("tally-server", "keygen")] {
        let page = std::fs::read(dir.join(format!("{name}.1"))).unwrap();
        let out = pipe(
            Command::new("groff").args(["-man", "-Tascii", "-P-bcou"]),
            &page,
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("NAME") && text.contains(&format!("{name}-{sub}(1)")),
            "{text}"
        );
    }
    if have("man") {
        let out = ok(Command::new("man")
            .arg("-l")
            .arg(dir.join("tally.1"))
            .env("MANPAGER", "cat")
            .env("MAN_KEEP_FORMATTING", "0"));
        assert!(
            stdout(&out).contains("privacy-preserving usage counting"),
            "{out:?}"
        );
    }
}

/// Runs `cmd` with `input` on its stdin and its output captured.
fn pipe(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// The `tally-server` binary, built once for every test that needs it
/// (`support::workspace_binaries`).
fn server_binary() -> PathBuf {
    crate::support::workspace_binaries().server.clone()
}

/// The workspace's target directory (cargo's test binaries live in `<target>/debug/deps`).
fn target_dir() -> PathBuf {
    Path::new(TALLY)
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf()
}

/// The `debug` setting of the workspace's `[profile.dev]` (Cargo.toml), cargo's default
/// (`true`) where it has none.
fn workspace_dev_debug() -> String {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    manifest
        .lines()
        .skip_while(|line| line.trim() != "[profile.dev]")
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .find_map(|line| line.strip_prefix("debug = "))
        .map_or_else(
            || "true".to_string(),
            |value| value.trim_matches('"').to_string(),
        )
}

/// A cargo command with the toolchain's own environment and nothing of the test harness's.
fn cargo(home: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.env_clear()
        .env("PATH", real_path())
        .env("HOME", home)
        .env(
            "RUSTUP_HOME",
            std::env::var_os("RUSTUP_HOME").unwrap_or_else(|| real_home().join(".rustup").into()),
        )
        .env(
            "CARGO_HOME",
            std::env::var_os("CARGO_HOME").unwrap_or_else(|| real_home().join(".cargo").into()),
        )
        .env("CARGO_TERM_COLOR", "never");
    if let Some(toolchain) = std::env::var_os("RUSTUP_TOOLCHAIN") {
        cmd.env("RUSTUP_TOOLCHAIN", toolchain);
    }
    cmd
}

/// The way a Rust user installs it: `cargo install --path .` (the client package,
/// `tally-client`: `tally` and `tally-shim`), and the collector's package, into a temporary
/// root, `tally setup` into a temporary home (the shims on `tally-shim`), a real `cargo build`
/// through the shims with `tally-shim` as its `RUSTC_WRAPPER`, counted, then `tally setup
/// --uninstall`, after which the home is as it was.
///
/// One release install per binary, into the workspace's own target directory: install.sh's
/// test builds tally-server there with the same profile, so CI compiles it once, and a rerun
/// is a check of fingerprints.
#[test]
fn cargo_install_then_setup_then_a_real_build_then_uninstall() {
    let tmp = tempfile::Builder::new()
        .prefix("tally-cargo-install-")
        .tempdir()
        .unwrap();
    let root = tmp.path().join("root");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for crate_dir in [repo.to_path_buf(), repo.join("crates/tally-server")] {
        ok(cargo(tmp.path())
            .args(["install", "--quiet", "--locked", "--path"])
            .arg(&crate_dir)
            .arg("--root")
            .arg(&root)
            .arg("--target-dir")
            .arg(target_dir())
            .current_dir(tmp.path()));
    }
    let installed = root.join("bin");
    let tally = installed.join("tally");
    let tally_shim = installed.join("tally-shim");
    assert!(installed.join("tally-server").is_file());
    assert!(
        tally_shim.is_file(),
        "one install gives both client binaries"
    );
    ok(Command::new(installed.join("tally-server")).arg("--version"));

    let h = Home::new();
    let before = tree(&h.home());
    // The user's PATH after `cargo install`: the root's bin/ on it.
    let user_path = path_with(&[&installed]);
    let out = ok(&mut h.tally(&tally, &user_path, &["setup", "--modify-path"]));
    let said = stdout(&out);
    assert!(
        !said.contains("tally-server (the collector"),
        "found beside tally: {said}"
    );
    assert!(!said.contains("partial install"), "{said}");
    for name in TOOLS {
        assert_eq!(
            std::fs::read_link(h.shims().join(name)).unwrap(),
            tally_shim
        );
    }

    // A new login shell's PATH, and a real build through the shims.
    let shell_path = ok(Command::new("sh")
        .args(["-c", ". \"$HOME/.profile\"; printf %s \"$PATH\""])
        .env_clear()
        .env("HOME", h.home())
        .env("PATH", &user_path));
    let shell_path = OsString::from(stdout(&shell_path));
    let project = h.tmp.path().join("hello");
    copy_dir(&repo.join("tests/fixtures/cargo-hello"), &project);
    let mut build = cargo(&h.home());
    build
        .args(["build", "-v"])
        .current_dir(&project)
        .env("PATH", &shell_path)
        .env("TALLY_DIR", h.data())
        .env("CARGO_TARGET_DIR", h.tmp.path().join("target"));
    let built = ok(&mut build);
    assert!(h.tmp.path().join("target/debug/hello").is_file());
    // `cargo build -v` shows each compile's command, the wrapper first.
    let shown = String::from_utf8_lossy(&built.stderr);
    assert!(
        shown.contains(&format!("Running `{} ", tally_shim.display())),
        "{shown}"
    );
    crate::support::settle(&h.data());
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (_, snapshot) in tally_home::Home::at(h.data()).counter_store().list() {
        for (name, n) in snapshot.unwrap().counters {
            *counts.entry(name).or_default() += n;
        }
    }
    assert_eq!(
        counts.get("cargo/subcommand:build"),
        Some(&1),
        "{counts:#?}"
    );
    assert_eq!(counts.get("rustc/compiles"), Some(&1), "{counts:#?}");
    status_says_the_shims_run(&h, &tally, &shell_path, &tally_shim);

    // Uninstall: the home exactly as before, the data directory gone.
    ok(&mut h.tally(&tally, &user_path, &["setup", "--uninstall", "--purge"]));
    assert_eq!(tree(&h.home()), before);
    assert!(!h.data().exists());
    ok(cargo(tmp.path())
        .args(["uninstall", "--quiet", "--root"])
        .arg(&root)
        .args(["tally-client", "tally-server"]));
    assert!(!tally.exists() && !tally_shim.exists() && !installed.join("tally-server").exists());
}

/// The crates as they would be published: `cargo package --workspace` packs every crate and
/// builds each from exactly the files it would upload, against the others' packed forms.
#[test]
fn the_workspace_packages_as_it_would_be_published() {
    let tmp = tempfile::tempdir().unwrap();
    // cargo verifies each packed crate against the others' packed forms, which it unpacks from
    // a local registry into `$CARGO_HOME/registry/src/-<hash>/<name>-<version>` and reuses when
    // that directory exists: after a change, an earlier run's unpacked copy of the same version
    // would be built instead of the new one. Those copies of our own crates are removed first
    // (local registries' directories start with `-`; crates.io's never do).
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| real_home().join(".cargo"));
    if let Ok(registries) = std::fs::read_dir(cargo_home.join("registry/src")) {
        for registry in registries.filter_map(Result::ok) {
            if !registry.file_name().to_string_lossy().starts_with('-') {
                continue;
            }
            for krate in std::fs::read_dir(registry.path()).into_iter().flatten() {
                let krate = krate.unwrap().path();
                let name = krate.file_name().unwrap().to_string_lossy().into_owned();
                if name.starts_with("tally") && name.ends_with("-0.1.0") {
                    let _ = std::fs::remove_dir_all(&krate);
                }
            }
        }
    }
    // A packed crate's manifest has no profile of the workspace's, so cargo would verify it
    // with the default `debug = true` and compile every dependency again for that alone; with
    // the workspace's own `debug`, the dependencies the tests were built with are reused, and
    // our crates are still built from their packed files.
    let out = run(cargo(tmp.path())
        .args([
            "package",
            "--workspace",
            "--locked",
            "--allow-dirty",
            "--target-dir",
        ])
        .arg(target_dir())
        .env("CARGO_PROFILE_DEV_DEBUG", workspace_dev_debug())
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let packaged = target_dir().join("package");
    for name in [
        "tally-client",
        "tally-commands",
        "tally-server",
        "tally-shims",
        "tally-wrapper",
    ] {
        assert!(
            packaged.join(format!("{name}-0.1.0.crate")).is_file(),
            "{name}"
        );
    }
}
