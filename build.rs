//! Links the shim's hot path first and side by side, when asked to (`TALLY_LINK_ORDER`, set by
//! install.sh and the shim benchmark for release builds).
//!
//! The shim is a fresh process on every compile, and a fresh process pays a page fault for each
//! part of the binary it touches (the kernel maps up to 64 KiB around a fault). Two files, made
//! by `bench/shim/order.sh` from traces of real runs, tell lld where the hot path goes:
//! - `shims/hot-path.order` lists the functions and variables the shim and the
//!   `RUSTC_WRAPPER` path use, in the order they first run; `--symbol-ordering-file` puts them
//!   together at the start of their sections. That is the musl build's (`--features musl`);
//!   a glibc build uses `shims/hot-path-glibc.order` and `.ld`, traced from a glibc build.
//! - `shims/hot-path.ld` collects the read-only data they read (string and table constants,
//!   most of which have no symbol an order file could name, and glibc's start-up tables) into
//!   one output section, `.rodata.hot`, placed right after the ELF headers.
//!
//! A third file, `shims/hot-path-text.ld`, is written by hand: it moves `.init` and `.iplt`
//! (the ifunc stubs every glibc string call of a static binary goes through) in front of
//! `.text`, next to the hot functions.
//!
//! And every loadable segment starts on a page of its own (`-z separate-loadable-segments`).
//! Otherwise the writable data starts wherever the code ends within its page, so any change of
//! code size shifts which page each start-up variable of glibc lands on; one build touched two
//! more pages of data than the next (bench/README.md, "Shims").
//!
//! Symbols and sections the linker does not find (another toolchain or Cargo.lock) are skipped:
//! the binary is the same program either way, only the layout differs.
//!
//! Opt-in because the options are lld's: GNU ld does not know the ordering file. Rust links with
//! lld on x86_64 Linux; install.sh falls back to a build without them if linking fails.
//! `TALLY_LINK_MAP=FILE` also writes lld's link map (order.sh reads it to name the sections).

use std::path::{Path, PathBuf};

/// With the `musl` feature (shims/release-build.sh links the binary with `musl-gcc`): libgcc's
/// unwinder (built for glibc) calls the pthread functions below through weak references, which
/// never pull a member out of a static archive. std pulls in `pthread_key_create`, which makes
/// the unwinder believe threads are there, and a panic then called `pthread_once` at address 0
/// (the install test's panic caught it). Asking for each symbol links musl's. A static link
/// also needs no program interpreter, which musl-gcc's specs would otherwise name.
fn link_for_musl() {
    for symbol in [
        "pthread_once",
        "pthread_key_create",
        "pthread_getspecific",
        "pthread_setspecific",
        "pthread_mutex_lock",
        "pthread_mutex_unlock",
    ] {
        println!("cargo::rustc-link-arg-bin=tally=-Wl,--undefined={symbol}");
    }
    println!("cargo::rustc-link-arg-bin=tally=-Wl,--no-dynamic-linker");
}

fn main() {
    println!("cargo::rerun-if-env-changed=TALLY_LINK_ORDER");
    println!("cargo::rerun-if-env-changed=TALLY_LINK_MAP");
    let musl = std::env::var_os("CARGO_FEATURE_MUSL").is_some();
    if musl {
        link_for_musl();
    }
    if let Some(map) = std::env::var_os("TALLY_LINK_MAP").filter(|v| !v.is_empty()) {
        println!(
            "cargo::rustc-link-arg-bin=tally=-Wl,-Map={}",
            Path::new(&map).display()
        );
    }
    let Some(value) = std::env::var_os("TALLY_LINK_ORDER").filter(|v| !v.is_empty() && v != "0")
    else {
        return;
    };
    let order = if value == "1" {
        // Each C library has its own start-up code on the hot path, and its own traces: the
        // musl build (shims/release-build.sh's first choice) and the glibc one.
        let file = if musl {
            "shims/hot-path.order"
        } else {
            "shims/hot-path-glibc.order"
        };
        Path::new(env!("CARGO_MANIFEST_DIR")).join(file)
    } else {
        PathBuf::from(value)
    };
    let script = order.with_extension("ld");
    // Relink when either file changes (cargo does not look into linker arguments' files).
    println!("cargo::rerun-if-changed={}", order.display());
    println!("cargo::rerun-if-changed={}", script.display());
    if !order.is_file() {
        println!(
            "cargo::warning=TALLY_LINK_ORDER: no order file at {}; linking in the default order",
            order.display()
        );
        return;
    }
    println!(
        "cargo::rustc-link-arg-bin=tally=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo::rustc-link-arg-bin=tally=-Wl,--no-warn-symbol-ordering");
    println!("cargo::rustc-link-arg-bin=tally=-Wl,-z,separate-loadable-segments");
    // The scripts only move or add sections (`INSERT`); everything else keeps lld's default
    // layout.
    let text_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("shims/hot-path-text.ld");
    println!("cargo::rerun-if-changed={}", text_script.display());
    for script in [script, text_script] {
        if script.is_file() {
            println!(
                "cargo::rustc-link-arg-bin=tally=-Wl,-T,{}",
                script.display()
            );
        }
    }
}
