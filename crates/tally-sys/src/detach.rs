//! Handing a small piece of work to a helper process that outlives this one, for the two jobs
//! of the hot path that must not hold the tool up: asking a tool for its version (and counting
//! once it answered), and forwarding what a compiler's leftover child writes after the
//! compiler exited.
//!
//! This has nothing to do with counter files; it lives here because this is tally's one crate
//! with `unsafe` code (the `fork`). The helper is this process's own code, forked without an
//! `exec`: nothing has to be found on disk or parsed again, and the work it is handed is in
//! its memory already.
//!
//! Promises of [`run_detached`]:
//! - It forks only a process with a single thread (asked of the kernel, `/proc/self/stat`), so
//!   the helper is a whole copy of it in which any code may run; with more threads, or where
//!   the count cannot be read (outside Linux), it returns [`io::ErrorKind::Unsupported`] and
//!   runs nothing.
//! - The helper is a grandchild in a session of its own (`setsid`): no child of this process,
//!   nor of the program it is about to `exec` (a stray child confuses tools that wait for any
//!   child), out of reach of the terminal's signals, reaped by init (or the nearest subreaper).
//!   The function returns once the intermediate child is reaped, a fraction of a millisecond.
//! - The helper holds none of this process's descriptors but those named in [`Keep`]: stdin
//!   and stdout are `/dev/null`, stderr too unless kept, every other descriptor is closed. A
//!   caller reading this process's output to its end is never held up by the helper, unless
//!   it is handed that output on purpose.
//! - With [`Keep::lifetime`], the helper is killed by `SIGALRM` when that time is up, whatever
//!   its work is doing.
//! - The helper ends with `_exit`: no destructor and no buffered output of this process runs
//!   or is written twice, and a panic in the work ends only the helper.

use std::ffi::c_int;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// What the helper keeps of this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Keep<'a> {
    /// Keep descriptor 2 (this process's stderr) instead of pointing it at `/dev/null`.
    pub stderr: bool,
    /// Other descriptors the work needs; kept open under the same numbers.
    pub fds: &'a [RawFd],
    /// The most the helper may live; `None`: until its work is done.
    pub lifetime: Option<Duration>,
}

/// Runs `work` in a detached helper process (see the module's promises) and returns in this
/// process as soon as the helper is on its own.
pub fn run_detached(keep: Keep<'_>, work: &mut dyn FnMut()) -> io::Result<()> {
    if !single_threaded() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a helper is only forked from a process with one thread",
        ));
    }
    // SAFETY: the process has one thread (checked just above; only this thread could have
    // started another since), so the child is a complete copy of it, with no lock held by a
    // thread that does not exist there: any code may run in it.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // The intermediate child: a session of its own, then the helper, then gone.
        // SAFETY: `setsid` and `fork` have no memory preconditions; see above for the fork.
        unsafe {
            libc::setsid();
            let helper = libc::fork();
            if helper == 0 {
                become_helper(&keep, work);
            }
            libc::_exit(0)
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: `status` is a live `c_int`; `pid` is this process's child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Ok(());
        }
    }
}

/// The helper's side: descriptors, the alarm, the work, `_exit`.
fn become_helper(keep: &Keep<'_>, work: &mut dyn FnMut()) -> ! {
    keep_only(keep);
    if let Some(lifetime) = keep.lifetime {
        let seconds = lifetime.as_secs().max(1);
        // SAFETY: an all-zero `sigaction` (default action, empty mask, no flags) and an empty
        // `sigset_t` filled by `sigemptyset` are valid; each call changes only this process.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGALRM);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::alarm(u32::try_from(seconds).unwrap_or(u32::MAX));
        }
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    // SAFETY: ends this process without running anything of the parent's (destructors,
    // `atexit` handlers, buffered output).
    unsafe { libc::_exit(0) }
}

/// Points 0, 1 (and 2 unless kept) at `/dev/null` and closes every descriptor above 2 that is
/// not in `keep.fds`.
fn keep_only(keep: &Keep<'_>) {
    // The open descriptors, listed first and closed after the listing's own is gone. Without
    // /proc, every number up to the limit (bounded: a huge limit is not worth a long loop).
    let open: Vec<c_int> = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => (3..open_limit()).collect(),
    };
    for fd in open {
        if fd > 2 && !keep.fds.contains(&fd) {
            // SAFETY: closing a descriptor number this process owns; nothing in this process
            // uses the closed ones again (the work is handed only `keep.fds`).
            unsafe { libc::close(fd) };
        }
    }
    // SAFETY: a NUL-terminated path and plain flags.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if null < 0 {
        return;
    }
    let last = if keep.stderr { 1 } else { 2 };
    for fd in 0..=last {
        if fd != null {
            // SAFETY: `dup2` onto a standard descriptor of this process.
            unsafe { libc::dup2(null, fd) };
        }
    }
    if null > 2 && !keep.fds.contains(&null) {
        // SAFETY: `null` was opened above and is used no more.
        unsafe { libc::close(null) };
    }
}

fn open_limit() -> c_int {
    // SAFETY: an all-zero `rlimit` is valid for `getrlimit` to write into.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `limit` is a live `rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    c_int::try_from(limit.rlim_cur.min(65_536)).unwrap_or(65_536)
}

/// Whether this process has exactly one thread.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn single_threaded() -> bool {
    // `/proc/self/stat`: the fields after the command name's closing parenthesis start with the
    // state (field 3); the number of threads is field 20.
    let Ok(stat) = std::fs::read("/proc/self/stat") else {
        return false;
    };
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return false;
    };
    std::str::from_utf8(&stat[close + 1..])
        .ok()
        .and_then(|rest| rest.split_ascii_whitespace().nth(17))
        == Some("1")
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn single_threaded() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_threads() {
        // The test harness runs tests on threads of their own: never one thread here.
        let other = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(200)));
        assert!(!single_threaded());
        let mut ran = false;
        let refused = run_detached(Keep::default(), &mut || ran = true).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::Unsupported);
        assert!(!ran);
        other.join().unwrap();
    }
}
