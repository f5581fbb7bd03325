#!/usr/bin/env bash
# Two tally binaries side by side, interleaved, in front of the real `rustc --version` and a
# static no-op tool, with the static C execv baseline in the same run: what a change to the
# release build or the hot path gains or costs. Quicker than run.sh (no page-cache states, no
# cargo build); run.sh stays the reference.
#
#   bench/shim/compare.sh [--rounds N] OLD_TALLY NEW_TALLY     (default 1,500 rounds)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=1500
if [[ ${1:-} == --rounds ]]; then rounds=$2; shift 2; fi
old=${1:?usage: compare.sh [--rounds N] OLD_TALLY NEW_TALLY} new=${2:?usage: compare.sh [--rounds N] OLD_TALLY NEW_TALLY}
scratch=$(mktemp -d /tmp/tally-compare.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
real_rustc=$(rustc --print sysroot)/bin/rustc
toolchain_bin=$(dirname "$real_rustc")
printf 'int main(void) { return 0; }\n' >"$scratch/noop.c"
mkdir -p "$scratch/noop" "$scratch/c" "$scratch/c-noop"
gcc -O2 -static -o "$scratch/noop/rustc" "$scratch/noop.c"
gcc -O2 -static -DREAL_TOOL="\"$real_rustc\"" -o "$scratch/c/rustc" bench/shim/execv.c
gcc -O2 -static -DREAL_TOOL="\"$scratch/noop/rustc\"" -o "$scratch/c-noop/rustc" bench/shim/execv.c
for v in old new; do
    mkdir -p "$scratch/$v"
    cp "${!v}" "$scratch/$v/tally"
    ln -s "$scratch/$v/tally" "$scratch/$v/rustc"
    # The first run of each fills its version cache and creates its counter file.
    TALLY_DIR=$scratch/data-$v PATH=$scratch/$v:$toolchain_bin:$PATH "$scratch/$v/rustc" --version >/dev/null
    TALLY_DIR=$scratch/data-$v PATH=$scratch/$v:$scratch/noop:$PATH "$scratch/$v/rustc" --version >/dev/null
done
files="$scratch/old/tally $scratch/new/tally $scratch/c/rustc $scratch/c-noop/rustc"
for tool in rustc noop; do
    if [[ $tool == rustc ]]; then direct=$real_rustc c=$scratch/c/rustc tdir=$toolchain_bin; else direct=$scratch/noop/rustc c=$scratch/c-noop/rustc tdir=$scratch/noop; fi
    echo "== in front of $tool --version ($rounds rounds, interleaved)"
    python3 bench/shim/interleave.py --runs "$rounds" --warmup 20 --json "$scratch/$tool.json" \
        --refresh-every 200 --refresh "bash bench/shim/refresh.sh $files" \
        "direct=$direct --version" "c-execv=$c --version" \
        "old=TALLY_DIR=$scratch/data-old,PATH=$scratch/old:$tdir:$PATH::$scratch/old/rustc --version" \
        "new=TALLY_DIR=$scratch/data-new,PATH=$scratch/new:$tdir:$PATH::$scratch/new/rustc --version" >/dev/null
    python3 bench/shim/ratio.py "$scratch/$tool.json" direct c-execv
    python3 bench/shim/ratio.py "$scratch/$tool.json" direct old | grep -E "^  new "
done
