//! Running the compiler as a child and waiting for it, with the build seeing what it would see
//! without tally, so that the outcome of a compile can be counted.
//!
//! Promises (the build's side):
//! - The child is started by `tally_sys::spawn`: the same argument and environment vectors
//!   as an `exec` would get, the inherited signal mask and dispositions, every inherited
//!   descriptor (cargo's jobserver) and stdin and stdout as they are. Only stderr is a pipe.
//! - Each chunk of the child's stderr is written to tally's stderr the moment it is read, in
//!   order and byte for byte (cargo starts dependent compiles on the `artifact` line, so
//!   nothing is held back); the copy handed to the reader comes after. If tally's stderr
//!   cannot be written (its reader is gone), the pipe is closed, so the child meets the broken
//!   pipe on its next write as it would have without tally.
//! - SIGINT and SIGQUIT (the terminal's, which the child gets itself from the process group)
//!   do not end tally before the child; SIGTERM and SIGHUP are forwarded to the child. A
//!   signal tally inherited ignored stays ignored, for the child too.
//! - On Linux the child gets SIGKILL if tally dies (`PR_SET_PDEATHSIG`), so a compiler never
//!   outlives a killed tally; the child is always reaped.
//! - The wait ends when the child has ended, not when its stderr closes: tally exits with the
//!   child's status at once, as the child's parent sees it end without tally. What the child
//!   wrote before it ended is forwarded first. If a process it left behind still holds the
//!   pipe (a compiler's own background child, a compile cache's server), a small detached
//!   forwarder ([`tally_sys::detach`]) takes the pipe and tally's stderr over and copies what
//!   comes, chunk by chunk, until the last writer closes it: that output reaches the same
//!   stderr, the writer never meets a broken pipe it would not have met, and whoever reads
//!   the stderr to its end (cargo) sees the end exactly when the last writer is gone, as
//!   without tally. The forwarder holds nothing else of tally (stdin and stdout are
//!   `/dev/null`, other descriptors closed) and lives exactly as long as that writer; where
//!   none can be forked (outside Linux), tally forwards until the end itself before exiting.
//!
//! Failures before the child runs are [`Failed::Setup`]: the caller then `exec`s the compiler
//! as without supervision, so nothing is lost.

use std::ffi::{CStr, c_int};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, pthread_sigmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tally_sys::spawn::{Spawn, signal_is_ignored, spawn};

/// How the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
}

/// A finished run.
#[derive(Debug)]
pub struct Finished {
    pub ended: Ended,
    /// From just before the child was started to its end.
    pub elapsed: Duration,
}

/// Why there is no [`Finished`].
#[derive(Debug)]
pub enum Failed {
    /// Nothing was started (no pipe, a closed stderr, no fork): run the program another way.
    Setup(std::io::Error),
    /// The program could not be `exec`ed (not found, not executable).
    Exec(std::io::Error),
}

/// The program to run: as for `execvpe` (`search_path`) or `execve`.
pub struct Program<'a> {
    pub path: &'a CStr,
    pub search_path: bool,
    pub argv: &'a [&'a CStr],
    pub envp: &'a [&'a CStr],
}

/// Signals handled while waiting: (signal, forwarded to the child).
const HANDLED: [(Signal, bool); 4] = [
    (Signal::SIGINT, false),
    (Signal::SIGQUIT, false),
    (Signal::SIGTERM, true),
    (Signal::SIGHUP, true),
];

/// How long one wait lasts before the child is looked at anyway, in milliseconds (SIGCHLD
/// wakes it at once; this only bounds the cost of a SIGCHLD that never comes).
const RECHECK_MS: u16 = 1000;

/// After forwarding a chunk, how long tally lets the next ones gather before it reads again
/// (watching only for signals meanwhile). rustc writes each diagnostic with its own `write`:
/// woken for every one, tally cost a crate with 1,000 warnings about 900 context switches and
/// 11 ms of CPU; waiting this long between reads wakes it at most once a millisecond, and the
/// first bytes of every burst still go out at once (bench/README.md, "Wrapper").
const GATHER_MS: u16 = 1;

/// The pipe's capacity asked for, so that the compiler does not block on a full pipe while
/// tally lets chunks gather (Linux's default is 64 KiB; unprivileged processes may ask for up
/// to `/proc/sys/fs/pipe-max-size`, 1 MiB by default). A refusal keeps the default.
const PIPE_CAPACITY: i32 = 1 << 20;

