#!/usr/bin/env bash
# Builds the release binaries the way install.sh installs them, `tally` (the CLI) and
# `tally-shim` (the hot path: the shims and RUSTC_WRAPPER) beside it, and prints the path of
# `tally` on the last line of stdout. install.sh and bench/shim/run.sh both call it, so that
# what is benchmarked is what users get.
#
#   scripts/release-build.sh [--quiet]
#
# One ordinary build that any Rust developer reproduces from a stock toolchain: `cargo build
# --release` (fat LTO, opt-level `s` for the hot-path crates: Cargo.toml), static and not
# position-independent. The shim runs on every compile, and a static non-PIE binary skips the
# dynamic loader and its start-up relocations (bench/README.md, "Techniques"). The first kind
# that builds and passes a smoke test wins:
#   1. musl: Rust's own `<arch>-unknown-linux-musl` target, where it is installed
#      (`rustup target add x86_64-unknown-linux-musl`). Static by default; musl's start-up
#      makes none of glibc's CPU probes. Rust's allocations go to dlmalloc there (src/main.rs).
#   2. static-glibc: the host's gnu target with `+crt-static` (needs glibc's static libraries,
#      Debian's libc6-dev).
#   3. dynamic: a plain `cargo build --release`.
# TALLY_RELEASE_KIND=musl|static-glibc|dynamic builds that kind only, and fails if it cannot.
# Messages go to stderr; the environment's RUSTFLAGS and CARGO_TARGET_DIR are honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
quiet=()
[[ ${1:-} == --quiet ]] && quiet=(-q)
say() { echo "release-build: $*" >&2; }

host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
static_flags="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static"

# The musl target that goes with this host (x86_64 or aarch64 Linux), if rustup installed it.
musl_target() {
    local arch=${host%%-*} musl
    [[ $host == *-linux-gnu* ]] || return 1
    musl=$arch-unknown-linux-musl
    [[ -d $(rustc --print sysroot)/lib/rustlib/$musl/lib ]] || return 1
    echo "$musl"
}

# Builds for $1 (a target triple, or "" for the host without --target) with RUSTFLAGS $2, and
# sets `binary`.
build() {
    local target=$1 flags=$2
    if [[ -n $target ]]; then
        RUSTFLAGS="$flags" cargo build "${quiet[@]}" --release --locked --target "$target" -p tally-client >&2 || return 1
        binary=$CARGO_TARGET_DIR/$target/release/tally
    else
        RUSTFLAGS="$flags" cargo build "${quiet[@]}" --release --locked -p tally-client >&2 || return 1
        binary=$CARGO_TARGET_DIR/release/tally
    fi
}

# Runs at all: the CLI's version; a shim of either binary that finds no tool (exit 127, after
# the whole start-up and the PATH search); and a panic unwinds (printing to a full device
# panics; Rust's runtime ends it with 101, a broken unwinder with a signal).
runs() {
    local dir status=0 hot_status=0 panicked=0
    "$binary" --version >/dev/null || return 1
    dir=$(mktemp -d)
    mkdir "$dir/hot"
    ln -s "$binary" "$dir/rustc"
    ln -s "${binary%/*}/tally-shim" "$dir/hot/rustc"
    PATH=$dir TALLY=off "$dir/rustc" --version >/dev/null 2>&1 || status=$?
    PATH=$dir/hot TALLY=off "$dir/hot/rustc" --version >/dev/null 2>&1 || hot_status=$?
    if [[ -w /dev/full ]]; then
        TALLY_DIR=$dir/data "$binary" view --out "$dir/view.html" >/dev/full 2>/dev/null ||
            panicked=$?
    else
        panicked=101 # nowhere to print to that fails; the install test checks unwinding
    fi
    rm -rf "$dir"
    [[ $status == 127 && $hot_status == 127 && $panicked == 101 ]] ||
        { say "the binaries do not run right (shim: $status, tally-shim: $hot_status, panic: $panicked)"; return 1; }
}

try_musl() {
    local target
    target=$(musl_target) || { say "no musl target installed (rustup target add ${host%%-*}-unknown-linux-musl)"; return 1; }
    say "building tally and tally-shim (release, static, musl, --target $target)"
    build "$target" "${RUSTFLAGS:-} -C relocation-model=static" && runs
}
try_static_glibc() {
    say "building tally and tally-shim (release, static, glibc, --target $host)"
    build "$host" "$static_flags" && runs
}
try_dynamic() {
    say "building tally and tally-shim (release, dynamic)"
    build "" "${RUSTFLAGS:-}" && runs
}

kind=${TALLY_RELEASE_KIND:-}
case $kind in
    musl) try_musl ;;
    static-glibc) try_static_glibc ;;
    dynamic) try_dynamic ;;
    "")
        try_musl || try_static_glibc || { say "a static build is not possible here"; try_dynamic; } ;;
    *) say "TALLY_RELEASE_KIND=$kind: expected musl, static-glibc or dynamic"; exit 2 ;;
esac || { say "the ${kind:-release} build failed"; exit 1; }
say "built $binary and ${binary%/*}/tally-shim"
echo "$binary"
