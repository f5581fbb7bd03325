#!/usr/bin/env bash
# The system calls tally-server makes for N accepted uploads and the checkpoint at SIGTERM,
# counted with `strace -f -c`: a measure of the upload and checkpoint paths that does not swing
# with the load of the machine, unlike the throughput of run.sh.
#
#   bench/server/syscalls.sh [N] [SERVER]    (default 2000 uploads, this tree's release build)
#
# Loopback only, 8 connections, a local store under a temp dir, --durability disk, no
# checkpoint before SIGTERM (--flush-ms 10 minutes). Needs strace.
set -euo pipefail

N=${1:-2000}
SERVER=${2:-}
# shellcheck source=bench/server/setup.sh
source "$(dirname "$0")/setup.sh"

: >"$WORK/server.log"
strace -f -c -o "$WORK/counts" "$SERVER" serve --addr 127.0.0.1:0 --store "$WORK/store" \
    --config "$WORK/config.json" --key "$WORK/key.pub" --flush-ms 600000 >"$WORK/server.log" 2>&1 &
TRACER=$!
PIDS=("$TRACER")
wait_for_port "$WORK/server.log" "$TRACER"
"$LOADGEN" run --addr "127.0.0.1:$PORT" --week 2026-11-16 --valid "$N" --invalid 0 \
    --concurrency 8 --time-limit 60 --accepted "$WORK/accepted" | sed -n 1p
# SIGTERM to the server itself (strace does not pass its own on), then the counts.
kill -TERM "$(pgrep -P "$TRACER")"
wait "$TRACER" || true
PIDS=()
echo "== system calls for $N uploads and the checkpoint at SIGTERM ($SERVER)"
grep -E '^ *[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+' "$WORK/counts" | awk -v n="$N" \
    '{calls=$4; name=$NF; printf "%-16s %8d  %6.2f per upload\n", name, calls, calls / n}' |
    sort -k2 -nr | head -16
