//! `tally setup`: wires an installed `tally` binary for one user, from the binary alone (after
//! `cargo install`, or as the last step of install.sh), and `tally setup --uninstall [--purge]`
//! undoes exactly that.
//!
//! What setup makes, and all that `--uninstall` removes:
//! - the shims directory, `$TALLY_INSTALL_DIR/bin` (default `~/.local/share/tally/bin`), with a
//!   symbolic link under each tool's name ([`tally_grammar::Tool`]) to `tally-shim`, the hot-path
//!   binary installed beside this one (to this binary itself when that is missing: a partial
//!   install, which setup names), and one under `tally` to this binary. Symbolic rather than
//!   hard links, as install.sh always made them: the shims follow the binaries when `cargo
//!   install` replaces them, and a shim still knows itself by file identity through the link
//!   (`tally_process::identity`);
//! - with `--modify-path`, one marked line at the end of `~/.profile` (created if missing) and
//!   of `~/.bashrc` and `~/.zshrc` where they exist, putting the shims first on `PATH`. Without
//!   it no shell file is touched: the line is printed for the user to place.
//!
//! `--purge` also deletes the data directory, and refuses, changing nothing, if it holds anything
//! that is not tally's.
//!
//! Promises: a second run changes nothing; every change is one line of output; a shell file
//! keeps every byte that is not tally's line (one without a final newline gets none back), is
//! replaced atomically where it really is (a symlinked dotfile stays a link), and is deleted by
//! `--uninstall` only if setup created it and nothing else has been written to it since. Only
//! links that point at a tally binary and lines carrying the marker are removed; anything else
//! in the way is left alone and named, and setup then exits with status 1. Setup writes nothing
//! in the data directory and counts nothing, so it works the same under `TALLY=off` or
//! `DO_NOT_TRACK=1`. After a change it checks the result, as `tally status` does.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use tally_grammar::Tool;
use tally_home::{Env, Home};
use tally_process::identity::{FileId, file_stem, hot_binary_beside, is_binary_name};

use crate::Io;
use crate::shim_report::{shim_report, shim_report_with_path};

/// Options of `tally setup`.
#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// Also write the PATH line at the end of ~/.profile, and of ~/.bashrc and ~/.zshrc where
    /// they exist (one marked line each). Without it, setup prints the line and edits no file.
    #[arg(long, conflicts_with = "uninstall")]
    pub modify_path: bool,
    /// Remove the shims and the marked PATH lines that setup made, and nothing else.
    #[arg(long)]
    pub uninstall: bool,
    /// With --uninstall: also delete tally's data directory (refused if it holds anything that
    /// is not tally's).
    #[arg(long, requires = "uninstall")]
    pub purge: bool,
}

/// The marker at the end of the PATH line setup writes; any line containing it is setup's.
const MARK: &str = "# tally shims: `tally setup --uninstall` removes this line";
/// The marker of the line in a shell file setup created (then `--uninstall` deletes the file
/// if nothing else was written to it).
const MARK_CREATED: &str =
    "# tally shims: `tally setup --uninstall` removes this line and this file, which it created";
/// The three-line block earlier versions of install.sh wrote: removed like the marked line.
const LEGACY_BEGIN: &[u8] = b"# >>> tally shims (added by tally's install.sh";
const LEGACY_END: &[u8] = b"# <<< tally shims <<<";

/// The shell files setup edits, relative to the home directory, and whether it creates the
/// file when it is missing (`~/.profile` is read by every login shell; the others only where
/// the user has them).
const SHELL_FILES: &[(&str, bool)] = &[(".profile", true), (".bashrc", false), (".zshrc", false)];

/// The names the shims directory holds links under: `tally` (so that `tally` runs once the
/// directory is on PATH, when the binary itself is not) and every tool's.
fn link_names() -> impl Iterator<Item = &'static str> {
    std::iter::once("tally").chain(Tool::ALL.iter().map(|tool| tool.name()))
}

/// The home directory, which setup needs.
fn home_dir(env: &Env) -> anyhow::Result<PathBuf> {
    env.get(tally_home::env::HOME)
        .map(PathBuf::from)
        .filter(|home| home.is_absolute())
        .context("HOME is not set to an absolute path; tally setup needs a home directory")
}

