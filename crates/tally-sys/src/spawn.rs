//! Starting a child process that inherits what this process inherited, for the
//! `RUSTC_WRAPPER` that waits for the compiler instead of `exec`ing it.
//!
//! This has nothing to do with counter files; it lives here because this is tally's one crate
//! with `unsafe` code. `std::process::Command` cannot be used for the compiler: before its
//! `exec` it empties the signal mask, sets SIGPIPE back to its default and sorts the
//! environment, so a compiler started from a parent that blocks a signal or ignores SIGPIPE
//! would run differently behind tally. [`spawn`] is a plain `fork` and `execve`/`execvpe`
//! with the few changes the caller names and nothing else.
//!
//! Promises of [`spawn`]:
//! - The child gets the argument and environment vectors as given, every descriptor this
//!   process has that is not close-on-exec (cargo's jobserver), the signal mask this thread
//!   had, and every signal disposition this process inherited: the signals the caller has
//!   caught meanwhile are named in [`Spawn::default_signals`] (back to the default before the
//!   `exec`, which the `exec` would also do) and [`Spawn::ignored_signals`] (back to ignored).
//! - All signals are blocked from the `fork` until the child has reset its dispositions, so a
//!   signal meant for the child is never taken by the parent's handlers in the child.
//! - On Linux, with [`Spawn::parent_death_signal`], the child gets that signal when this
//!   process dies (`PR_SET_PDEATHSIG`), also when it died before the child could ask for it.
//! - An `exec` that fails is an `Err` with its `errno`, reported through a close-on-exec pipe,
//!   and the child is reaped; a started child is the caller's to wait for.
//! - Between `fork` and `exec` the child calls only async-signal-safe functions and allocates
//!   nothing.

use std::ffi::{CStr, c_char, c_int};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// What to start.
pub struct Spawn<'a> {
    /// The program: a path, or with [`Spawn::search_path`] a name looked up on `PATH`.
    pub program: &'a CStr,
    /// The argument vector, `argv[0]` included.
    pub argv: &'a [&'a CStr],
    /// The environment, `NAME=VALUE` entries in order.
    pub envp: &'a [&'a CStr],
    /// Look a name without `/` up on the `PATH` of `envp`, as `execvpe` does (and run a file
    /// that is not a binary with `/bin/sh`). Where `execvpe` is missing, a plain `execve`.
    pub search_path: bool,
    /// Becomes the child's descriptor 2 (standard error); `None` keeps the inherited one.
    pub stderr: Option<BorrowedFd<'a>>,
    /// Signals this process has handlers for that it inherited at their default action.
    pub default_signals: &'a [c_int],
    /// Signals this process inherited ignored and has since caught: ignored again in the child.
    pub ignored_signals: &'a [c_int],
    /// Linux: the signal the child gets when this thread dies. Ignored elsewhere.
    pub parent_death_signal: Option<c_int>,
}

/// `strings` as the null-terminated array of pointers `execve` takes (before the `fork`: the
/// child must not allocate).
fn null_terminated(strings: &[&CStr]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Starts the child and returns its process ID once its `exec` succeeded.
pub fn spawn(spec: &Spawn<'_>) -> io::Result<libc::pid_t> {
    let argv = null_terminated(spec.argv);
    let envp = null_terminated(spec.envp);
    let (error_read, error_write) = cloexec_pipe()?;

    // SAFETY: an all-zero `sigset_t` is a valid value to hand to `sigfillset`, which
    // initialises it.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `pthread_sigmask` writes the old mask into it.
    let mut old_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `all` is a live, writable `sigset_t`.
    unsafe { libc::sigfillset(&mut all) };
    // SAFETY: both pointers are to live `sigset_t`s; the call only changes this thread's mask.
    let blocked = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old_mask) };
    if blocked != 0 {
        return Err(io::Error::from_raw_os_error(blocked));
    }
    // SAFETY: `getpid` has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the child only runs `child_after_fork`, which calls async-signal-safe functions
    // on memory prepared before the fork (no allocation, no lock), then `exec`s or `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: this is the child of the fork above; every pointer was built before it and
        // stays valid (the child has a copy of this whole address space).
        unsafe {
            child_after_fork(
                spec,
                &argv,
                &envp,
                &old_mask,
                parent,
                error_write.as_raw_fd(),
            )
        }
    }
    let fork_error = io::Error::last_os_error();
    // SAFETY: `old_mask` was filled by the call above; restoring it only changes this thread.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut()) };
    drop(error_write);
    if pid < 0 {
        return Err(fork_error);
    }
    let mut errno = [0u8; 4];
    let mut got = 0;
    while got < errno.len() {
        // SAFETY: reads at most the rest of `errno`, a live buffer, from a descriptor owned here.
        let n = unsafe {
            libc::read(
                error_read.as_raw_fd(),
                errno[got..].as_mut_ptr().cast(),
                errno.len() - got,
            )
        };
        match n {
            0 => break,
            n if n > 0 => got += n as usize,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => break,
        }
    }
    if got == 0 {
        // The pipe closed on `exec`: the program runs.
        return Ok(pid);
    }
    wait_quietly(pid);
    if got == errno.len() {
        Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)))
    } else {
        Err(io::Error::other(
            "the child reported a truncated exec error",
        ))
    }
}

