#!/usr/bin/env bash
# Shim binaries side by side, interleaved, in front of the real `rustc --version` and a static
# no-op tool, with the static C execv baseline in the same run: what a change to the release
# build or the hot path gains or costs, or how two builds of it (static, dynamic) compare.
# Quicker than run.sh (no cargo build); run.sh stays the reference.
#
#   bench/shim/compare.sh [--rounds N] [--reread] [LABEL=]BINARY...     (default 1,500 rounds)
#
# Each BINARY (a tally-shim or a tally) is copied, as install.sh installs it, and linked as
# `rustc` in a shims directory of its own, counting into a data directory of its own; LABEL
# names it in the output (default: old and new for two binaries, else b1, b2, ...). With
# --reread every binary, and the C execv, is also timed as read back from disk: a second copy,
# evicted from the page cache before the run and at every refresh (bench/shim/refresh.sh), as
# after a reboot.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=1500 reread=0
while (($#)); do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --reread) reread=1; shift ;;
        *) break ;;
    esac
done
(($# >= 1)) || { echo "usage: compare.sh [--rounds N] [--reread] [LABEL=]BINARY..." >&2; exit 2; }
labels=() binaries=()
for arg in "$@"; do
    if [[ $arg == *=* ]]; then
        labels+=("${arg%%=*}") binaries+=("${arg#*=}")
    elif (($# == 2)); then
        labels+=("$([[ ${#labels[@]} == 0 ]] && echo old || echo new)") binaries+=("$arg")
    else
        labels+=("b$((${#labels[@]} + 1))") binaries+=("$arg")
    fi
done
scratch=$(mktemp -d /tmp/tally-compare.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
real_rustc=$(rustc --print sysroot)/bin/rustc
toolchain_bin=$(dirname "$real_rustc")
printf 'int main(void) { return 0; }\n' >"$scratch/noop.c"
mkdir -p "$scratch/noop" "$scratch/c" "$scratch/c-noop"
gcc -O2 -static -o "$scratch/noop/rustc" "$scratch/noop.c"
gcc -O2 -static -DREAL_TOOL="\"$real_rustc\"" -o "$scratch/c/rustc" bench/shim/execv.c
gcc -O2 -static -DREAL_TOOL="\"$scratch/noop/rustc\"" -o "$scratch/c-noop/rustc" bench/shim/execv.c
written=("$scratch/c/rustc" "$scratch/c-noop/rustc") read_back=()
states=(written)
if ((reread)); then
    states+=(reread)
    for c in c c-noop; do
        mkdir -p "$scratch/reread/$c"
        cp "$scratch/$c/rustc" "$scratch/reread/$c/rustc"
        read_back+=("$scratch/reread/$c/rustc")
    done
fi
for i in "${!labels[@]}"; do
    label=${labels[$i]}
    for state in "${states[@]}"; do
        dir=$scratch/$state/$label
        [[ $state == written ]] && dir=$scratch/$label
        mkdir -p "$dir"
        cp "${binaries[$i]}" "$dir/${binaries[$i]##*/}"
        ln -s "$dir/${binaries[$i]##*/}" "$dir/rustc"
        if [[ $state == written ]]; then written+=("$dir/${binaries[$i]##*/}"); else read_back+=("$dir/${binaries[$i]##*/}"); fi
        # The first run of each fills its version cache and creates its counter file.
        TALLY_DIR=$scratch/data-$label PATH=$dir:$toolchain_bin:$PATH "$dir/rustc" --version >/dev/null
        TALLY_DIR=$scratch/data-$label PATH=$dir:$scratch/noop:$PATH "$dir/rustc" --version >/dev/null
    done
done
refresh="bash bench/shim/refresh.sh ${written[*]}"
((reread)) && refresh+=" -- ${read_back[*]}"
for tool in rustc noop; do
    if [[ $tool == rustc ]]; then direct=$real_rustc c=c tdir=$toolchain_bin; else direct=$scratch/noop/rustc c=c-noop tdir=$scratch/noop; fi
    variants=("direct=$direct --version" "c-execv=$scratch/$c/rustc --version")
    ((reread)) && variants+=("c-execv-reread=$scratch/reread/$c/rustc --version")
    for label in "${labels[@]}"; do
        variants+=("$label=TALLY_DIR=$scratch/data-$label,PATH=$scratch/$label:$tdir:$PATH::$scratch/$label/rustc --version")
        ((reread)) && variants+=("$label-reread=TALLY_DIR=$scratch/data-$label,PATH=$scratch/reread/$label:$tdir:$PATH::$scratch/reread/$label/rustc --version")
    done
    echo "== in front of $tool --version ($rounds rounds, interleaved)"
    python3 bench/shim/interleave.py --runs "$rounds" --warmup 20 --json "$scratch/$tool.json" \
        --refresh-every 200 --refresh "$refresh" "${variants[@]}" >/dev/null
    echo "  -- as written:"
    python3 bench/shim/ratio.py "$scratch/$tool.json" direct c-execv | grep -v -E "^  [a-z0-9-]*-reread "
    if ((reread)); then
        echo "  -- read back from disk:"
        python3 bench/shim/ratio.py "$scratch/$tool.json" direct c-execv-reread | grep -E "^  [a-z0-9-]*-reread "
    fi
done
