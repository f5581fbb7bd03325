#!/usr/bin/env bash
# Shim benchmarks (bench/README.md, "Shims"), every comparison side by side in one run, interleaved:
#  1. `rustc --version`: direct (the toolchain's rustc), through a static C program that only
#     execv()s it (the baseline, gcc -static: glibc), through tally's shim (`tally-shim`, the
#     binary install.sh links the shims to, counting into a scratch data dir, mode local),
#     through a second binary to compare with when TALLY_BENCH_BASELINE names one (another
#     commit's release build, or the `tally` built beside `tally-shim`), and through the rustup
#     proxy.
#  2. A generated multi-crate workspace, `cargo build` from clean, with and without
#     RUSTC_WRAPPER=tally-shim.
# Usage: [TALLY_BENCH_BASELINE=/path/to/other/binary] bench/shim/run.sh [--quick]
#   (--quick: fewer runs, for a smoke test)
# Needs: gcc with static glibc, rustup, python3. Writes bench/out/shim/.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
out=$repo/bench/out/shim
mkdir -p "$out"
# rustc --version: 6,000 interleaved rounds (~12 minutes). The tool's own time swings by ±2 ms
# with this VM's state, and the paired ratio's 95% interval is still about ±0.05x at this
# count (±0.13x at 1,500). The no-op tool needs fewer rounds per variant.
runs=6000
noop_runs=4000
build_runs=8
crates=30
if [[ ${1:-} == --quick ]]; then runs=30; noop_runs=60; build_runs=2; crates=8; fi

