//! The `tally` binary: one program, many names. Thin on purpose; every behaviour lives in a
//! library crate (see ARCHITECTURE.md).
//!
//! Dispatch, before anything else runs (no argument parser, config or runtime on the first
//! two paths):
//! 1. `argv[0]`'s file stem (or `TALLY_FORCE_ARG0`) is a tool (`cargo`, `rustc`, `rustfmt`,
//!    `cargo-fmt`, `go`, `gofmt`): the PATH shim ([`tally_shims::run_shim`]).
//! 2. `argv[1]` is a path or a rustc-like compiler (`tally /abs/rustc args…`, as cargo runs a
//!    `RUSTC_WRAPPER`): the wrapper ([`tally_wrapper::run_wrapper`]).
//! 3. Otherwise the CLI ([`tally_cli::run`]).
//!
//! ## The entry point is C's `main`, not Rust's
//!
//! On Linux with glibc (or musl, see crates/tally-counter/src/musl.rs), this binary is
//! `#![no_main]`: the C library calls [`main`] below directly, and Rust's runtime start-up
//! (`std::rt::lang_start`) never runs. That start-up
//! reads `/proc/self/maps` to find the main thread's stack guard, maps an alternate signal
//! stack, installs SIGSEGV and SIGBUS handlers, checks file descriptors 0 to 2 and ignores
//! SIGPIPE: about 0.13 ms on every compile of every user, which is more than the whole budget
//! the shim has (bench/README.md, "Shims"). What is given up, and how it is made good:
//! - the arguments: taken from `main`'s own `argc` and `argv`
//!   ([`tally_counter::startup::args_of_c_main`]);
//! - SIGPIPE stays as the parent left it. For the shim that is required (the tool must inherit
//!   it); the CLI then dies quietly on a closed pipe (`tally show | head`), as C tools do;
//! - a panic is caught here and ends the process with status 101, as Rust's runtime would;
//! - stdout is flushed before returning (C's `exit` does not know Rust's buffer);
//! - a stack overflow is a plain SIGSEGV, without Rust's one-line message.
//!
//! Elsewhere (and in test builds) a normal `fn main` runs the same [`tally_main`].
#![cfg_attr(all(target_os = "linux", target_env = "gnu", not(test)), no_main)]
// SAFETY: the lint keeps `unsafe` out of this crate but for `main` and `_dl_get_origin` below,
// each with its own SAFETY comment; the unsafe code itself lives in tally-counter.
#![deny(unsafe_code)]

use std::ffi::OsString;
use std::io::Write;

/// C's `main`, called by the C library's start-up code (glibc's or musl's) with the process's
/// arguments.
#[cfg(all(target_os = "linux", target_env = "gnu", not(test)))]
// SAFETY: `main` is the one symbol of that name in the program (with `no_main`, neither std
// nor the C library defines it), and its signature is C's `int main(int, char **)`, which is
// how glibc's and musl's `__libc_start_main` call it.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
extern "C" fn main(argc: std::ffi::c_int, argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    // SAFETY: the C runtime passes `argc` pointers to NUL-terminated strings at `argv`, which
    // nothing changes while they are copied.
    tally_main(unsafe { tally_counter::startup::args_of_c_main(argc, argv) })
}

/// Replaces glibc's own `_dl_get_origin` in the static build, answering "unknown".
///
/// Before `main`, a statically linked glibc asks `_dl_get_origin` for the directory of the
/// running program, for `$ORIGIN` in the search paths of libraries it might `dlopen` later;
/// glibc's version finds out by reading the link `/proc/self/exe`. For a process that lives
/// half a millisecond that is the single most expensive system call of the shim (the kernel
/// builds the new process's `/proc/<pid>` entries to answer it, ~0.02 ms measured; see
/// bench/README.md, "Shims"), and tally never uses the answer: it `dlopen`s nothing but
/// what glibc itself loads from system paths (NSS), which have no `$ORIGIN`.
///
/// `(char *) -1` is what glibc's own version returns when the link cannot be read (no `/proc`
/// in a chroot, for instance), so the C library is left in a state it was built to handle.
/// The linker takes this definition instead of libc.a's (an archive member is only pulled in
/// for a symbol nothing defined yet); in a dynamically linked build the symbol is unused, as
/// the dynamic loader keeps its own, and musl (shims/release-build.sh) has no such call. The install test traces the release build's shim and
/// checks that it no longer reads the link (tests/integration/install.rs).
#[cfg(all(target_os = "linux", target_env = "gnu", not(test)))]
// SAFETY: glibc declares it `const char *_dl_get_origin (void)` (elf/dl-origin.c,
// sysdeps/unix/sysv/linux/dl-origin.c); it is called before `main` on the one thread there
// is, and its result is only compared with `(char *) -1` or read as a C string, which
// `-1` is never read as (glibc checks for it first, as for its own failure).
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
extern "C" fn _dl_get_origin() -> *const std::ffi::c_char {
    usize::MAX as *const std::ffi::c_char
}

/// With musl (`--features musl`, see shims/release-build.sh), Rust's allocations go to
/// dlmalloc instead of musl's `malloc` ("mallocng"): on the shim's path mallocng ran about a
/// third of the instructions up to the `exec` (~31,000 of ~100,000) and asked the kernel for
/// memory six times (`brk` twice, `mmap` four times, a guard page among them), where dlmalloc
/// maps one 64 KiB segment (bench/README.md, "Shims"). glibc's `malloc` is kept with glibc.
#[cfg(feature = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[cfg(not(all(target_os = "linux", target_env = "gnu", not(test))))]
fn main() -> std::process::ExitCode {
    let argv = std::env::args_os().collect();
    std::process::ExitCode::from(u8::try_from(tally_main(argv)).unwrap_or(1))
}

/// Dispatches on the name and arguments; returns the exit status.
fn tally_main(argv: Vec<OsString>) -> i32 {
    if let Some(tool) = tally_shims::tool_from_argv0(argv.first().map(|a| a.as_os_str())) {
        // Returns only when the tool could not be run.
        return tally_shims::run_shim(tool, argv);
    }
    if argv
        .get(1)
        .is_some_and(|a| tally_wrapper::is_wrapper_invocation(a))
    {
        return tally_wrapper::run_wrapper(argv);
    }
    // The CLI, as Rust's runtime would run it: a panic is reported (by the panic hook) and
    // ends the process with 101; whatever is still buffered reaches stdout.
    let status = std::panic::catch_unwind(|| i32::from(tally_cli::run(argv))).unwrap_or(101);
    let _ = std::io::stdout().flush();
    status
}