/// Reaps `pid` (a child that failed to `exec`), ignoring how it ended.
fn wait_quietly(pid: libc::pid_t) {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a live `c_int`; `pid` is this process's child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// A pipe whose both ends are close-on-exec.
fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [c_int; 2] = [-1, -1];
    // SAFETY: `fds` has room for the two descriptors `pipe2` writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `pipe2` succeeded: both are open descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The child's side of [`spawn`]: dispositions, parent-death signal, standard error, mask,
/// `exec`; on failure, `errno` down `error_fd` and `_exit(127)`.
///
/// # Safety
///
/// Only to be called in the child of a `fork`, with every signal blocked, `argv` and `envp`
/// null-terminated arrays of pointers to NUL-terminated strings that live as long as the call,
/// `old_mask` the mask to restore and `error_fd` the write end of a close-on-exec pipe.
unsafe fn child_after_fork(
    spec: &Spawn<'_>,
    argv: &[*const c_char],
    envp: &[*const c_char],
    old_mask: &libc::sigset_t,
    parent: libc::pid_t,
    error_fd: RawFd,
) -> ! {
    for (signals, action) in [
        (spec.default_signals, libc::SIG_DFL),
        (spec.ignored_signals, libc::SIG_IGN),
    ] {
        for &signal in signals {
            // SAFETY: an all-zero `sigaction` is valid (empty mask, no flags); `sigaction` is
            // async-signal-safe and reads only the struct given.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = action;
                libc::sigaction(signal, &sa, std::ptr::null_mut());
            }
        }
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(signal) = spec.parent_death_signal {
        // SAFETY: `prctl(PR_SET_PDEATHSIG)` and `getppid` are async-signal-safe system calls.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0);
            // The parent died before the request took effect: nobody waits for this child.
            if libc::getppid() != parent {
                libc::_exit(127);
            }
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = parent;
    if let Some(fd) = spec.stderr {
        let fd = fd.as_raw_fd();
        if fd != libc::STDERR_FILENO {
            // SAFETY: `dup2` is async-signal-safe; both are descriptors of this process.
            while unsafe { libc::dup2(fd, libc::STDERR_FILENO) } < 0 {
                if errno() != libc::EINTR {
                    // SAFETY: as in the caller's contract for `error_fd`.
                    unsafe { report_and_exit(error_fd) }
                }
            }
        }
    }
    // SAFETY: `old_mask` is the mask the parent thread had before `spawn` blocked everything.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old_mask, std::ptr::null_mut()) };
    // SAFETY: `argv` and `envp` are null-terminated arrays of C strings (the contract above);
    // `exec*` only returns on failure.
    unsafe {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if spec.search_path {
            libc::execvpe(spec.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
        } else {
            libc::execve(spec.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        libc::execve(spec.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
        report_and_exit(error_fd)
    }
}

/// Writes `errno` to `error_fd` and ends the child with status 127.
///
/// # Safety
///
/// Only in the child of a `fork`: `_exit` skips every destructor and `atexit` handler.
unsafe fn report_and_exit(error_fd: RawFd) -> ! {
    let code = errno().to_ne_bytes();
    // SAFETY: `write` and `_exit` are async-signal-safe; `code` is a live 4-byte buffer.
    unsafe {
        libc::write(error_fd, code.as_ptr().cast(), code.len());
        libc::_exit(127)
    }
}

fn errno() -> c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Whether this process ignores `signal` (its disposition is `SIG_IGN`), as inherited
/// through `exec` from a parent such as `nohup`. False if the question cannot be asked.
pub fn signal_is_ignored(signal: c_int) -> bool {
    // SAFETY: an all-zero `sigaction` is a valid place for `sigaction` to write into.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the current one into `current`, a live struct.
    let r = unsafe { libc::sigaction(signal, std::ptr::null(), &mut current) };
    r == 0 && current.sa_sigaction == libc::SIG_IGN
}

/// Ends this process by `signal`, as a child that died by it: the signal's action back to the
/// default, unblocked, raised. No core file is written for this process (a compiler that
/// dumped core has written its own, which this one's would overwrite). Returns only if the
/// signal did not end the process (its default action is not to), for the caller to exit.
pub fn die_by_signal(signal: c_int) {
    // SAFETY: all-zero `rlimit` and `sigaction` values are valid; each call reads or writes
    // only the live structs given, and changes only this process's own limits, actions and
    // this thread's mask.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_CORE, &mut limit) == 0 {
            limit.rlim_cur = 0;
            libc::setrlimit(libc::RLIMIT_CORE, &limit);
        }
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(signal, &sa, std::ptr::null_mut());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn wait(pid: libc::pid_t) -> c_int {
        let mut status = 0;
        // SAFETY: `status` is live; `pid` is this test's child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        status
    }

    fn spawn_sh(script: &str, stderr: Option<BorrowedFd<'_>>) -> io::Result<libc::pid_t> {
        let program = CString::new("/bin/sh").unwrap();
        let args = [
            c"sh".to_owned(),
            c"-c".to_owned(),
            CString::new(script).unwrap(),
        ];
        let argv: Vec<&CStr> = args.iter().map(|a| a.as_c_str()).collect();
        let env = [c"TALLY_SPAWN_TEST=kept".to_owned()];
        let envp: Vec<&CStr> = env.iter().map(|e| e.as_c_str()).collect();
        spawn(&Spawn {
            program: &program,
            argv: &argv,
            envp: &envp,
            search_path: false,
            stderr,
            default_signals: &[],
            ignored_signals: &[],
            parent_death_signal: Some(libc::SIGKILL),
        })
    }

    #[test]
    fn runs_with_the_given_environment_and_stderr() {
        let (read, write) = cloexec_pipe().unwrap();
        let pid = spawn_sh(
            "echo \"$TALLY_SPAWN_TEST $0\" >&2; exit 7",
            Some(write.as_fd_borrowed()),
        )
        .unwrap();
        drop(write);
        let status = wait(pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7);
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::from(read).read_to_string(&mut text).unwrap();
        assert_eq!(text, "kept sh\n");
    }

    #[test]
    fn a_failed_exec_is_an_error_with_its_errno() {
        let program = CString::new("/nonexistent/tally-spawn-test").unwrap();
        let argv = [program.as_c_str()];
        let err = spawn(&Spawn {
            program: &program,
            argv: &argv,
            envp: &[],
            search_path: false,
            stderr: None,
            default_signals: &[],
            ignored_signals: &[],
            parent_death_signal: None,
        })
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn ignored_signals_stay_ignored_in_the_child() {
        let (read, write) = cloexec_pipe().unwrap();
        let program = CString::new("/bin/sh").unwrap();
        // The kernel's view of the child's ignored signals (Linux).
        let args = [
            c"sh".to_owned(),
            c"-c".to_owned(),
            c"grep SigIgn /proc/self/status >&2".to_owned(),
        ];
        let argv: Vec<&CStr> = args.iter().map(|a| a.as_c_str()).collect();
        let pid = spawn(&Spawn {
            program: &program,
            argv: &argv,
            envp: &[],
            search_path: false,
            stderr: Some(write.as_fd_borrowed()),
            default_signals: &[],
            ignored_signals: &[libc::SIGUSR2],
            parent_death_signal: None,
        })
        .unwrap();
        drop(write);
        wait(pid);
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::from(read).read_to_string(&mut text).unwrap();
        let mask = text
            .trim()
            .strip_prefix("SigIgn:")
            .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap());
        assert_eq!(
            mask.map(|m| m & (1 << (libc::SIGUSR2 - 1))),
            Some(1 << 11),
            "{text:?}"
        );
    }

    trait Borrow {
        fn as_fd_borrowed(&self) -> BorrowedFd<'_>;
    }
    impl Borrow for OwnedFd {
        fn as_fd_borrowed(&self) -> BorrowedFd<'_> {
            use std::os::fd::AsFd;
            self.as_fd()
        }
    }

    #[test]
    fn reports_whether_a_signal_is_ignored() {
        // SIGUSR2 is used by no other test of this crate.
        let set = |action| {
            // SAFETY: an all-zero `sigaction` is valid; this sets SIGUSR2's action only.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = action;
                libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
            }
        };
        set(libc::SIG_IGN);
        assert!(signal_is_ignored(libc::SIGUSR2));
        set(libc::SIG_DFL);
        assert!(!signal_is_ignored(libc::SIGUSR2));
    }
}