echo "== building tally and tally-shim (release, as install.sh does: scripts/release-build.sh)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
built=$(scripts/release-build.sh --quiet | tail -n 1)
scratch=$(mktemp -d /tmp/tally-bench-shim.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
# The binary as install.sh installs it: copied. The file the linker just wrote runs slower:
# lld writes its output through a memory mapping, and a file written that way measured 0.02 to
# 0.05 ms a run slower than the same bytes written by cp (which goes through write(2)); most
# likely the page cache holds it in single pages instead of large folios, which makes every
# fault-around window dearer (bench/README.md, "Shims").
tally=$scratch/tally-shim
cp "${built%/*}/tally-shim" "$tally"
real_rustc=$(rustc --print sysroot)/bin/rustc
toolchain_bin=$(dirname "$real_rustc")
proxy=$(command -v rustc)

echo "== building the static C execv baseline"
mkdir -p "$scratch/c" "$scratch/shims"
gcc -O2 -static -DREAL_TOOL="\"$real_rustc\"" -o "$scratch/c/rustc" bench/shim/execv.c
# The other tally to compare with, side by side (TALLY_BENCH_BASELINE): in its own shims
# directory, counting into its own data directory.
base_variants=() base_noop_variants=() base_files=()
if [[ -n ${TALLY_BENCH_BASELINE:-} ]]; then
    mkdir -p "$scratch/base-shims"
    cp "$TALLY_BENCH_BASELINE" "$scratch/base-tally"
    ln -s "$scratch/base-tally" "$scratch/base-shims/rustc"
    base_files=("$scratch/base-tally")
    base_variants=("tally-baseline=TALLY_DIR=$scratch/base-data,PATH=$scratch/base-shims:$toolchain_bin:$PATH::$scratch/base-shims/rustc --version")
    base_noop_variants=("noop-tally-baseline=TALLY_DIR=$scratch/base-data,PATH=$scratch/base-shims:$scratch/noop:$PATH::$scratch/base-shims/rustc --version")
fi
ln -s "$tally" "$scratch/shims/rustc"

# Every binary twice, in the two states its pages can be in (bench/README.md, "Shims"): as
# just written (by `cp` or the linker; the page cache then holds it in large folios), and
# read back from disk by `exec` after being evicted, as after a reboot or once the page cache
# has let it go (small folios: every fault-around window costs more). Before .init and .iplt
# moved next to the hot code, tally ran 0.02 to 0.04 ms slower in that state. The second set lives in `reread/`,
# evicted with POSIX_FADV_DONTNEED once the copies are on disk; the warm-up reads them back.
mkdir -p "$scratch/reread/c" "$scratch/reread/shims"
cp "$tally" "$scratch/reread/tally-shim"
cp "$scratch/c/rustc" "$scratch/reread/c/rustc"
ln -s "$scratch/reread/tally-shim" "$scratch/reread/shims/rustc"
# Written to disk and dropped from the page cache (fresh copies; the next exec reads them back).
evict() { bash bench/shim/refresh.sh -- "$@"; }

export TALLY_DIR=$scratch/data
unset TALLY DO_NOT_TRACK RUSTC_WRAPPER
# The shim finds the real rustc on PATH after itself; the toolchain's bin first, so the shim
# hands over to the same binary `direct` runs.
export PATH=$scratch/shims:$toolchain_bin:$PATH
# The first run asks rustc for its version off the hot path: a detached helper fills the version
# cache and writes that run's count, holding `versions/pending.lock` shared until it has
# (tally_process::version). The C floor below opens the files it wrote: take the lock
# exclusively first, as the tests' `settle` does.
settle() {
    flock --exclusive --timeout 10 "$TALLY_DIR/versions/pending.lock" true ||
        { echo "run.sh: the first run's count was not written within 10 s" >&2; exit 1; }
}
"$scratch/shims/rustc" --version >/dev/null
settle
# The C floor in front of the real rustc too (bench/shim/count-floor.c, see below).
mkdir -p "$scratch/c-floor-rustc"
gcc -O2 -static -DREAL_TOOL="\"$real_rustc\"" -DSHIM="\"$scratch/shims/rustc\"" \
    -DDATA="\"$TALLY_DIR\"" -DVERSION_FILE="\"$(ls -t "$TALLY_DIR"/versions/* | head -1)\"" \
    -DCOUNTER_FILE="\"$(ls -t "$TALLY_DIR"/counters/*.count | head -1)\"" \
    -o "$scratch/c-floor-rustc/rustc" bench/shim/count-floor.c
mkdir -p "$scratch/reread/c-floor-rustc"
cp "$scratch/c-floor-rustc/rustc" "$scratch/reread/c-floor-rustc/rustc"
evict "$scratch/reread/tally-shim" "$scratch/reread/c/rustc" "$scratch/reread/c-floor-rustc/rustc"
# The re-read shim finds the real rustc after its own directory, like the first one.
reread_path=$scratch/reread/shims:$toolchain_bin:${PATH#"$scratch/shims:$toolchain_bin:"}

# interleave.py runs the variants round-robin (shuffled each round), so that this shared
# machine's drift falls on all of them alike; it prints wall medians and CPU means (the
# child's own user+system time) and what each adds to the first variant.
echo "== rustc --version (runs: $runs each, interleaved)"
# Every 200 rounds each binary is replaced by a fresh copy of itself (bench/shim/refresh.sh:
# one copy's placement in memory shifted its times by up to 0.03 ms for a whole run).
python3 bench/shim/interleave.py --runs "$runs" --warmup 20 --json "$out/rustc-version.json" \
    --refresh-every 200 --refresh "bash bench/shim/refresh.sh $tally $scratch/c/rustc $scratch/c-floor-rustc/rustc ${base_files[*]} -- $scratch/reread/tally-shim $scratch/reread/c/rustc $scratch/reread/c-floor-rustc/rustc" \
    "direct=$real_rustc --version" \
    "c-execv=$scratch/c/rustc --version" \
    "c-floor=$scratch/c-floor-rustc/rustc --version" \
    "tally-shim=$scratch/shims/rustc --version" \
    "c-execv-reread=$scratch/reread/c/rustc --version" \
    "c-floor-reread=$scratch/reread/c-floor-rustc/rustc --version" \
    "tally-shim-reread=PATH=$reread_path::$scratch/reread/shims/rustc --version" \
    "rustup-proxy=$proxy --version" "${base_variants[@]}" | tee "$out/rustc-version.txt"
# The ratio that matters (target <= 1.5x, bench/README.md), paired by round, with its 95% interval; for each
# state of the binaries against the C execv in the same state.
echo "  -- as written:"
python3 bench/shim/ratio.py "$out/rustc-version.json" direct c-execv | grep -v -E "^  [a-z-]*reread "
echo "  -- read back from disk:"
python3 bench/shim/ratio.py "$out/rustc-version.json" direct c-execv-reread | grep -E "paired|^  [a-z-]*reread "
echo "  counters written: $(ls "$TALLY_DIR/counters" | wc -l) file(s)"

# The same comparison in front of a static no-op "rustc": the tool itself costs almost nothing,
# so what each layer adds stands out of this machine's noise. Also tally with TALLY=off (find
# the tool and exec it, no counting), to split what counting costs from the rest, and the C
# floor (bench/shim/count-floor.c): the shim's system calls without any of its code.
echo "== the added time alone: in front of a static no-op tool (runs: $noop_runs each, interleaved)"
mkdir -p "$scratch/noop" "$scratch/c-noop"
printf 'int main(void) { return 0; }\n' >"$scratch/noop.c"
gcc -O2 -static -o "$scratch/noop/rustc" "$scratch/noop.c"
gcc -O2 -static -DREAL_TOOL="\"$scratch/noop/rustc\"" -o "$scratch/c-noop/rustc" bench/shim/execv.c
PATH=$scratch/shims:$scratch/noop:$PATH "$scratch/shims/rustc" --version
settle
# The floor: a C program making the shim's system calls on the files that run just used.
mkdir -p "$scratch/c-floor"
gcc -O2 -static -DREAL_TOOL="\"$scratch/noop/rustc\"" -DSHIM="\"$scratch/shims/rustc\"" \
    -DDATA="\"$TALLY_DIR\"" -DVERSION_FILE="\"$(ls -t "$TALLY_DIR"/versions/* | head -1)\"" \
    -DCOUNTER_FILE="\"$(ls -t "$TALLY_DIR"/counters/*.count | head -1)\"" \
    -o "$scratch/c-floor/rustc" bench/shim/count-floor.c
mkdir -p "$scratch/reread/c-noop" "$scratch/reread/c-floor"
cp "$scratch/c-noop/rustc" "$scratch/reread/c-noop/rustc"
cp "$scratch/c-floor/rustc" "$scratch/reread/c-floor/rustc"
evict "$scratch/reread/c-noop/rustc" "$scratch/reread/c-floor/rustc"
PATH=$scratch/shims:$scratch/noop:$PATH python3 bench/shim/interleave.py --runs "$noop_runs" --warmup 50 \
    --json "$out/noop.json" \
    --refresh-every 200 --refresh "bash bench/shim/refresh.sh $tally $scratch/c-noop/rustc $scratch/c-floor/rustc ${base_files[*]} -- $scratch/reread/tally-shim $scratch/reread/c-noop/rustc $scratch/reread/c-floor/rustc" \
    "noop-direct=$scratch/noop/rustc --version" \
    "noop-c-execv=$scratch/c-noop/rustc --version" \
    "noop-c-floor=$scratch/c-floor/rustc --version" \
    "noop-tally-shim=$scratch/shims/rustc --version" \
    "noop-tally-off=TALLY=off::$scratch/shims/rustc --version" \
    "noop-c-execv-reread=$scratch/reread/c-noop/rustc --version" \
    "noop-c-floor-reread=$scratch/reread/c-floor/rustc --version" \
    "noop-tally-reread=PATH=$scratch/reread/shims:$scratch/noop:$PATH::$scratch/reread/shims/rustc --version" \
    "${base_noop_variants[@]}" | tee "$out/noop.txt"
echo "  -- as written:"
python3 bench/shim/ratio.py "$out/noop.json" noop-direct noop-c-execv | grep -v -E "^  [a-z-]*reread "
echo "  -- read back from disk:"
python3 bench/shim/ratio.py "$out/noop.json" noop-direct noop-c-execv-reread | grep -E "paired|^  [a-z-]*reread "

echo "== generated workspace: $crates crates, cargo build from clean (runs: $build_runs)"
ws=$scratch/ws
mkdir -p "$ws"
members=""
for i in $(seq 1 "$crates"); do
    name=c$i
    members+="\"$name\","
    mkdir -p "$ws/$name/src"
    deps=""
    # A chain with some fan-in: each crate depends on up to two earlier ones.
    if ((i > 1)); then deps+="c$((i - 1)) = { path = \"../c$((i - 1))\" }"$'\n'; fi
    if ((i > 3)); then deps+="c$((i / 2)) = { path = \"../c$((i / 2))\" }"$'\n'; fi
    printf '[package]\nname = "%s"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n%s' "$name" "$deps" > "$ws/$name/Cargo.toml"
    {
        echo "pub fn value_$i(x: u64) -> u64 {"
        echo "    let mut acc = x;"
        for j in $(seq 1 40); do echo "    acc = acc.wrapping_mul($j).rotate_left($((j % 13))) ^ $((i * j));"; done
        echo "    acc"
        echo "}"
        # Enough code that each crate takes a realistic fraction of a second to compile.
        for j in $(seq 1 60); do
            echo "#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]"
            echo "pub struct S$j { pub a: u64, pub b: String, pub c: Vec<u32>, pub d: Option<Box<S$j>> }"
            echo "impl S$j { pub fn f(&self) -> String { format!(\"{}{}{:?}\", self.a, self.b, self.c) } }"
            echo "pub fn g$j<T: std::fmt::Debug + Clone>(x: &[T]) -> Vec<String> { x.iter().cloned().map(|v| format!(\"{v:?}\")).collect() }"
        done
        if ((i > 1)); then echo "pub fn chained(x: u64) -> u64 { c$((i - 1))::value_$((i - 1))(x) }"; fi
    } > "$ws/$name/src/lib.rs"
done
printf '[workspace]\nresolver = "2"\nmembers = [%s]\n' "${members%,}" > "$ws/Cargo.toml"
export CARGO_TARGET_DIR=$ws/target
# Plain cargo (not tally's shim) in both, so the only difference is the wrapper. The two
# variants alternate (plain, tally, plain, tally, ...) so that load from other work on this
# shared machine falls on both alike; hyperfine would run all of one, then all of the other.
cargo_bin=$(command -v cargo)
(cd "$ws" && $cargo_bin build -q && rm -rf "$ws/target") # warm the OS caches
python3 - "$ws" "$cargo_bin" "$tally" "$build_runs" "$out/cargo-build.json" <<'PY'
import json, os, resource, shutil, statistics, subprocess, sys, time
ws, cargo, tally, runs, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
variants = {"without-wrapper": "", "rustc-wrapper-tally": tally}
results = {k: {"wall": [], "cpu": []} for k in variants}
for i in range(runs):
    # A B, then B A: whatever drifts within a pair (this VM's speed, caches) falls on both.
    for name, wrapper in (list(variants.items()) if i % 2 == 0 else list(variants.items())[::-1]):
        shutil.rmtree(os.path.join(ws, "target"), ignore_errors=True)
        env = dict(os.environ, RUSTC_WRAPPER=wrapper)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([cargo, "build", "-q"], cwd=ws, env=env, check=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        results[name]["wall"].append(wall)
        results[name]["cpu"].append(cpu)
        print(f"  run {i + 1}: {name:20s} wall {wall:7.3f} s  cpu {cpu:7.3f} s", flush=True)
json.dump(results, open(out, "w"), indent=1)
a, b = (statistics.median(results[k]["wall"]) for k in variants)
ca, cb = (statistics.median(results[k]["cpu"]) for k in variants)
print(f"  wall median: without {a:.3f} s, with RUSTC_WRAPPER=tally {b:.3f} s: {100 * (b - a) / a:+.2f}% (target within 1%)")
print(f"  cpu  median: without {ca:.3f} s, with RUSTC_WRAPPER=tally {cb:.3f} s: {100 * (cb - ca) / ca:+.2f}%")
# The paired difference (each tally build minus the plain build of its pair), with a 95%
# confidence interval (Student's t): what this many builds can and cannot resolve.
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26,
       10: 2.23, 11: 2.20, 12: 2.18, 13: 2.16, 14: 2.14, 15: 2.13}
if runs > 1:
    for what in ("wall", "cpu"):
        plain, wrapped = results["without-wrapper"][what], results["rustc-wrapper-tally"][what]
        d = [w - p for p, w in zip(plain, wrapped)]
        base = statistics.mean(plain)
        half = T95.get(runs - 1, 2.0) * statistics.stdev(d) / len(d) ** 0.5
        print(f"  {what} paired difference: {100 * statistics.mean(d) / base:+.2f}% "
              f"(95% CI {100 * (statistics.mean(d) - half) / base:+.2f}% to "
              f"{100 * (statistics.mean(d) + half) / base:+.2f}%)")
PY
