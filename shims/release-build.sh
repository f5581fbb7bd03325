#!/usr/bin/env bash
# Builds the release `tally` binary the way install.sh installs it, and prints its path on the
# last line of stdout. Used by install.sh, bench/shim/run.sh and bench/shim/order.sh, so that
# what is benchmarked and laid out is what users get.
#
#   shims/release-build.sh [--quiet]
#
# The binary is static and not position-independent (-C target-feature=+crt-static
# -C relocation-model=static, with an explicit --target): the shim runs on every compile, and
# such a binary skips the dynamic loader and the ~6,400 start-up relocations of a static-PIE
# one, about 0.1 ms a run. Its hot path is linked first and together (TALLY_LINK_ORDER=1,
# shims/hot-path.order and .ld, see build.rs).
#
# The C library: musl when Debian's `musl-gcc` is here (package musl-tools), else glibc.
# glibc's static start-up probes the CPU before `main` (43 `cpuid` instructions here, each a
# trap to the hypervisor in a virtual machine: 0.23 ms a run on the benchmark machine); musl's
# makes no probe (bench/README.md, "Shims"; crates/tally-counter/src/musl.rs says how Rust's
# gnu std is linked against musl). TALLY_LIBC=glibc forces glibc, TALLY_LIBC=musl fails
# instead of falling back. A musl build that does not link or does not run falls back to
# glibc; a build without the hot-path order, then a normal dynamic one, are the last resorts.
#
# Messages go to stderr; the environment's RUSTFLAGS and CARGO_TARGET_DIR are honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
quiet=()
[[ ${1:-} == --quiet ]] && quiet=(-q)
say() { echo "release-build: $*" >&2; }

target=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
binary=$CARGO_TARGET_DIR/$target/release/tally
static_flags="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static"

# Rust's gnu std, linked by musl-gcc with rustup's own lld (for the hot-path order): the gcc
# runtime (libgcc_eh, the unwinder) comes from the system gcc. build.rs adds what the musl
# feature needs at link time.
musl_flags() {
    local sysroot gcc_lib
    sysroot=$(rustc --print sysroot)
    gcc_lib=$(dirname "$(gcc -print-libgcc-file-name)")
    echo "$static_flags -C linker=musl-gcc -C link-arg=-fuse-ld=lld" \
        "-C link-arg=-B$sysroot/lib/rustlib/$target/bin/gcc-ld -C link-arg=-L$gcc_lib"
}

build() { # RUSTFLAGS, then cargo's extra arguments
    local flags=$1
    shift
    TALLY_LINK_ORDER=1 RUSTFLAGS="$flags" \
        cargo build "${quiet[@]}" --release --locked --target "$target" -p tally "$@" >&2
}

# Runs at all: the CLI's version; a shim that finds no tool (exit 127, after the whole start-up
# and the PATH search); and a panic unwinds (printing to a full device panics; Rust's runtime
# ends it with 101, a broken unwinder with a signal).
runs() {
    local dir status=0 panicked=0
    "$binary" --version >/dev/null || return 1
    dir=$(mktemp -d)
    ln -s "$binary" "$dir/rustc"
    PATH=$dir TALLY=off "$dir/rustc" --version >/dev/null 2>&1 || status=$?
    if [[ -w /dev/full ]]; then
        TALLY_DIR=$dir/data "$binary" view --out "$dir/view.html" >/dev/full 2>/dev/null ||
            panicked=$?
    else
        panicked=101 # nowhere to print to that fails; the install test checks unwinding
    fi
    rm -rf "$dir"
    [[ $status == 127 && $panicked == 101 ]] ||
        { say "the binary does not run right (shim: $status, panic: $panicked)"; return 1; }
}

libc=${TALLY_LIBC:-auto}
case $libc in
    auto | musl | glibc) ;;
    *) say "TALLY_LIBC=$libc: expected musl or glibc"; exit 2 ;;
esac
if [[ $libc != glibc ]]; then
    if command -v musl-gcc >/dev/null && command -v gcc >/dev/null; then
        say "building tally (release, static, musl, --target $target)"
        if build "$(musl_flags)" --features musl && runs; then
            say "linked against musl"
            echo "$binary"
            exit 0
        fi
        say "the musl build failed; building against glibc"
    else
        say "musl-gcc not found (Debian: apt install musl-tools); building against glibc"
    fi
    if [[ $libc == musl ]]; then
        say "TALLY_LIBC=musl: not falling back to glibc"
        exit 1
    fi
fi
say "building tally (release, static, glibc, --target $target)"
if build "$static_flags" && runs; then
    say "linked against glibc"
elif say "linking in the hot-path order failed (the linker is not lld?); linking without it" &&
    RUSTFLAGS="$static_flags" cargo build "${quiet[@]}" --release --locked --target "$target" \
        -p tally >&2 && runs; then
    say "linked against glibc, without the hot-path order"
else
    say "a static build is not possible here; building a normal one"
    cargo build "${quiet[@]}" --release --locked -p tally >&2
    binary=$CARGO_TARGET_DIR/release/tally
fi
echo "$binary"
