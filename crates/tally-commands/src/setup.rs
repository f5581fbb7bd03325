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
//! that is not tally's, at any depth.
//!
//! Promises: a second run changes nothing; every change is one line of output. Shell files
//! ([`shell_files`]) keep every byte that is not tally's line, their mode, owner, group and hard
//! links; every one is checked before any changes, and one that setup must not change (not a
//! regular file, someone else's, read-only, holding an old block that is not whole) is named
//! with what to do, and then nothing at all is changed (exit status 1). A file setup created is
//! deleted by `--uninstall` only if nothing else has been written to it since. Only links that
//! point at a tally binary and lines carrying the marker are removed; any other entry in the
//! shims directory is left alone and named, and setup then exits with status 1. Setup writes
//! nothing in the data directory and counts nothing, so it works the same under `TALLY=off` or
//! `DO_NOT_TRACK=1`. After a change it checks the result, as `tally status` does.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::ErrorKind;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use tally_grammar::Tool;
use tally_home::{Env, Home};
use tally_process::identity::{file_stem, is_binary_name};
use tally_process::lookup::hot_binary_beside;
use tally_sys::FileId;

use crate::Io;
use crate::data_files::Inventory;
use crate::install_paths::{home_dir, install_dir, path_line, shims_dir};
use crate::shim_report::{shim_report, shim_report_with_path};

mod shell_files;

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

/// The names the shims directory holds links under: `tally` (so that `tally` runs once the
/// directory is on PATH, when the binary itself is not) and every tool's.
fn link_names() -> impl Iterator<Item = &'static str> {
    std::iter::once("tally").chain(Tool::ALL.iter().map(|tool| tool.name()))
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

/// Whether `path` is a link setup made or may replace: any link to one of `ours` (this binary
/// and the `tally-shim` beside it), or a symbolic link to a file named `tally` or `tally-shim`
/// that is a tally binary ([`is_tally_binary`]) or no longer exists (a tally binary since
/// removed, an old checkout's). A link to the user's own program that happens to have one of
/// those names is theirs.
fn is_tally_link(path: &Path, ours: &[Option<FileId>]) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    let is_ours = |id: Option<FileId>| id.is_some() && ours.contains(&id);
    if !meta.file_type().is_symlink() {
        // A hard link to one of the binaries themselves.
        return meta.is_file() && is_ours(Some(FileId::of(&meta)));
    }
    if is_ours(FileId::of_target(path)) {
        return true;
    }
    if !fs::read_link(path).is_ok_and(|to| is_binary_name(file_stem(&to))) {
        return false;
    }
    match fs::metadata(path) {
        Err(err) => err.kind() == ErrorKind::NotFound,
        Ok(target) => target.is_file() && is_tally_binary(path),
    }
}

/// Bytes every tally binary holds: the name of the variable its shims are tested with
/// (`tally_env` declares it; the shim reads it). How setup tells another copy of tally from a
/// user's program of the same name.
const TALLY_BINARY_MARK: &str = tally_home::env::TALLY_FORCE_ARG0;

/// Whether the file `path` leads to holds [`TALLY_BINARY_MARK`] (read without waiting, at most
/// 256 MiB).
fn is_tally_binary(path: &Path) -> bool {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(file) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
    else {
        return false;
    };
    let mut bytes = Vec::new();
    file.take(256 << 20).read_to_end(&mut bytes).is_ok()
        && memchr::memmem::find(&bytes, TALLY_BINARY_MARK.as_bytes()).is_some()
}

