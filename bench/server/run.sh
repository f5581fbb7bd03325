#!/usr/bin/env bash
# Load test of tally-server on loopback, then a SIGKILL crash check.
#
#   bench/server/run.sh [VALID] [INVALID] [CONCURRENCY]
#   DURABILITY=process-crash bench/server/run.sh ...   (default: disk)
#   SERVER=/path/to/tally-server bench/server/run.sh ... (another build, e.g. to compare two)
#
# 1. builds tally-server and the loadgen example (release);
# 2. makes a key, signs config-schema/example-config.json, starts `tally-server serve` on
#    127.0.0.1 with a local store (TALLY_NOW pins the clock);
# 3. throughput: VALID valid + INVALID invalid uploads over CONCURRENCY keep-alive connections;
# 4. crash: uploads again and SIGKILLs the server mid-stream;
# 5. restarts it on the same store and checks every report answered 2xx is stored and counted once.
# Bounded: fixed counts, a 60 s time limit per phase, loopback only; everything under a temp dir.
set -euo pipefail

VALID=${1:-20000}
INVALID=${2:-2000}
CONCURRENCY=${3:-64}
WEEK=2026-11-16
# shellcheck source=bench/server/setup.sh
source "$(dirname "$0")/setup.sh"

start_server() {
    : >"$WORK/server.log.new"
    if [ -f "$WORK/server.log" ]; then cat "$WORK/server.log" >>"$WORK/server.log.all"; fi
    mv "$WORK/server.log.new" "$WORK/server.log"
    "$SERVER" serve --addr 127.0.0.1:0 --store "$WORK/store" --config "$WORK/config.json" \
        --key "$WORK/key.pub" --durability "${DURABILITY:-disk}" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    PIDS=("$SERVER_PID")
    wait_for_port "$WORK/server.log" "$SERVER_PID"
}

start_server
echo "== throughput: $VALID valid + $INVALID invalid uploads, $CONCURRENCY connections, local store, durability ${DURABILITY:-disk}"
"$LOADGEN" run --addr "127.0.0.1:$PORT" --week "$WEEK" --valid "$VALID" --invalid "$INVALID" \
    --concurrency "$CONCURRENCY" --time-limit 60 --accepted "$WORK/accepted-1"

echo "== crash: uploading again, SIGKILL after 1.5 s"
"$LOADGEN" run --addr "127.0.0.1:$PORT" --week "$WEEK" --valid "$VALID" --invalid "$INVALID" \
    --concurrency "$CONCURRENCY" --time-limit 60 --accepted "$WORK/accepted-2" \
    --kill-pid "$SERVER_PID" --kill-after-ms 1500
wait "$SERVER_PID" 2>/dev/null || true
PIDS=()

echo "== restart and verify"
start_server
cat "$WORK/accepted-1" "$WORK/accepted-2" | grep -v '^$' >"$WORK/accepted"
"$LOADGEN" verify --addr "127.0.0.1:$PORT" --store "$WORK/store" --accepted "$WORK/accepted"
cat "$WORK/server.log" >>"$WORK/server.log.all"
if grep -q '127\.0\.0\.1' "$WORK/server.log.all"; then
    echo "the server log holds an address" >&2
    exit 1
fi
