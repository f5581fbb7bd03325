#!/usr/bin/env bash
# Regenerates shims/hot-path.order and shims/hot-path.ld, the link order of the shim's hot path
# (see build.rs and bench/shim/order.py), from traces of real runs of a release build:
#   1. `rustc --version` through the rustc shim (in front of a no-op tool),
#   2. a compile through RUSTC_WRAPPER (`tally /path/rustc args…`, as cargo runs it),
#   3. `cargo build` through the cargo shim, 4. `go build` through the go shim,
#   5. `rustc --version` through the shim in front of the rustup proxy, when rustup is here.
# Each run is traced natively (bench/shim/trace-hot.c: ptrace single-steps up to the exec), for
# the functions, and under valgrind's lackey, for the variables and read-only data; with perf,
# its page faults add the read-only data the kernel reads for it (system call arguments).
# Run it after changing the hot path, or when `order.sh --check` reports missing symbols
# (a new toolchain or Cargo.lock renames them). Anonymous constants are numbered within their
# crate: any change to a hot-path crate makes the .ld part stale, so regenerate after it.
# Needs gcc, valgrind, python3, binutils; perf if present.
#
# Usage: bench/shim/order.sh            regenerate, then relink and check
#        TALLY_LIBC=glibc bench/shim/order.sh   the same for the glibc build
#        bench/shim/order.sh --check [BINARY]   how much of the order a release binary follows
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
# The musl build's layout (what shims/release-build.sh builds where musl-gcc is); with
# TALLY_LIBC=glibc, the glibc build's (shims/hot-path-glibc.order and .ld).
order=$repo/shims/hot-path.order
[[ ${TALLY_LIBC:-} == glibc ]] && order=$repo/shims/hot-path-glibc.order
target=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
tally=$CARGO_TARGET_DIR/$target/release/tally

build() {
    echo "== building tally (release, as install.sh does: shims/release-build.sh)"
    tally=$(TALLY_LINK_MAP=${map:-} shims/release-build.sh --quiet | tail -n 1)
}

check() {
    local binary=$1
    python3 - "$order" "$binary" <<'PY'
import subprocess, sys
order = [l.strip() for l in open(sys.argv[1]) if l.strip()]
syms = {}
for line in subprocess.run(["nm", "-S", sys.argv[2]], capture_output=True, text=True).stdout.splitlines():
    p = line.split(None, 3)
    if len(p) == 3:  # no size
        p = [p[0], "0", p[1], p[2]]
    if len(p) == 4:
        syms.setdefault(p[3], (int(p[0], 16), int(p[1], 16), p[2]))
found = [n for n in order if n in syms]
# .text only: .init, .iplt and glibc's __libc_freeres_fn are sections of their own.
sections = subprocess.run(["readelf", "-SW", sys.argv[2]], capture_output=True, text=True).stdout
text = next(l.split() for l in sections.splitlines() if " .text " in l)
lo = int(text[text.index(".text") + 2], 16)
hi = lo + int(text[text.index(".text") + 4], 16)
code = [syms[n] for n in found if syms[n][2] in "tTwWiI" and lo <= syms[n][0] < hi]
span = (max(a + s for a, s, _ in code) - min(a for a, _, _ in code)) if code else 0
size = sum(s for _, s, _ in code)
print(f"hot-path order: {len(found)} of {len(order)} symbols are in {sys.argv[2]}; "
      f"the {len(code)} functions in .text ({size / 1024:.0f} KiB) span {span / 1024:.0f} KiB")
hot = next((l.split() for l in sections.splitlines() if " .rodata.hot " in l), None)
if hot:
    print(f"  read-only data gathered in .rodata.hot: {int(hot[hot.index('.rodata.hot') + 4], 16) / 1024:.0f} KiB "
          f"at {hot[hot.index('.rodata.hot') + 2]}")
    # Right after the ELF headers (in their page), where the first fault maps it with them.
    if int(hot[hot.index('.rodata.hot') + 3], 16) >= 4096:
        print("  .rodata.hot is NOT right after the ELF headers: check shims/hot-path.ld's INSERT")
else:
    print("  no .rodata.hot section (shims/hot-path.ld missing or not used)")
def start(name):
    row = next((l.split() for l in sections.splitlines() if f" {name} " in l), None)
    return int(row[row.index(name) + 2], 16) if row else None
stubs = [n for n in (".init", ".iplt") if start(n) is not None]
before = [n for n in stubs if start(n) < lo]
print(f"  {' and '.join(stubs) or 'no .init or .iplt'}: "
      + ("in front of .text" if before == stubs else "after .text (shims/hot-path-text.ld not used)"))
missing = len(order) - len(found)
if missing > len(order) // 10:
    print(f"  {missing} symbols are missing: regenerate with bench/shim/order.sh")
    sys.exit(1)
PY
}

if [[ ${1:-} == --check ]]; then
    [[ -n ${2:-} ]] || build
    check "${2:-$tally}"
    exit
fi

