//! Handing over to the real tool, shared by the shim and the wrapper: the tool's environment
//! (the process's own, in order, with tally's few changes) and the bare `execvpe`.
//!
//! Promises: the tool gets the argument bytes, the environment entries (minus the removed
//! ones, with the set ones in place) in their order, and every inherited signal mask, signal
//! disposition and descriptor, exactly; nothing here allocates a copy of the environment.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::path::Path;

use tally_home::env::{CStringBlock, ProcessEnv, entry_has_name, split_entry};

/// Environment changes for the `exec`.
#[derive(Debug, Default)]
pub struct EnvChanges {
    pub set: Vec<(OsString, OsString)>,
    pub remove: Vec<OsString>,
}

/// Replaces this process with `program` (`argv[0]` `argv0`, then `args`), with the environment
/// `env` (the process's own, as captured) changed by `changes`. Returns only on failure, with
/// a shell's status (127 not found, 126 other).
///
/// A bare `execvpe`, not `std::process::Command`: Command resets the signal mask and SIGPIPE's
/// disposition before it execs and sorts the environment, so a tool started from a parent that
/// ignores SIGPIPE or blocks a signal would run differently behind tally. Here the tool
/// inherits both exactly, and the environment keeps its order (a changed variable stays where
/// it was; a new one goes last). Like a shell (and `execvp`), a program name without a `/` is
/// looked up on `PATH`, and a file that is not a binary is run by `/bin/sh`.
pub fn exec(
    program: &Path,
    argv0: &OsStr,
    args: &[OsString],
    env: &ProcessEnv,
    changes: &EnvChanges,
) -> i32 {
    let err = match exec_inner(program, argv0, args, env, changes) {
        Ok(never) => match never {},
        Err(err) => err,
    };
    eprintln!("tally: cannot run {}: {err}", program.display());
    if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

fn exec_inner(
    program: &Path,
    argv0: &OsStr,
    args: &[OsString],
    env: &ProcessEnv,
    changes: &EnvChanges,
) -> std::io::Result<std::convert::Infallible> {
    use std::os::unix::ffi::OsStrExt;
    let program = CString::new(program.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut argv = CStringBlock::with_capacity(
        argv0.len() + args.iter().map(|a| a.len() + 1).sum::<usize>() + 1,
        args.len() + 1,
    );
    argv.push(&[argv0.as_bytes()]);
    for arg in args {
        argv.push(&[arg.as_bytes()]);
    }
    let argv = argv.as_cstrs()?;
    let set = changes.set_entries();
    let envp = environment_with(env.block(), &set, &changes.remove)?;
    #[cfg(target_os = "linux")]
    let result = nix::unistd::execvpe(&program, &argv, &envp);
    // Elsewhere without the PATH search: the shim always has an absolute path.
    #[cfg(not(target_os = "linux"))]
    let result = nix::unistd::execve(&program, &argv, &envp);
    result.map_err(|errno| std::io::Error::from_raw_os_error(errno as i32))
}

/// The environment for the tool: the entries of `current` (the process's, as captured) in
/// their order, without the variables named in `remove`, with the `NAME=VALUE` entries of
/// `set` (in place of the variable's first entry when it exists, at the end otherwise). Every other entry goes through
/// byte for byte, even one without a `=`.
///
/// Kept entries are borrowed from `current`, not copied: the environment is most of what the
/// shim holds in memory, and a copy of it spread the heap over one more fresh page, a page fault
/// on every run. `set` is usually [`EnvChanges::set_entries`]. An entry no C string can hold
/// (a NUL inside) is `InvalidInput`.
pub fn environment_with<'a>(
    current: &'a CStringBlock,
    set: &'a CStringBlock,
    remove: &[OsString],
) -> std::io::Result<Vec<&'a CStr>> {
    use std::os::unix::ffi::OsStrExt;
    let set = set.as_cstrs()?;
    // Each new entry's name, from the entry itself.
    let set_names: Vec<&[u8]> = set
        .iter()
        .map(|e| split_entry(e.to_bytes()).map_or(&[][..], |(k, _)| k.as_bytes()))
        .collect();
    let mut out = Vec::with_capacity(current.len() + set.len());
    // The new entries still to place, by index; each leaves this list where it is first
    // written.
    let mut pending: Vec<usize> = (0..set.len()).collect();
    // Each entry is matched against the few changed names directly (`NAME=` at its start)
    // rather than split at its `=` first: the environment has dozens of entries and the shim
    // builds this on every run.
    let named = |entry: &[u8], name: &[u8]| entry_has_name(entry, name);
    for entry in current.as_cstrs_iter() {
        let entry = entry?;
        let bytes = entry.to_bytes();
        if set_names.iter().any(|k| named(bytes, k)) {
            // In place, once: a second entry for the same variable goes.
            if let Some(at) = pending.iter().position(|&i| named(bytes, set_names[i])) {
                out.push(set[pending.remove(at)]);
            }
        } else if !remove.iter().any(|k| named(bytes, k.as_bytes())) {
            out.push(entry);
        }
    }
    out.extend(pending.into_iter().map(|i| set[i]));
    Ok(out)
}

