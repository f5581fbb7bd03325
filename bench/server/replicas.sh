#!/usr/bin/env bash
# Replicas side by side in one run: ingestion with one and with three `tally-server serve` on
# one local store, the time for a replica to see another's report, and restarts on a store
# holding many reports of the current week.
#
#   bench/server/replicas.sh [VALID] [INVALID] [CONCURRENCY] [RESTART_SIZES]
#   e.g. bench/server/replicas.sh 20000 2000 64 "100000 1000000"
#   BASELINE=/path/to/older/tally-server bench/server/replicas.sh ...
#   bench/server/replicas.sh 20000 2000 64 ""          (no restart phase)
#
# With BASELINE (a tally-server built before checkpoints), every ingestion phase and every
# restart runs with it too, alternating with this tree's build (the baseline's store in the
# layout from before generations; its restart after a clean stop lists every report and reads
# its merged cache, after a crash it reads every report).
#
# 1. builds tally-server and the loadgen example (release); a key, the signed example config;
# 2. ingestion: VALID valid + INVALID invalid uploads over CONCURRENCY keep-alive connections,
#    to one replica, then (on a fresh store) spread over three replicas of one store;
# 3. visibility: with the three replicas (default --reconcile-secs), 10 reports written to one
#    and timed until another publishes them;
# 4. restart, for each size N: N reports written straight into the store's open generation
#    (`loadgen fill`); the first start reads every one of them (no checkpoint yet: what every
#    rebuild cost before checkpoints); SIGTERM (the shutdown writes checkpoint 1); a restart on
#    the checkpoint; 10,000 more reports in the open generation and a restart again.
# Bounded: fixed counts, a 60 s limit per ingestion phase, loopback only; everything under a
# temp dir, removed at the end (N = 1,000,000 needs about 5 GB of disk for a while).
set -euo pipefail

VALID=${1:-20000}
INVALID=${2:-2000}
CONCURRENCY=${3:-64}
RESTART_SIZES=${4-"100000 1000000"}
WEEK=2026-11-16
SERVER=
# shellcheck source=bench/server/setup.sh
source "$(dirname "$0")/setup.sh"

# start STORE LOG [BIN]: starts a replica, sets PORT and PID, and STARTED to the seconds it
# took until it listened (AppState::open: the newest checkpoint and the open generation read).
start() {
    local store=$1 log=$2 bin=${3:-$SERVER} began
    began=$(date +%s.%N)
    "$bin" serve --addr 127.0.0.1:0 --store "$store" --config "$WORK/config.json" \
        --key "$WORK/key.pub" >"$log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    wait_for_port "$log" "$PID"
    STARTED=$(echo "$(date +%s.%N) - $began" | bc)
}

# stop PID: SIGTERM (the server writes its checkpoints on the way out) and wait; sets STOPPED.
stop() {
    local began
    began=$(date +%s.%N)
    kill -TERM "$1"
    while kill -0 "$1" 2>/dev/null; do sleep 0.02; done
    STOPPED=$(echo "$(date +%s.%N) - $began" | bc)
}

BUILDS=(new)
if [ -n "${BASELINE:-}" ]; then BUILDS+=(baseline); fi
bin_of() { if [ "$1" = baseline ]; then echo "$BASELINE"; else echo "$SERVER"; fi; }

for build in "${BUILDS[@]}"; do
    echo "== [$build] ingestion, 1 replica: $VALID valid + $INVALID invalid uploads, $CONCURRENCY connections, local store"
    start "$WORK/one-$build" "$WORK/one-$build.log" "$(bin_of "$build")"
    ONE=$PID
    "$LOADGEN" run --addr "127.0.0.1:$PORT" --week "$WEEK" --valid "$VALID" --invalid "$INVALID" \
        --concurrency "$CONCURRENCY" --time-limit 60
    stop "$ONE"
done

