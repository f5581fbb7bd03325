#!/bin/sh
# The wrapper benchmark: `RUSTC_WRAPPER=tally-shim` (the release build, counting outcomes, time
# buckets and diagnostics) against no wrapper and against a wrapper that only execs the
# compiler, on a 6-crate pipelined workspace and on a crate with 1,000 warnings, built from
# scratch and after an edit, interleaved in one run (bench.py says how).
#
# Usage: bench/wrapper/run.sh [ROUNDS [--no-floor] [PROJECT[:SCENARIO] ...]]   (default 10 rounds,
# all four cases; bench.py says what --no-floor does)
# TALLY_BIN=path uses that binary instead of building the release tally-shim.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
rounds=${1:-10}
if [ -z "${TALLY_BIN:-}" ]; then
    # The binary the cargo shim makes cargo's RUSTC_WRAPPER: tally-shim, built beside tally.
    TALLY_BIN=$(dirname "$("$root/scripts/release-build.sh" | tail -n 1)")/tally-shim
fi
echo "tally: $TALLY_BIN"
rustc -V
shift || true
exec python3 "$root/bench/wrapper/bench.py" "$TALLY_BIN" "$rounds" "$@"