impl EnvChanges {
    /// `KEY=VALUE` for each variable to set, in order: the new entries [`environment_with`]
    /// hands the tool.
    pub fn set_entries(&self) -> CStringBlock {
        use std::os::unix::ffi::OsStrExt;
        let bytes = self.set.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        let mut block = CStringBlock::with_capacity(bytes, self.set.len());
        for (key, value) in &self.set {
            block.push(&[key.as_bytes(), b"=", value.as_bytes()]);
        }
        block
    }
}

/// A panic inside tally must not print anything: the tool's stderr must be what it would be
/// without tally. The panic is caught and the tool runs.
pub fn silence_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_keeps_its_order_and_applies_changes_in_place() {
        // The tool's environment as byte strings (without their NULs).
        fn tool_env(current: &CStringBlock, changes: &EnvChanges) -> Vec<Vec<u8>> {
            let set = changes.set_entries();
            environment_with(current, &set, &changes.remove)
                .unwrap()
                .iter()
                .map(|e| e.to_bytes().to_vec())
                .collect()
        }
        let current = CStringBlock::from_nul_terminated(
            b"A=1\0TALLY_FORCE_ARG0=rustc\0B=2\0NO_EQUALS_SIGN\0C=3\0B=dup\0".to_vec(),
        );
        let changes = EnvChanges {
            set: vec![("B".into(), "new".into()), ("D".into(), "4".into())],
            remove: vec!["TALLY_FORCE_ARG0".into(), "C".into(), "D".into()],
        };
        assert_eq!(
            tool_env(&current, &changes),
            [&b"A=1"[..], b"B=new", b"NO_EQUALS_SIGN", b"D=4"]
        );
        // Names are whole names: `B` is not `BB`, and an entry named `=B` is not `B`.
        let current = CStringBlock::from_nul_terminated(b"BB=1\0=B=2\0B\0B=3".to_vec());
        let changes = EnvChanges {
            set: vec![("B".into(), "new".into())],
            remove: vec![],
        };
        assert_eq!(
            tool_env(&current, &changes),
            [&b"BB=1"[..], b"=B=2", b"B", b"B=new"]
        );
        // A value no C string can hold is refused, not cut short; so is such an entry of the
        // current environment.
        let changes = EnvChanges {
            set: vec![("BAD".into(), "a\0b".into())],
            remove: vec![],
        };
        let set = changes.set_entries();
        assert_eq!(
            environment_with(&CStringBlock::default(), &set, &changes.remove)
                .unwrap_err()
                .kind(),
            std::io::ErrorKind::InvalidInput
        );
        let mut current = CStringBlock::default();
        current.push(&[b"A=1\0B=2"]);
        let set = CStringBlock::default();
        assert_eq!(
            environment_with(&current, &set, &[]).unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
        assert_eq!(CStringBlock::default().entries().count(), 0);
        // No changes: the environment as it was, duplicates and all, borrowed, not copied.
        let current = CStringBlock::from_nul_terminated(b"Z=1\0A=2\0Z=3".to_vec());
        assert_eq!(
            tool_env(&current, &EnvChanges::default()),
            [&b"Z=1"[..], b"A=2", b"Z=3"]
        );
        let set = CStringBlock::default();
        let borrowed = environment_with(&current, &set, &[]).unwrap();
        let kept = current.as_cstrs().unwrap();
        assert!(
            borrowed
                .iter()
                .zip(&kept)
                .all(|(a, b)| std::ptr::eq(a.as_ptr(), b.as_ptr()))
        );
    }
}