for build in "${BUILDS[@]}"; do
    echo "== [$build] ingestion, 3 replicas on one store: the same load spread over them"
    ADDRS=()
    REPLICAS=()
    for i in 1 2 3; do
        start "$WORK/three-$build" "$WORK/three-$build-$i.log" "$(bin_of "$build")"
        ADDRS+=(--addr "127.0.0.1:$PORT")
        REPLICAS+=("$PID")
    done
    "$LOADGEN" run "${ADDRS[@]}" --week "$WEEK" --valid "$VALID" --invalid "$INVALID" \
        --concurrency "$CONCURRENCY" --time-limit 60 --accepted "$WORK/accepted-three-$build"
    if [ "$build" = new ]; then
        echo "== [$build] visibility: a report answered by replica 1, published by replica 2 (--reconcile-secs 5)"
        "$LOADGEN" visibility "${ADDRS[@]:0:4}" --week "$WEEK" --samples 10
    fi
    for pid in "${REPLICAS[@]}"; do stop "$pid"; done
    start "$WORK/three-$build" "$WORK/three-$build-verify.log" "$(bin_of "$build")"
    "$LOADGEN" verify --addr "127.0.0.1:$PORT" --store "$WORK/three-$build" --accepted "$WORK/accepted-three-$build"
    stop "$PID"
done

for N in $RESTART_SIZES; do
    STORE=$WORK/restart-$N
    echo "== [new] restart on $N reports of the current week"
    "$LOADGEN" fill --store "$STORE" --week "$WEEK" --reports "$N" --generation 0 --seed 1
    start "$STORE" "$WORK/restart-$N-1.log"
    FIRST=$STARTED
    stop "$PID"
    CHECKPOINT=$STOPPED
    SIZE=$(stat -c %s "$STORE/merged/$WEEK/1.json")
    start "$STORE" "$WORK/restart-$N-2.log"
    SECOND=$STARTED
    stop "$PID"
    "$LOADGEN" fill --store "$STORE" --week "$WEEK" --reports 10000 --generation 1 --seed 2
    start "$STORE" "$WORK/restart-$N-3.log"
    THIRD=$STARTED
    COUNTED=$(curl -s "http://127.0.0.1:$PORT/api/weeks" | grep -o '"reports":[0-9]*' | head -1)
    stop "$PID"
    printf '[new] N=%s: first start, every raw report read: %.2f s; shutdown writing checkpoint 1 (%s bytes): %.2f s\n' \
        "$N" "$FIRST" "$SIZE" "$CHECKPOINT"
    printf '[new] N=%s: restart on the checkpoint: %.2f s; with 10,000 new reports in the open generation: %.2f s (%s)\n' \
        "$N" "$SECOND" "$THIRD" "$COUNTED"
    rm -rf "$STORE"
    if [ -n "${BASELINE:-}" ]; then
        echo "== [baseline] restart on $N reports of the current week"
        "$LOADGEN" fill --store "$STORE" --week "$WEEK" --reports "$N" --flat --seed 1
        start "$STORE" "$WORK/restart-base-$N-1.log" "$BASELINE"
        FIRST=$STARTED
        stop "$PID"
        CHECKPOINT=$STOPPED
        start "$STORE" "$WORK/restart-base-$N-2.log" "$BASELINE"
        SECOND=$STARTED
        stop "$PID"
        "$LOADGEN" fill --store "$STORE" --week "$WEEK" --reports 10000 --flat --seed 2
        start "$STORE" "$WORK/restart-base-$N-3.log" "$BASELINE"
        THIRD=$STARTED
        COUNTED=$(curl -s "http://127.0.0.1:$PORT/api/weeks" | grep -o '"reports":[0-9]*' | head -1)
        stop "$PID"
        printf '[baseline] N=%s: first start, every raw report read: %.2f s; shutdown writing its merged cache: %.2f s\n' \
            "$N" "$FIRST" "$CHECKPOINT"
        printf '[baseline] N=%s: restart on the merged cache (every key listed): %.2f s; with 10,000 new reports (every report read): %.2f s (%s)\n' \
            "$N" "$SECOND" "$THIRD" "$COUNTED"
        rm -rf "$STORE"
    fi
done
if cat "$WORK"/*.log | grep -q '127\.0\.0\.1'; then
    echo "a server log holds an address" >&2
    exit 1
fi
