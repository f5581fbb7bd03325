# Sourced by the benchmarks of this folder (run.sh, syscalls.sh, replicas.sh): what each of
# them starts with.
#
# - builds tally-server and the loadgen example (release) and pins the clock (TALLY_NOW);
# - sets ROOT, SERVER (unless the caller set it: another build), LOADGEN and WORK, a temp dir
#   holding a fresh key (key.pub, key.sec) and the example config signed with it (config.json);
# - on exit, kills every process id in PIDS (the caller adds what it starts) and removes WORK.
#
# wait_for_port LOG PID: sets PORT once the server writing LOG listens; if it does not within
# 5 minutes, or PID ends first, prints LOG and exits 1.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export TALLY_NOW=2026-11-24

cargo build --quiet --release --manifest-path "$ROOT/Cargo.toml" -p tally-server --bin tally-server --example loadgen
SERVER=${SERVER:-$CARGO_TARGET_DIR/release/tally-server}
LOADGEN=$CARGO_TARGET_DIR/release/examples/loadgen

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

"$SERVER" keygen --no-password -p "$WORK/key.pub" -s "$WORK/key.sec" >/dev/null
cp "$ROOT/config-schema/example-config.json" "$WORK/config.json"
"$SERVER" sign "$WORK/config.json" -s "$WORK/key.sec" >/dev/null

wait_for_port() {
    local log=$1 pid=$2
    PORT=
    for _ in $(seq 1 6000); do
        PORT=$(sed -n 's/^tally-server: listening on port //p' "$log")
        if [ -n "$PORT" ]; then return; fi
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        sleep 0.05
    done
    echo "server did not start:" >&2
    cat "$log" >&2
    exit 1
}
