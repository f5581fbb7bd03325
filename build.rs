//! Links the shim's hot path first and side by side, when asked to (`TALLY_LINK_ORDER`, set by
//! install.sh and the shim benchmark for release builds).
//!
//! The shim is a fresh process on every compile, and a fresh process pays a page fault for each
//! part of the binary it touches. `shims/hot-path.order` lists the functions and variables the
//! shim and the `RUSTC_WRAPPER` path use, in the order they first run (made by
//! `bench/shim/order.sh` from traces of real runs); lld's `--symbol-ordering-file` puts them
//! together at the start of their sections. Symbols it does not find (another toolchain or
//! Cargo.lock) are skipped: the binary is the same program either way, only the layout differs.
//!
//! Opt-in because the option is lld's: GNU ld does not know it. Rust links with lld on
//! x86_64 Linux; install.sh falls back to a build without it if linking fails.

fn main() {
    println!("cargo::rerun-if-env-changed=TALLY_LINK_ORDER");
    let Some(value) = std::env::var_os("TALLY_LINK_ORDER").filter(|v| !v.is_empty() && v != "0")
    else {
        return;
    };
    let order = if value == "1" {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shims/hot-path.order")
    } else {
        std::path::PathBuf::from(value)
    };
    // Relink when the order changes (cargo does not look into linker arguments' files).
    println!("cargo::rerun-if-changed={}", order.display());
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
}