/// Where setup installs: `$TALLY_INSTALL_DIR`, else `$HOME/.local/share/tally` (install.sh's
/// directory too, so that both agree).
pub(crate) fn install_dir(env: &Env) -> anyhow::Result<PathBuf> {
    if let Some(dir) = env
        .get(tally_home::env::TALLY_INSTALL_DIR)
        .filter(|dir| !dir.is_empty())
    {
        let dir = PathBuf::from(dir);
        if !dir.is_absolute() {
            bail!(
                "TALLY_INSTALL_DIR must be an absolute path, not {}",
                dir.display()
            );
        }
        return Ok(dir);
    }
    Ok(home_dir(env)?.join(".local/share/tally"))
}

/// The shims directory, `<install dir>/bin`.
pub(crate) fn shims_dir(env: &Env) -> anyhow::Result<PathBuf> {
    Ok(install_dir(env)?.join("bin"))
}

/// Setup's shims directory, if it holds one of tally's binaries (`is_ours`) under a tool's name
/// (what `tally status` points at when the shims are on no PATH at all).
pub(crate) fn installed_shims_dir(env: &Env, is_ours: &dyn Fn(FileId) -> bool) -> Option<PathBuf> {
    let dir = shims_dir(env).ok()?;
    Tool::ALL
        .iter()
        .any(|tool| FileId::of_target(&dir.join(tool.name())).is_some_and(is_ours))
        .then_some(dir)
}

/// The shell line that puts `dir` first on PATH, for sh, bash and zsh:
/// `export PATH="$HOME/.local/share/tally/bin:$PATH"` (the home directory spelled `$HOME`, so
/// the line survives a renamed home).
pub(crate) fn path_line(dir: &Path, env: &Env) -> anyhow::Result<String> {
    let shown = match home_dir(env).ok().and_then(|home| {
        dir.strip_prefix(&home)
            .ok()
            .map(|rest| rest.to_string_lossy().into_owned())
    }) {
        Some(rest) if rest.is_empty() => "$HOME".to_string(),
        Some(rest) => format!("$HOME/{}", double_quoted(&rest)),
        None => double_quoted(&dir.to_string_lossy()),
    };
    let text = dir.to_str().with_context(|| {
        format!(
            "the shims directory {} is not UTF-8; set TALLY_INSTALL_DIR to a plain path",
            dir.display()
        )
    })?;
    if text.contains(['\n', '\r', ':']) {
        bail!(
            "the shims directory {text:?} has a newline or a colon, which a PATH cannot hold; \
             set TALLY_INSTALL_DIR to a plain path"
        );
    }
    Ok(format!("export PATH=\"{shown}:$PATH\""))
}

/// `text` escaped for the inside of a double-quoted shell word.
fn double_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The running binary, to link the shims to: its real path (links resolved), which must be
/// named `tally` (a shim's `RUSTC_WRAPPER` and `tally` itself are found by that name).
fn this_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot tell where this tally binary is")?;
    let exe = fs::canonicalize(&exe).unwrap_or(exe);
    if file_stem(&exe) != Some("tally") {
        bail!(
            "tally setup links the shims to the binary it runs as, which must be named `tally`; \
             this one is {}",
            exe.display()
        );
    }
    Ok(exe)
}

/// Whether `path` is a link setup made or may replace: a symbolic link to a file named `tally`
/// or `tally-shim` (a tally binary, even one since removed), or any link to one of `ours` (this
/// binary and the `tally-shim` beside it).
fn is_tally_link(path: &Path, ours: &[Option<FileId>]) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    let is_ours = |id: Option<FileId>| id.is_some() && ours.contains(&id);
    if meta.file_type().is_symlink() {
        let named_tally = fs::read_link(path).is_ok_and(|to| is_binary_name(file_stem(&to)));
        named_tally || is_ours(FileId::of_target(path))
    } else {
        // A hard link to one of the binaries themselves.
        meta.is_file() && is_ours(Some(FileId::of(&meta)))
    }
}

/// What one run changed, one line each, and what it had to leave alone.
#[derive(Default)]
struct Report {
    changes: Vec<String>,
    left_alone: Vec<String>,
}