/// What one run changed, one line each, and what it had to leave alone.
#[derive(Default)]
struct Report {
    changes: Vec<String>,
    left_alone: Vec<String>,
    /// A shell file was refused: the run stopped before changing anything.
    refused: bool,
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
    if report.refused {
        let again = if args.uninstall {
            "`tally setup --uninstall` again (or remove the lines ending in `# tally shims: …` \
             yourself)"
        } else {
            "`tally setup --modify-path` again, or `tally setup` without --modify-path, which \
             edits no shell file and prints the PATH line for you to place"
        };
        writeln!(
            io.err,
            "tally setup: nothing was changed. Once the file(s) above are fixed, run {again}."
        )?;
        return Ok(ExitCode::FAILURE);
    }
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
    // Every shell file is checked before anything changes: a refusal changes nothing.
    let shell = if modify_path {
        shell_files::plan_add(&home, &line)
    } else {
        shell_files::Plan::default()
    };
    if !shell.refused.is_empty() {
        report.left_alone.extend(shell.refused);
        report.refused = true;
        return Ok(());
    }
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
    for change in shell.changes {
        report.changes.push(shell_files::apply(change)?);
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

/// What to say after setup: the PATH line or where it went, the checks, the completions.
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
    let with_line: Vec<String> = shell_files::holding_the_line(&home)
        .iter()
        .map(|file| file.display().to_string())
        .collect();
    say_path_line(out, modify_path, &line, &with_line)?;
    let new_path = check_new_shell(out, env, &dir)?;
    let line_placed = modify_path || !with_line.is_empty();
    check_this_shell(out, env, &dir, line_placed)?;
    check_install(out, env, new_path.as_deref(), &home)?;
    say_completions(out)
}

/// Where the PATH line is, or the line for the user to place.
fn say_path_line(
    out: &mut dyn Write,
    modify_path: bool,
    line: &str,
    with_line: &[String],
) -> anyhow::Result<()> {
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
    Ok(())
}

/// The check of a new shell's PATH (the shims first): which real tools the shims hand over to.
/// Returns that PATH.
fn check_new_shell(out: &mut dyn Write, env: &Env, dir: &Path) -> anyhow::Result<Option<OsString>> {
    let current = tally_home::env::var_os("PATH");
    let mut dirs = vec![dir.to_path_buf()];
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
    if future.shims_dir.as_deref() != Some(dir) {
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
    Ok(new_path)
}

/// The check of this shell's PATH. `line_placed`: the PATH line is in a shell file.
fn check_this_shell(
    out: &mut dyn Write,
    env: &Env,
    dir: &Path,
    line_placed: bool,
) -> anyhow::Result<()> {
    let now = shim_report(env);
    if now.shims_dir.as_deref() == Some(dir) && now.first_on_path {
        writeln!(out, "Check: the shims are first on PATH in this shell.")?;
    } else if now.shims_dir.as_deref() == Some(dir) {
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
            if line_placed {
                " (or run the PATH line in this one)"
            } else {
                " once the line is in your profile"
            }
        )?;
    }
    Ok(())
}

/// The checks of what is installed: `TALLY=off`, the hot-path binary, tally-server.
fn check_install(
    out: &mut dyn Write,
    env: &Env,
    new_path: Option<&OsStr>,
    home: &Path,
) -> anyhow::Result<()> {
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
        let on_path =
            new_path.and_then(|path| which::which_in("tally-server", Some(path), home).ok());
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
    Ok(())
}

/// Where the shell completions and man pages go.
fn say_completions(out: &mut dyn Write) -> anyhow::Result<()> {
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
    let shell = match home_dir(env) {
        Ok(home) => shell_files::plan_remove(&home),
        Err(_) => shell_files::Plan::default(),
    };
    if !shell.refused.is_empty() {
        report.left_alone.extend(shell.refused);
        report.refused = true;
        return Ok(());
    }
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
    for change in shell.changes {
        report.changes.push(shell_files::apply(change)?);
    }
    if let Some((home, inventory)) = data {
        purge_data(&home, &inventory, report)?;
    }
    Ok(())
}

/// The data directory `--purge` deletes and what is in it, after checking that all of it, at
/// every depth, is tally's ([`crate::data_files`]).
fn data_to_purge(env: &Env) -> anyhow::Result<Option<(Home, Inventory)>> {
    let Some(home) = Home::locate(env) else {
        return Ok(None);
    };
    let root = home.root();
    if fs::symlink_metadata(root).is_err_and(|err| err.kind() == ErrorKind::NotFound) {
        return Ok(None);
    }
    let inventory = crate::data_files::inventory(root)?;
    if !inventory.foreign.is_empty() {
        bail!(
            "not deleting {}: it holds files that are not tally's ({}); nothing was changed. \
             Move them away, or run without --purge",
            root.display(),
            inventory.some_foreign(root)
        );
    }
    Ok(Some((home, inventory)))
}

/// Deletes tally's entries in the data directory, then the directory.
fn purge_data(home: &Home, inventory: &Inventory, report: &mut Report) -> anyhow::Result<()> {
    let root = home.root();
    crate::modes::delete(&inventory.files, &inventory.dirs)?;
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