/// Runs `program`, forwarding its stderr and handing each chunk to `copy` after forwarding it.
pub fn run(program: &Program<'_>, copy: &mut dyn FnMut(&[u8])) -> Result<Finished, Failed> {
    // A closed descriptor 2 would be reused by the pipes below: run unsupervised.
    let stderr = std::io::stderr();
    let out = stderr.as_fd();
    nix::fcntl::fcntl(out.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD)
        .map_err(|e| Failed::Setup(e.into()))?;
    let (pipe_read, pipe_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Failed::Setup(e.into()))?;
    #[cfg(target_os = "linux")]
    let _ = nix::fcntl::fcntl(
        pipe_write.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_CAPACITY),
    );
    let signals = Signals::register().map_err(Failed::Setup)?;

    let started = Instant::now();
    let spawned = spawn(&Spawn {
        program: program.path,
        argv: program.argv,
        envp: program.envp,
        search_path: program.search_path,
        stderr: Some(pipe_write.as_fd()),
        default_signals: &signals.default,
        ignored_signals: &signals.ignored,
        parent_death_signal: Some(libc_signal(Signal::SIGKILL)),
    });
    drop(pipe_write);
    let pid = match spawned {
        Ok(pid) => Pid::from_raw(pid),
        Err(e) if e.raw_os_error().is_some_and(is_exec_errno) => return Err(Failed::Exec(e)),
        Err(e) => return Err(Failed::Setup(e)),
    };
    // This thread only: the child has its own mask already. SIGCHLD must reach the handler
    // that wakes the wait; a write to a closed stderr must be an error here, not a death.
    let _ = pthread_sigmask(
        SigmaskHow::SIG_UNBLOCK,
        Some(&SigSet::from(Signal::SIGCHLD)),
        None,
    );
    let _ = pthread_sigmask(
        SigmaskHow::SIG_BLOCK,
        Some(&SigSet::from(Signal::SIGPIPE)),
        None,
    );
    let (ended, left_open) = wait(pid, pipe_read, out, &signals, copy);
    let elapsed = started.elapsed();
    signals.unregister();
    if let Some(pipe) = left_open {
        forward_the_rest(pipe, out);
    }
    Ok(Finished { ended, elapsed })
}