/// `tally setup`.
pub(crate) fn run(args: &SetupArgs, env: &Env, io: &mut Io<'_>) -> anyhow::Result<ExitCode> {
    let mut report = Report::default();
    let result = if args.uninstall {
        uninstall(args.purge, env, &mut report)
    } else {
        setup(args.modify_path, env, &mut report)
    };
    for line in &report.changes {
        writeln!(io.out, "{line}")?;
    }
    for line in &report.left_alone {
        writeln!(io.err, "tally setup: {line}")?;
    }
    result?;
    if args.uninstall {
        if report.changes.is_empty() {
            writeln!(
                io.out,
                "Nothing to remove: tally is not set up in {}.",
                shims_dir(env)?.display()
            )?;
        }
    } else {
        after_setup(args.modify_path, env, &report, io)?;
    }
    Ok(if report.left_alone.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The shims directory and its links, and with `modify_path` the PATH lines.
fn setup(modify_path: bool, env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let exe = this_binary()?;
    // The tools' links go to `tally-shim`; `tally`'s to this binary.
    let hot = hot_binary_beside(&exe);
    let ours = [
        FileId::of_target(&exe),
        hot.as_deref().and_then(FileId::of_target),
    ];
    let dir = shims_dir(env)?;
    let line = path_line(&dir, env)?;
    let home = home_dir(env)?;
    if !dir.is_dir() {
        fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the shims directory {}", dir.display()))?;
        report
            .changes
            .push(format!("Created the shims directory {}.", dir.display()));
    }
    for name in link_names() {
        let link = dir.join(name);
        let exe = match &hot {
            Some(hot) if name != "tally" => hot.clone(),
            _ => exe.clone(),
        };
        if link == exe {
            // The binary itself lives in the shims directory under its own name.
            continue;
        }
        match fs::symlink_metadata(&link) {
            Err(err) if err.kind() == ErrorKind::NotFound => {
                std::os::unix::fs::symlink(&exe, &link)
                    .with_context(|| format!("cannot create the link {}", link.display()))?;
                report
                    .changes
                    .push(format!("Linked {} to {}.", link.display(), exe.display()));
            }
            Err(err) => {
                return Err(err).with_context(|| format!("cannot look at {}", link.display()));
            }
            Ok(meta) => {
                let current = meta
                    .file_type()
                    .is_symlink()
                    .then(|| fs::read_link(&link).ok())
                    .flatten();
                if current.as_deref() == Some(exe.as_path()) {
                    continue;
                }
                if !is_tally_link(&link, &ours) {
                    report.left_alone.push(format!(
                        "left {} alone: it is not a link to tally (move it away and run \
                         `tally setup` again)",
                        link.display()
                    ));
                    continue;
                }
                replace_link(&exe, &link)?;
                report.changes.push(format!(
                    "Linked {} to {} (it was {}).",
                    link.display(),
                    exe.display(),
                    current.map_or_else(
                        || "a hard link".to_string(),
                        |old| format!("a link to {}", old.display())
                    )
                ));
            }
        }
    }
    if modify_path {
        for (name, create) in SHELL_FILES {
            let file = home.join(name);
            let exists = fs::symlink_metadata(&file).is_ok();
            if exists || *create {
                add_path_line(&file, &line, report)?;
            }
        }
    }
    Ok(())
}

/// Makes `link` a symbolic link to `exe` in one step (a shim running through the old link
/// never sees the name missing).
fn replace_link(exe: &Path, link: &Path) -> anyhow::Result<()> {
    let dir = link.parent().context("a link without a directory")?;
    let tmp = dir.join(format!(
        ".{}.tally-setup.{}",
        link.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(exe, &tmp)
        .with_context(|| format!("cannot create a link in {}", dir.display()))?;
    fs::rename(&tmp, link).with_context(|| {
        let _ = fs::remove_file(&tmp);
        format!("cannot replace {}", link.display())
    })
}

/// Puts the marked PATH line at the end of `file` (creating it if missing): the file's other
/// lines stay as they are, an earlier marked line (or install.sh's old block) goes.
fn add_path_line(file: &Path, line: &str, report: &mut Report) -> anyhow::Result<()> {
    let existing = match fs::read(file) {
        Ok(bytes) => Some(bytes),
        Err(err) if err.kind() == ErrorKind::NotFound => None,
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", file.display())),
    };
    let (wanted, what) = match &existing {
        None => (
            format!("{line}  {MARK_CREATED}\n").into_bytes(),
            format!("Created {} with the PATH line.", file.display()),
        ),
        Some(old) => {
            let stripped = without_ours(old);
            let wanted = if stripped.created && stripped.text.is_empty() {
                format!("{line}  {MARK_CREATED}\n").into_bytes()
            } else {
                with_line(&stripped.text, &format!("{line}  {MARK}"))
            };
            let what = if stripped.removed == 0 {
                format!("Added the PATH line to the end of {}.", file.display())
            } else {
                format!("Moved the PATH line to the end of {}.", file.display())
            };
            (wanted, what)
        }
    };
    if existing.as_deref() == Some(wanted.as_slice()) {
        return Ok(());
    }
    replace_file(file, &wanted)?;
    report.changes.push(what);
    Ok(())
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

/// `text` without every line that carries [`MARK`] and without install.sh's old block, every
/// other byte kept. A marked line that ends the file without a newline was written after a
/// newline setup added (the file had no final one): that newline goes with it.
fn without_ours(text: &[u8]) -> Stripped {
    let mut out = Vec::with_capacity(text.len());
    let mut removed = 0;
    let mut created = false;
    let mut in_block = false;
    for line in text.split_inclusive(|b| *b == b'\n') {
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        if in_block {
            in_block = bare != LEGACY_END;
            continue;
        }
        if bare.starts_with(LEGACY_BEGIN) {
            in_block = true;
            removed += 1;
            continue;
        }
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
    Stripped {
        text: out,
        removed,
        created,
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

/// Replaces the contents of `path` atomically, where the file really is (a symlinked dotfile is
/// written through and stays a link), keeping its permissions.
fn replace_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let target = match fs::canonicalize(path) {
        Ok(target) => target,
        Err(err) if err.kind() == ErrorKind::NotFound => {
            if fs::symlink_metadata(path).is_ok() {
                bail!(
                    "{} is a link to a file that does not exist; fix or remove it, then run \
                     `tally setup` again",
                    path.display()
                );
            }
            path.to_path_buf()
        }
        Err(err) => return Err(err).with_context(|| format!("cannot resolve {}", path.display())),
    };
    let dir = target
        .parent()
        .with_context(|| format!("{} has no directory", target.display()))?;
    let mode = fs::metadata(&target)
        .map(|meta| meta.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    let mut tmp = tempfile::Builder::new()
        .prefix(".tally-setup.")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(contents)
        .and_then(|()| tmp.as_file().sync_all())
        .and_then(|()| {
            tmp.as_file()
                .set_permissions(fs::Permissions::from_mode(mode))
        })
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.persist(&target)
        .with_context(|| format!("cannot replace {}", target.display()))?;
    Ok(())
}

/// What to say after setup: the PATH line or where it went, the check, the completions.
fn after_setup(
    modify_path: bool,
    env: &Env,
    report: &Report,
    io: &mut Io<'_>,
) -> anyhow::Result<()> {
    let out = &mut *io.out;
    let dir = shims_dir(env)?;
    let line = path_line(&dir, env)?;
    let home = home_dir(env)?;
    if report.changes.is_empty() {
        writeln!(
            out,
            "Nothing to change: tally is set up in {}.",
            dir.display()
        )?;
    }
    let with_line: Vec<String> = SHELL_FILES
        .iter()
        .map(|(name, _)| home.join(name))
        .filter(|file| fs::read(file).is_ok_and(|text| without_ours(&text).removed > 0))
        .map(|file| file.display().to_string())
        .collect();
    if modify_path {
        writeln!(
            out,
            "The PATH line is in {}; it puts the shims first on PATH in a new shell (or run it \
             in this one):",
            with_line.join(", ")
        )?;
        writeln!(out, "\n    {line}\n")?;
    } else if with_line.is_empty() {
        writeln!(
            out,
            "To put the shims first on PATH, make this the last line of your shell profile \
             (~/.profile, ~/.bashrc, ~/.zshrc), or run `tally setup --modify-path`:"
        )?;
        writeln!(out, "\n    {line}\n")?;
    } else {
        writeln!(out, "The PATH line is in {}.", with_line.join(", "))?;
    }

    // The check: a new shell's PATH (the shims first), and this shell's.
    let current = tally_home::env::var_os("PATH");
    let mut dirs = vec![dir.clone()];
    dirs.extend(current.iter().flat_map(std::env::split_paths));
    let new_path = std::env::join_paths(dirs).ok();
    let future = shim_report_with_path(env, new_path.clone());
    let found: Vec<String> = future
        .tools
        .iter()
        .filter_map(|t| {
            t.real
                .as_ref()
                .map(|real| format!("{} ({})", t.tool, real.display()))
        })
        .collect();
    let missing: Vec<&str> = future
        .tools
        .iter()
        .filter(|t| t.real.is_none())
        .map(|t| t.tool)
        .collect();
    if future.shims_dir.as_deref() != Some(dir.as_path()) {
        writeln!(
            out,
            "Check: the links in {} do not run this tally; see `tally status`.",
            dir.display()
        )?;
    } else if !found.is_empty() {
        writeln!(out, "Check: the shims hand over to {}.", found.join(", "))?;
    }
    if !missing.is_empty() {
        writeln!(
            out,
            "Check: no real {} on PATH; those shims say so (exit status 127) until one is \
             installed.",
            missing.join(", ")
        )?;
    }
    let now = shim_report(env);
    if now.shims_dir.as_deref() == Some(dir.as_path()) && now.first_on_path {
        writeln!(out, "Check: the shims are first on PATH in this shell.")?;
    } else if now.shims_dir.as_deref() == Some(dir.as_path()) {
        let before: Vec<String> = now
            .tools
            .iter()
            .filter_map(|t| t.shadowed_by.as_ref().map(|p| p.display().to_string()))
            .collect();
        writeln!(
            out,
            "Check: in this shell {} come(s) before the shims on PATH; a new shell with the \
             PATH line last in its profile puts them first.",
            before.join(", ")
        )?;
    } else {
        writeln!(
            out,
            "Check: the shims are not on this shell's PATH yet; open a new shell{}.",
            if modify_path || !with_line.is_empty() {
                " (or run the PATH line in this one)"
            } else {
                " once the line is in your profile"
            }
        )?;
    }
    if env.forces_off() {
        writeln!(
            out,
            "Check: TALLY=off or DO_NOT_TRACK is set here: the shims run the tools and count \
             nothing while it is."
        )?;
    }
    if let Ok(exe) = this_binary()
        && hot_binary_beside(&exe).is_none()
    {
        writeln!(
            out,
            "Check: there is no {hot} beside {tally} (a partial install), so the shims run \
             {tally} itself: they count the same, but every tool run starts the larger binary \
             (bench/README.md). Install the client again, which installs both binaries \
             (`cargo install --locked tally-client`, or ./install.sh in a checkout of tally), \
             then run `tally setup` again.",
            hot = tally_process::identity::HOT_BINARY,
            tally = exe.display(),
        )?;
    }
    if let Ok(exe) = this_binary() {
        let beside = exe.with_file_name("tally-server");
        let on_path = new_path
            .as_ref()
            .and_then(|path| which::which_in("tally-server", Some(path), &home).ok());
        if tally_process::lookup::executable(&beside).is_none() && on_path.is_none() {
            writeln!(
                out,
                "Check: tally-server (the collector, which `tally demo` runs) is not installed \
                 beside {}: `cargo install --locked --path crates/tally-server` in a checkout \
                 of tally installs it.",
                exe.display()
            )?;
        }
    }
    writeln!(
        out,
        "Completions: tally completions bash > ~/.local/share/bash-completion/completions/tally; \
         zsh: tally completions zsh > ~/.zfunc/_tally (with fpath+=(~/.zfunc) before compinit in \
         ~/.zshrc); fish: tally completions fish > ~/.config/fish/completions/tally.fish; \
         likewise tally-server completions."
    )?;
    writeln!(
        out,
        "Man pages: tally man --dir ~/.local/share/man/man1 and tally-server man --dir \
         ~/.local/share/man/man1 (then `man tally`), or read one with `tally man | man -l -`."
    )?;
    Ok(())
}

/// `tally setup --uninstall [--purge]`.
fn uninstall(purge: bool, env: &Env, report: &mut Report) -> anyhow::Result<()> {
    // Refused before anything changes.
    let data = if purge { data_to_purge(env)? } else { None };
    let install = install_dir(env)?;
    let dir = install.join("bin");
    let me = tally_process::identity::self_identity();
    let hot = this_binary()
        .ok()
        .and_then(|exe| hot_binary_beside(&exe))
        .and_then(|hot| FileId::of_target(&hot));
    for name in link_names() {
        let link = dir.join(name);
        if is_tally_link(&link, &[me, hot]) {
            fs::remove_file(&link).with_context(|| format!("cannot remove {}", link.display()))?;
            report.changes.push(format!("Removed {}.", link.display()));
        }
    }
    for dir in [&dir, &install] {
        match fs::remove_dir(dir) {
            Ok(()) => report.changes.push(format!("Removed {}.", dir.display())),
            Err(err) if err.kind() == ErrorKind::NotFound => {}
            // Not empty: it holds something setup did not make (install.sh's binary, which
            // install.sh removes itself, or the user's).
            Err(_) => {}
        }
    }
    if let Ok(home) = home_dir(env) {
        for (name, _) in SHELL_FILES {
            remove_path_line(&home.join(name), report)?;
        }
    }
    if let Some(home) = data {
        purge_data(&home, report)?;
    }
    Ok(())
}

/// Removes tally's lines from `file`, or the file itself if setup created it and it holds
/// nothing else.
fn remove_path_line(file: &Path, report: &mut Report) -> anyhow::Result<()> {
    let text = match fs::read(file) {
        Ok(text) => text,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", file.display())),
    };
    let stripped = without_ours(&text);
    if stripped.removed == 0 {
        return Ok(());
    }
    let is_plain_file = fs::symlink_metadata(file).is_ok_and(|m| m.is_file());
    if stripped.created && stripped.text.is_empty() && is_plain_file {
        fs::remove_file(file).with_context(|| format!("cannot remove {}", file.display()))?;
        report.changes.push(format!(
            "Deleted {} (tally setup had created it for the PATH line).",
            file.display()
        ));
    } else {
        replace_file(file, &stripped.text)?;
        report
            .changes
            .push(format!("Removed the PATH line from {}.", file.display()));
    }
    Ok(())
}

/// The data directory `--purge` deletes, after checking that everything in it is tally's.
fn data_to_purge(env: &Env) -> anyhow::Result<Option<Home>> {
    let Some(home) = Home::locate(env) else {
        return Ok(None);
    };
    let root = home.root();
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", root.display())),
    };
    let ours = crate::modes::tally_entries(root)?;
    let mut foreign: Vec<String> = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if !ours.contains(&path) {
            foreign.push(
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
    }
    if !foreign.is_empty() {
        foreign.sort();
        foreign.truncate(3);
        bail!(
            "not deleting {}: it holds files that are not tally's ({}{}); nothing was changed. \
             Move them away, or run without --purge",
            root.display(),
            foreign.join(", "),
            if foreign.len() == 3 { ", ..." } else { "" }
        );
    }
    Ok(Some(home))
}

/// Deletes tally's entries in the data directory, then the directory.
fn purge_data(home: &Home, report: &mut Report) -> anyhow::Result<()> {
    let root = home.root();
    for path in crate::modes::tally_entries(root)? {
        let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        let result = if is_dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match result {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err).with_context(|| format!("cannot delete {}", path.display()));
            }
        }
    }
    let is_link = fs::symlink_metadata(root).is_ok_and(|m| m.file_type().is_symlink());
    if is_link {
        report.changes.push(format!(
            "Deleted tally's data in {} (the link itself stays).",
            root.display()
        ));
    } else {
        fs::remove_dir(root).with_context(|| format!("cannot remove {}", root.display()))?;
        report.changes.push(format!(
            "Deleted tally's data directory {}.",
            root.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn env_with(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        )
    }

    fn marked(line: &str) -> String {
        format!("{line}  {MARK}")
    }

    #[test]
    fn the_line_spells_home_and_quotes_the_rest() {
        let env = env_with(&[("HOME", "/home/a")]);
        assert_eq!(
            path_line(Path::new("/home/a/.local/share/tally/bin"), &env).unwrap(),
            r#"export PATH="$HOME/.local/share/tally/bin:$PATH""#
        );
        assert_eq!(
            path_line(Path::new("/opt/my $dir/\"x`\\/bin"), &env).unwrap(),
            r#"export PATH="/opt/my \$dir/\"x\`\\/bin:$PATH""#
        );
        assert!(path_line(Path::new("/opt/a:b/bin"), &env).is_err());
        assert!(path_line(Path::new("/opt/a\nb/bin"), &env).is_err());
    }

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
            let stripped = without_ours(&added);
            assert_eq!(
                stripped.text,
                original,
                "{:?}",
                String::from_utf8_lossy(original)
            );
            assert_eq!(stripped.removed, 1);
            // Adding again to what was added changes nothing.
            assert_eq!(with_line(&without_ours(&added).text, &line), added);
        }
    }

    #[test]
    fn every_marked_line_and_the_old_block_go_and_nothing_else() {
        let text = format!(
            "a\n{}\nb\n# >>> tally shims (added by tally's install.sh; remove with ./install.sh --uninstall) >>>\nexport PATH=\"/h/bin:$PATH\"\n# <<< tally shims <<<\nc\n{}\n",
            marked("export PATH=old"),
            marked("export PATH=new")
        );
        let stripped = without_ours(text.as_bytes());
        assert_eq!(String::from_utf8(stripped.text).unwrap(), "a\nb\nc\n");
        assert_eq!(stripped.removed, 3);
        assert!(!stripped.created);
        let created = without_ours(format!("x  {MARK_CREATED}\n").as_bytes());
        assert!(created.created && created.text.is_empty());
    }
}
