//! The wall clock, read with a system call instead of through the vDSO.
//!
//! This has nothing to do with counter files; it lives here because this is tally's one crate
//! with `unsafe` code. `SystemTime::now` reads the clock in the vDSO, without entering the
//! kernel, which is the fast way for a process that asks for the time often. The shim asks
//! once, as a fresh process: the vDSO's data pages are not mapped yet, and the first read
//! faults them in, which costs more than the system call (0.006 ms against none measurable,
//! bench/README.md, "Shims").
//!
//! Promises: the same clock as `SystemTime::now` (`CLOCK_REALTIME`); if the system call fails,
//! `SystemTime::now`'s answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The current time, as `SystemTime::now` would say.
pub fn now() -> SystemTime {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` with a valid clock writes one `timespec` to the address given,
    // which is `ts`, alive and writable for the whole call; it touches no other memory.
    let status = unsafe {
        libc::syscall(
            libc::SYS_clock_gettime,
            libc::CLOCK_REALTIME,
            &mut ts as *mut libc::timespec,
        )
    };
    if status != 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
        return SystemTime::now();
    }
    let nanos = ts.tv_nsec as u32;
    match u64::try_from(ts.tv_sec) {
        Ok(secs) => UNIX_EPOCH + Duration::new(secs, nanos),
        // Before 1970: as far before the epoch as the clock says.
        Err(_) => UNIX_EPOCH - Duration::new(ts.tv_sec.unsigned_abs(), 0) + Duration::new(0, nanos),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_std() {
        let before = SystemTime::now();
        let ours = now();
        let after = SystemTime::now();
        assert!(
            before <= ours && ours <= after,
            "{before:?} {ours:?} {after:?}"
        );
    }
}
