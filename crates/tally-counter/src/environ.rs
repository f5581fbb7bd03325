//! The process's environment as the C library holds it: the `environ` array, read in place.
//!
//! This has nothing to do with counter files; it lives here because this is tally's one crate
//! with `unsafe` code, and reading `environ` takes an `unsafe` block. The shim reads its whole
//! environment once on every compile of every user (`tally_home::ProcessEnv`). Before, that
//! was a read of `/proc/self/environ`: four system calls, ~0.015 ms of the ~0.1 ms the shim
//! adds to an `exec` (bench/README.md, "Shims"). std's `vars_os` would instead allocate two
//! strings per variable and drop every entry without a `=`, which the tool must still get.
//!
//! Promises: every entry is given exactly as the C library holds it (for a process that never
//! changed its environment, the bytes its parent passed to `execve`), in order, without its
//! NUL, entries without a `=` included.

use std::ffi::{CStr, c_char};

unsafe extern "C" {
    /// POSIX's `environ`: a null-terminated array of pointers to NUL-terminated strings.
    static environ: *const *const c_char;
}

/// Calls `each` with the bytes of every entry of the environment, in order, without the NUL.
///
/// Not for use while another thread changes the environment. In Rust that takes
/// `std::env::set_var` or `remove_var`, which are `unsafe` because of readers such as this one:
/// their callers promise that no other thread reads the environment meanwhile except through
/// std. tally never changes its own environment.
pub fn for_each_entry(mut each: impl FnMut(&[u8])) {
    // SAFETY: `environ` is defined by the C library this program links with (glibc or musl
    // on Linux); reading the pointer it holds is a plain load, and nothing in this process
    // writes it concurrently (see above).
    let mut entry = unsafe { environ };
    if entry.is_null() {
        // After `clearenv`, or a parent that passed no environment at all.
        return;
    }
    loop {
        // SAFETY: `entry` points into the array `environ` pointed to, which the C library
        // keeps terminated by a null pointer; the loop stops at that null before stepping
        // past it, so every read is of an element of the array.
        let string = unsafe { *entry };
        if string.is_null() {
            return;
        }
        // SAFETY: every non-null element of `environ` points to a NUL-terminated string
        // that stays valid while the environment is not changed (above); the borrow ends
        // before this function returns.
        each(unsafe { CStr::from_ptr(string) }.to_bytes());
        // SAFETY: `entry` is not the terminating null (checked above), so the next element is
        // still within the array.
        entry = unsafe { entry.add(1) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn entries_are_what_std_sees() {
        let mut ours = Vec::new();
        for_each_entry(|e| ours.push(e.to_vec()));
        // std drops entries without a `=` after the first byte; this test process has none.
        let from_std: Vec<Vec<u8>> = std::env::vars_os()
            .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
            .collect();
        assert_eq!(ours, from_std);
        assert!(!ours.is_empty(), "cargo test always sets some variables");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn entries_are_the_bytes_the_process_was_started_with() {
        let mut ours = Vec::new();
        for_each_entry(|e| {
            ours.extend_from_slice(e);
            ours.push(0);
        });
        assert_eq!(ours, std::fs::read("/proc/self/environ").unwrap());
    }
}
