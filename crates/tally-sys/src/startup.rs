//! What the kernel handed this process at `execve`, read without a system call: its
//! arguments (as C's `main` receives them), its environment (the C library's `environ`) and the
//! path it was started by (`AT_EXECFN`); and, read from its own ELF header, the size of the file
//! this program was loaded from.
//!
//! This has nothing to do with counter files; it lives here because this is tally's one crate
//! with `unsafe` code, and these reads take an `unsafe` block. The shim reads them on every
//! compile of every user, where `/proc/self/environ` would cost four system calls and
//! `AT_EXECFN` through `prctl` one more (bench/README.md, "Techniques"). std's `vars_os` would
//! instead allocate two strings per variable and drop every entry without a `=`, which the tool
//! must still get.
//!
//! Promises: every environment entry is given exactly as the C library holds it (for a process
//! that never changed its environment, the bytes its parent passed to `execve`), in order,
//! without its NUL, entries without a `=` included; the start-up path is the kernel's own
//! copy of the path `execve` was given; the image size is the file's size as the linker wrote
//! it, or `None` where the header does not say.

use std::ffi::{CStr, OsString, c_char, c_int};

unsafe extern "C" {
    /// POSIX's `environ`: a null-terminated array of pointers to NUL-terminated strings.
    static environ: *const *const c_char;
    /// The ELF header of the running program, as loaded: the linker (GNU ld, gold and lld alike)
    /// defines this symbol at the start of the first loaded segment, which begins with the
    /// header, when it is referenced.
    static __ehdr_start: [u8; 64];
}

/// The arguments C's `main` was called with, as owned strings, in order.
///
/// tally's binary starts at C's `main` (src/main.rs), so this is where its arguments come from.
/// std's `args_os` would work with glibc (which passes the arguments to every `.init_array`
/// function, where std's gnu build picks them up) but not with musl (which passes none), and
/// the release binary may be linked against either (scripts/release-build.sh).
///
/// # Safety
///
/// - `argv` must point to `argc` pointers (more when `argc` is negative: none are read then),
///   each to a NUL-terminated string, as the C runtime passes them to `main`;
/// - those strings must not be changed while this runs.
pub unsafe fn args_of_c_main(argc: c_int, argv: *const *const c_char) -> Vec<OsString> {
    use std::os::unix::ffi::OsStrExt;
    let count = usize::try_from(argc).unwrap_or(0);
    if argv.is_null() {
        return Vec::new();
    }
    (0..count)
        .map(|i| {
            // SAFETY: `i < argc`, and the caller promises `argc` readable pointers at `argv`.
            let arg = unsafe { *argv.add(i) };
            if arg.is_null() {
                return OsString::new();
            }
            // SAFETY: the caller promises each is a NUL-terminated string, unchanged meanwhile;
            // the borrow ends with the copy.
            let bytes = unsafe { CStr::from_ptr(arg) }.to_bytes();
            std::ffi::OsStr::from_bytes(bytes).to_os_string()
        })
        .collect()
}

/// Calls `each` with the bytes of every entry of the environment, in order, without the NUL.
///
/// Not for use while another thread changes the environment. In Rust that takes
/// `std::env::set_var` or `remove_var`, which are `unsafe` because of readers such as this one:
/// their callers promise that no other thread reads the environment meanwhile except through
/// std. tally never changes its own environment.
pub fn for_each_env_entry(mut each: impl FnMut(&[u8])) {
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

/// The path this process was started by: the one its parent passed to `execve`, as the
/// kernel keeps it for the process (`AT_EXECFN`; relative paths as given, relative to the
/// working directory of that moment). `None` if the kernel did not pass it.
pub fn started_by() -> Option<&'static CStr> {
    // SAFETY: `getauxval` only reads the auxiliary vector the C library saved at start-up, and
    // may be called from any thread at any time.
    let address = unsafe { libc::getauxval(libc::AT_EXECFN) };
    if address == 0 {
        return None;
    }
    // SAFETY: a non-zero `AT_EXECFN` is the address of a NUL-terminated string the kernel wrote
    // at the top of the process's initial stack, above the environment strings. That memory is
    // mapped, and nothing writes to it, for as long as the process runs, hence `'static`.
    Some(unsafe { CStr::from_ptr(address as *const c_char) })
}

/// This program's own ELF header, as loaded with its first segment; `None` unless it is a
/// 64-bit little-endian ELF header (`e_ident`: magic, ELFCLASS64, ELFDATA2LSB), so that the
/// caller can read its fields.
fn own_elf_header() -> Option<&'static [u8; 64]> {
    // SAFETY: `__ehdr_start` is the first byte of the program's first loaded segment, which is
    // mapped read-only for the life of the process and starts with the 64-byte ELF header
    // (its magic is checked below before any caller reads another field); nothing writes to it.
    let header: &'static [u8; 64] = unsafe { &*std::ptr::addr_of!(__ehdr_start) };
    (header[..6] == *b"\x7fELF\x02\x01").then_some(header)
}