/// Forwards what the child's leftover processes write into `pipe` until the last of them
/// closes it: in a detached forwarder, so that tally can exit now, or here where there is none.
fn forward_the_rest(pipe: OwnedFd, out: BorrowedFd<'_>) {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    // `drain` left the pipe non-blocking; the forwarder waits for each chunk.
    let _ = fcntl(pipe.as_raw_fd(), FcntlArg::F_SETFL(OFlag::empty()));
    let mut buf = vec![0u8; 64 << 10];
    let mut forward = || {
        loop {
            match nix::unistd::read(pipe.as_raw_fd(), &mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    // Closing the pipe (by returning) gives the writer the broken pipe tally
                    // met, as for the compiler itself.
                    if !forward_chunk(out, &buf[..n]) {
                        return;
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    };
    let keep = tally_sys::detach::Keep {
        stderr: true,
        fds: &[pipe.as_raw_fd()],
        lifetime: None,
    };
    if tally_sys::detach::run_detached(keep, &mut forward).is_err() {
        forward();
    }
}

/// `errno`s that mean the program itself could not be run, as a shell reports them.
fn is_exec_errno(errno: i32) -> bool {
    matches!(
        Errno::from_raw(errno),
        Errno::ENOENT
            | Errno::EACCES
            | Errno::ENOEXEC
            | Errno::ENOTDIR
            | Errno::ELOOP
            | Errno::ENAMETOOLONG
            | Errno::ETXTBSY
            | Errno::EISDIR
            | Errno::EPERM
            | Errno::E2BIG
    )
}

fn libc_signal(signal: Signal) -> c_int {
    signal as c_int
}

/// The handlers installed while the child runs.
struct Signals {
    /// Woken (one byte or more) by any handled signal and by SIGCHLD.
    wake: UnixStream,
    /// Set by the forwarded signals.
    pending: Vec<(Signal, Arc<AtomicBool>)>,
    ids: Vec<signal_hook::SigId>,
    /// Signals caught here that the child must get at their default action.
    default: Vec<c_int>,
    /// Signals caught here that were ignored, for the child to ignore again.
    ignored: Vec<c_int>,
}

impl Signals {
    fn register() -> std::io::Result<Signals> {
        let (wake, waker) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let mut signals = Signals {
            wake,
            pending: Vec::new(),
            ids: Vec::new(),
            default: Vec::new(),
            ignored: Vec::new(),
        };
        let result = (|| {
            for (signal, forward) in HANDLED {
                let raw = libc_signal(signal);
                // Ignored by whoever started tally: ignored by the child as well, and tally
                // cannot be ended by it either.
                if signal_is_ignored(raw) {
                    continue;
                }
                if forward {
                    let flag = Arc::new(AtomicBool::new(false));
                    signals
                        .ids
                        .push(signal_hook::flag::register(raw, flag.clone())?);
                    signals.pending.push((signal, flag));
                }
                signals.ids.push(signal_hook::low_level::pipe::register(
                    raw,
                    waker.try_clone()?,
                )?);
                signals.default.push(raw);
            }
            // SIGCHLD inherited ignored would make the kernel reap the child unseen (no exit
            // status): caught here, ignored again in the child.
            let chld = libc_signal(Signal::SIGCHLD);
            let chld_ignored = signal_is_ignored(chld);
            signals.ids.push(signal_hook::low_level::pipe::register(
                chld,
                waker.try_clone()?,
            )?);
            if chld_ignored {
                signals.ignored.push(chld);
            } else {
                signals.default.push(chld);
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(signals),
            Err(e) => {
                signals.unregister();
                Err(e)
            }
        }
    }

    /// Sends the child the forwarded signals that arrived since the last call.
    fn forward(&self, child: Pid) {
        for (signal, flag) in &self.pending {
            if flag.swap(false, Ordering::SeqCst) {
                let _ = kill(child, *signal);
            }
        }
    }

    fn drain_wake(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
    }

    fn unregister(self) {
        for id in self.ids {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Forwards stderr and waits for `child` to end. Returns how it ended, and the pipe if
/// processes the child left behind still hold it open.
fn wait(
    child: Pid,
    pipe: OwnedFd,
    out: BorrowedFd<'_>,
    signals: &Signals,
    copy: &mut dyn FnMut(&[u8]),
) -> (Ended, Option<OwnedFd>) {
    let mut buf = vec![0u8; 64 << 10];
    let mut pipe = Some(pipe);
    // poll itself failed: block on the pipe, then on the child, without forwarding signals.
    let mut blocking = false;
    // A chunk was just forwarded: let the next ones gather first.
    let mut gather = false;
    loop {
        if gather && !blocking {
            let mut wake = [PollFd::new(signals.wake.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut wake, PollTimeout::from(GATHER_MS));
            gather = false;
        }
        signals.forward(child);
        let (pipe_ready, look) = if blocking {
            (pipe.is_some(), pipe.is_none())
        } else {
            let mut fds = vec![PollFd::new(signals.wake.as_fd(), PollFlags::POLLIN)];
            if let Some(p) = &pipe {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::from(RECHECK_MS)) {
                // Timed out: look at the child anyway.
                Ok(0) => (false, true),
                Ok(_) => {
                    let ready = |fd: &PollFd<'_>| fd.any().unwrap_or(true);
                    (fds.get(1).is_some_and(ready), ready(&fds[0]))
                }
                Err(Errno::EINTR) => (false, true),
                Err(_) => {
                    blocking = true;
                    continue;
                }
            }
        };
        if pipe_ready && let Some(p) = &pipe {
            match nix::unistd::read(p.as_raw_fd(), &mut buf) {
                Ok(0) => pipe = None,
                Ok(n) => {
                    if !forward_chunk(out, &buf[..n]) {
                        // Closing the pipe gives the child the broken pipe tally met.
                        pipe = None;
                    }
                    copy(&buf[..n]);
                    // A full buffer: more is waiting already, read it without a pause.
                    gather = n < buf.len();
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => pipe = None,
            }
        }
        if look {
            signals.drain_wake();
            if let Some(ended) = reap(child, blocking) {
                let left_open = pipe.take().and_then(|p| drain(p, out, &mut buf, copy));
                return (ended, left_open);
            }
        }
    }
}

/// Whether the child has ended (blocking until it has when `block`).
fn reap(child: Pid, block: bool) -> Option<Ended> {
    let flags = (!block).then_some(WaitPidFlag::WNOHANG);
    loop {
        match waitpid(child, flags) {
            Ok(WaitStatus::Exited(_, code)) => return Some(Ended::Exited(code)),
            Ok(WaitStatus::Signaled(_, signal, _)) => {
                return Some(Ended::Signaled(libc_signal(signal)));
            }
            Ok(WaitStatus::StillAlive) => return None,
            // Stopped or continued: still running.
            Ok(_) => return None,
            Err(Errno::EINTR) if block => continue,
            Err(Errno::EINTR) => return None,
            // Not our child any more (reaped elsewhere): nothing to report but a failure.
            Err(_) => return Some(Ended::Exited(1)),
        }
    }
}

/// What is in the pipe after the child ended, without waiting for writers it left behind.
/// Returns the pipe if such writers still hold it open (nothing to read, yet no end).
fn drain(
    pipe: OwnedFd,
    out: BorrowedFd<'_>,
    buf: &mut [u8],
    copy: &mut dyn FnMut(&[u8]),
) -> Option<OwnedFd> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    // Without a non-blocking read, the end cannot be told from a pause: forward it all.
    let blocking = fcntl(pipe.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).is_err();
    loop {
        match nix::unistd::read(pipe.as_raw_fd(), buf) {
            Ok(0) => return None,
            Ok(n) => {
                if !forward_chunk(out, &buf[..n]) {
                    return None;
                }
                copy(&buf[..n]);
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) if !blocking => return Some(pipe),
            Err(_) => return None,
        }
    }
}

/// Writes all of `chunk` to `out`; false when `out` cannot take it any more.
fn forward_chunk(out: BorrowedFd<'_>, mut chunk: &[u8]) -> bool {
    while !chunk.is_empty() {
        match nix::unistd::write(out, chunk) {
            Ok(n) => chunk = &chunk[n..],
            Err(Errno::EINTR) => {}
            // A non-blocking stderr (set so by someone sharing it): wait until it takes more.
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(out, PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::NONE);
            }
            Err(_) => return false,
        }
    }
    true
}
