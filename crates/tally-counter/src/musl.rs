//! The three things Rust's std for the `gnu` target and GCC's unwinder expect from glibc, for a
//! release binary linked against musl instead (install.sh, `--features musl`).
//!
//! Why link against musl at all: a statically linked glibc program runs `init_cpu_features` and
//! the cache-size probes before `main`, 43 `cpuid` instructions on the machine tally is
//! benchmarked on, and in a virtual machine every `cpuid` traps to the hypervisor (5.4 µs each
//! there): 0.23 ms before the first line of tally, on every compile. musl's start-up makes no
//! `cpuid` and runs ~800 instructions (bench/README.md, "Shims"). Rust ships no std for
//! `x86_64-unknown-linux-musl` with the toolchain, and the build machines can only reach
//! crates.io, so the `gnu` std is linked against Debian's musl (`musl-gcc`), which provides
//! every C function it calls but these:
//!
//! - `gnu_get_libc_version`: std asks it for glibc's version before it uses `posix_spawn` and
//!   on a DNS failure. This answers "0.0", a version too old for both, so std takes its
//!   portable paths (`fork` and `exec`; no `res_init` workaround it would need).
//! - `__res_init`: never called with that answer; musl reads `resolv.conf` on every lookup.
//! - `_dl_find_object` (glibc 2.35): how GCC's unwinder (libgcc_eh, built against glibc) finds
//!   the unwinding tables of a code address, which panics need (the shim catches any panic of
//!   its own and still runs the tool). A static binary is one object: this answers with its
//!   image and `.eh_frame_hdr`, read from its program headers
//!   ([`crate::startup::loaded_image`]).
//!
//! Also, musl passes nothing to `.init_array` functions, where std's `gnu` build expects the
//! arguments: the binary takes them from C's `main` instead
//! ([`crate::startup::args_of_c_main`]).
//!
//! Only with the `musl` feature are the symbols defined: in a glibc build they would replace
//! glibc's own.

use std::ffi::c_void;
#[cfg(feature = "musl")]
use std::ffi::{c_char, c_int};

/// glibc's `struct dl_find_object` on x86_64 (`<dlfcn.h>`, glibc 2.35 and later; x86_64 has
/// neither `dlfo_eh_dbase` nor `dlfo_eh_count`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DlFindObject {
    pub dlfo_flags: u64,
    pub dlfo_map_start: *mut c_void,
    pub dlfo_map_end: *mut c_void,
    pub dlfo_link_map: *mut c_void,
    pub dlfo_eh_frame: *mut c_void,
    pub dlfo_reserved: [u64; 7],
}

/// What `_dl_find_object` answers for `pc`: this program's image, when `pc` lies in it.
pub fn find_object(pc: usize) -> Option<DlFindObject> {
    let image = crate::startup::loaded_image()?;
    (image.start <= pc && pc < image.end).then_some(DlFindObject {
        dlfo_flags: 0,
        dlfo_map_start: image.start as *mut c_void,
        dlfo_map_end: image.end as *mut c_void,
        // No dynamic loader, no link map; libgcc does not read it.
        dlfo_link_map: std::ptr::null_mut(),
        dlfo_eh_frame: image.eh_frame_hdr as *mut c_void,
        dlfo_reserved: [0; 7],
    })
}

/// glibc's `_dl_find_object`: 0 and `*result` filled when `pc` is in this program, else -1.
///
/// # Safety
///
/// `result` must be valid for a write of a [`DlFindObject`] (libgcc passes its own).
#[cfg(feature = "musl")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _dl_find_object(pc: *mut c_void, result: *mut DlFindObject) -> c_int {
    match find_object(pc as usize) {
        Some(found) if !result.is_null() => {
            // SAFETY: the caller promises `result` is valid for this write (it is not null).
            unsafe { result.write(found) };
            0
        }
        _ => -1,
    }
}

/// The version std reads before choosing `posix_spawn` (see the module docs).
pub const REPORTED_GLIBC_VERSION: &std::ffi::CStr = c"0.0";

/// glibc's `gnu_get_libc_version`, answering [`REPORTED_GLIBC_VERSION`].
#[cfg(feature = "musl")]
#[unsafe(no_mangle)]
pub extern "C" fn gnu_get_libc_version() -> *const c_char {
    REPORTED_GLIBC_VERSION.as_ptr()
}

/// glibc's `__res_init`: musl keeps no resolver state to reload; success.
#[cfg(feature = "musl")]
#[unsafe(no_mangle)]
pub extern "C" fn __res_init() -> c_int {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_program_for_its_own_code_only() {
        let pc = finds_this_program_for_its_own_code_only as *const () as usize;
        let found = find_object(pc).expect("the test's own code is in its image");
        let image = crate::startup::loaded_image().unwrap();
        assert_eq!(found.dlfo_map_start as usize, image.start);
        assert_eq!(found.dlfo_map_end as usize, image.end);
        assert_eq!(found.dlfo_eh_frame as usize, image.eh_frame_hdr);
        assert_eq!(find_object(image.end), None);
        assert_eq!(find_object(0), None);
    }

    #[test]
    fn the_struct_has_glibcs_size() {
        // 5 words and 7 reserved 64-bit words, as in <dlfcn.h>.
        assert_eq!(std::mem::size_of::<DlFindObject>(), 96);
    }

    #[test]
    fn the_reported_version_is_one_std_reads_as_too_old() {
        let text = REPORTED_GLIBC_VERSION.to_str().unwrap();
        let (major, minor) = text.split_once('.').unwrap();
        let version: (u32, u32) = (major.parse().unwrap(), minor.parse().unwrap());
        assert!(
            version < (2, 24),
            "below posix_spawn's and res_init's thresholds"
        );
    }
}