scratch=$(mktemp -d /tmp/tally-order.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
map=$scratch/tally.map # the link map of the binary the traces run, to name its sections
build
gcc -O2 -o "$scratch/trace-hot" bench/shim/trace-hot.c
mkdir -p "$scratch/shims" "$scratch/tools" "$scratch/project/src"
printf 'int main(void) { return 0; }\n' >"$scratch/noop.c"
for tool in rustc cargo go; do
    gcc -O2 -static -o "$scratch/tools/$tool" "$scratch/noop.c"
    ln -s "$tally" "$scratch/shims/$tool"
done
printf '[package]\nname = "demo"\nversion = "0.1.0"\nedition = "2021"\n' >"$scratch/project/Cargo.toml"
printf 'pub fn f() {}\n' >"$scratch/project/src/lib.rs"
export TALLY_DIR=$scratch/data
unset TALLY DO_NOT_TRACK RUSTC_WRAPPER CARGO_BUILD_RUSTC_WRAPPER TALLY_NEXT_WRAPPER
# A directory without the tool between the shims and the tool, as on most machines (PATH
# entries such as ~/.local/bin): the lookup's miss (an error made and dropped) is then part of
# the hot path too, not a page fault away from it.
path=$scratch/shims:$scratch/no-tools-here:$scratch/tools:$PATH

# name, then the command; every run once untraced first (version cache, counter file, weekday).
scenarios=(
    "rustc-shim|$scratch/shims/rustc --version"
    "wrapper|$tally $scratch/tools/rustc --crate-name demo --edition=2021 src/lib.rs --crate-type lib --emit=dep-info,metadata,link -C opt-level=3 -C embed-bitcode=no --out-dir target/debug/deps"
    "cargo-shim|$scratch/shims/cargo build --release"
    "go-shim|$scratch/shims/go build ./..."
)
rips=() data=() faults=()
trace() {
    local name=$1 cmd=$2 env_path=$3
    echo "== tracing $name"
    (cd "$scratch/project" && PATH=$env_path CARGO_CRATE_NAME=demo $cmd >/dev/null 2>&1) || true
    (cd "$scratch/project" && PATH=$env_path CARGO_CRATE_NAME=demo "$scratch/trace-hot" $cmd \
        >"$scratch/$name.rips" 2>/dev/null)
    (cd "$scratch/project" && PATH=$env_path CARGO_CRATE_NAME=demo valgrind -q --tool=lackey \
        --trace-mem=yes --log-file="$scratch/$name.lackey" $cmd >/dev/null 2>&1) || true
    if command -v perf >/dev/null &&
        (cd "$scratch/project" && PATH=$env_path CARGO_CRATE_NAME=demo perf record -q -N \
            -e page-faults -c 1 -d -o "$scratch/$name.perf" $cmd >/dev/null 2>&1); then
        perf script -i "$scratch/$name.perf" -F addr >"$scratch/$name.faults" 2>/dev/null || true
        faults+=("$scratch/$name.faults")
    fi
    rips+=("$scratch/$name.rips")
    data+=("$scratch/$name.lackey")
}
for s in "${scenarios[@]}"; do
    trace "${s%%|*}" "${s#*|}" "$path"
done
if proxy_dir=$(dirname "$(command -v rustup 2>/dev/null)") && [[ -x $proxy_dir/rustc ]]; then
    trace rustup-proxy "$scratch/shims/rustc --version" "$scratch/shims:$proxy_dir:$PATH"
fi
python3 bench/shim/order.py --binary "$tally" --rips "${rips[@]}" --data "${data[@]}" \
    --out "$order" --map "$map" --script "${order%.order}.ld" --faults "${faults[@]}"
map=$scratch/relinked.map
build # relinks: build.rs watches both files
check "$tally"

# Read-only data the traces could not see: the kernel reads some constants for the process
# (system call arguments), and perf only reports the first touch of each 64 KiB window, which
# the old layout may have hidden. One more round adds what `rustc --version` still faults on
# outside .rodata.hot, and relinks.
stragglers() {
    (cd "$scratch/project" && PATH=$path perf record -q -N -e page-faults -c 1 -d \
        -o "$scratch/after.perf" "$scratch/shims/rustc" --version >/dev/null 2>&1) || true
    perf script -i "$scratch/after.perf" -F addr >"$scratch/after.faults" 2>/dev/null || true
}
if [[ ${#faults[@]} -gt 0 ]]; then
    stragglers
    if python3 bench/shim/order.py --extend-script "${order%.order}.ld" --map "$map" \
        --faults "$scratch/after.faults"; then
        map=$scratch/relinked2.map
        build
        check "$tally"
        stragglers
        python3 bench/shim/order.py --extend-script "${order%.order}.ld" --dry-run \
            --map "$map" --faults "$scratch/after.faults" 2>/dev/null &&
            echo "  some read-only data still faults outside .rodata.hot: run order.sh again" ||
            echo "  rustc --version reads no read-only data outside .rodata.hot"
    fi
fi
map=
build # without writing a map (TALLY_LINK_MAP is part of the build's fingerprint)