/// The size of the file this program was loaded from, as its ELF header implies: the section
/// header table, which linkers (and `strip`) write last, ends the file. No system call: the
/// header is mapped with the first segment.
///
/// This lets the shim trust `stat(AT_EXECFN)` as its own identity without asking the kernel
/// for `/proc/self/exe` (a lookup that makes it build the process's `/proc/<pid>` entries):
/// a file whose size differs is not this program (`AT_EXECFN` names a script whose
/// interpreter this is, or a file replaced since). `None` if the header says nothing usable
/// (not a 64-bit ELF header, no section headers, or the extended numbering).
pub fn image_file_size() -> Option<u64> {
    let header = own_elf_header()?;
    let u16_at = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
    let section_table_offset = u64::from_le_bytes(header[0x28..0x30].try_into().ok()?);
    let (entry_size, entries) = (u16_at(0x3a), u16_at(0x3c));
    if section_table_offset == 0 || entries == 0 {
        return None;
    }
    section_table_offset.checked_add(u64::from(entry_size) * u64::from(entries))
}

/// Defines a binary's entry point (invoked at the binary's root; kept here so that the one
/// `unsafe` an entry point needs stays in this crate), calling `$run`
/// (`fn(Vec<OsString>) -> i32`, returning the exit status) with the process's arguments: C's `main` on Linux with glibc or musl, Rust's
/// `fn main` elsewhere and in test builds. The binary's root must also say
/// `#![cfg_attr(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"),
/// not(test)), no_main)]`, an attribute no macro can place.
#[macro_export]
macro_rules! entry_point {
    ($run:path) => {
        /// C's `main`, called by the C library's start-up code (glibc's or musl's) with the
        /// process's arguments.
        #[cfg(all(
            target_os = "linux",
            any(target_env = "gnu", target_env = "musl"),
            not(test)
        ))]
        // SAFETY: `main` is the one symbol of that name in the program (with `no_main`,
        // neither std nor the C library defines it), and its signature is C's
        // `int main(int, char **)`, which is how glibc's and musl's `__libc_start_main` call it.
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        extern "C" fn main(
            argc: std::ffi::c_int,
            argv: *const *const std::ffi::c_char,
        ) -> std::ffi::c_int {
            // SAFETY: the C runtime passes `argc` pointers to NUL-terminated strings at
            // `argv`, which nothing changes while they are copied.
            $run(unsafe { $crate::startup::args_of_c_main(argc, argv) })
        }

        #[cfg(not(all(
            target_os = "linux",
            any(target_env = "gnu", target_env = "musl"),
            not(test)
        )))]
        fn main() -> std::process::ExitCode {
            let argv = std::env::args_os().collect();
            std::process::ExitCode::from(u8::try_from($run(argv)).unwrap_or(1))
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn entries_are_what_std_sees() {
        let mut ours = Vec::new();
        for_each_env_entry(|e| ours.push(e.to_vec()));
        // std drops entries without a `=` after the first byte; this test process has none.
        // The comparison is with std's own reading; tally-sys cannot depend on the registry.
        #[allow(clippy::disallowed_methods)]
        let from_std: Vec<Vec<u8>> = std::env::vars_os()
            .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
            .collect();
        assert_eq!(ours, from_std);
        assert!(!ours.is_empty(), "cargo test always sets some variables");
    }

    #[test]
    fn entries_are_the_bytes_the_process_was_started_with() {
        let mut ours = Vec::new();
        for_each_env_entry(|e| {
            ours.extend_from_slice(e);
            ours.push(0);
        });
        assert_eq!(ours, std::fs::read("/proc/self/environ").unwrap());
    }

    #[test]
    fn the_image_size_is_the_size_of_the_file_the_program_was_loaded_from() {
        let on_disk = std::fs::metadata("/proc/self/exe").unwrap().len();
        assert_eq!(image_file_size(), Some(on_disk));
    }

    #[test]
    fn arguments_of_c_main_are_copied_in_order() {
        let strings = [c"tally", c"--flag", c"\xff value"];
        let pointers: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        // SAFETY: three pointers to NUL-terminated strings that outlive the call.
        let args = unsafe { args_of_c_main(3, pointers.as_ptr()) };
        let expected: Vec<OsString> = strings
            .iter()
            .map(|s| std::ffi::OsStr::from_bytes(s.to_bytes()).to_os_string())
            .collect();
        assert_eq!(args, expected);
        // SAFETY: no pointer is read for a count of zero or less.
        assert!(unsafe { args_of_c_main(0, pointers.as_ptr()) }.is_empty());
        assert!(unsafe { args_of_c_main(-1, pointers.as_ptr()) }.is_empty());
    }

    #[test]
    fn started_by_is_the_path_the_kernel_ran() {
        // cargo runs test binaries by their path; the path resolves to this very file.
        let started = started_by().expect("Linux passes AT_EXECFN");
        let started = std::path::Path::new(std::ffi::OsStr::from_bytes(started.to_bytes()));
        assert_eq!(
            std::fs::canonicalize(started).unwrap(),
            std::fs::canonicalize("/proc/self/exe").unwrap()
        );
    }
}
