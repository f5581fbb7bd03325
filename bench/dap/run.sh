#!/usr/bin/env bash
# Private aggregation on this machine, in one run: the client's cost beside prio's sharding
# (interleaved rounds), then leader + helper throughput on loopback beside prio's own
# preparation cost, then a standby replica's takeover of each (kill -9 until it listens). The
# aggregators are `tally-server dap leader` and `dap helper`, on the local disk through
# tally-service's store.
# Usage: bench/dap/run.sh [REPORTS] [ENTRIES] [CONNECTIONS] [CLIENT_ROUNDS] [TAKEOVERS]
set -euo pipefail
cd "$(dirname "$0")/../.."
reports=${1:-20000}
entries=${2:-1000}
connections=${3:-32}
rounds=${4:-1000}
takeovers=${5:-5}

cargo build --quiet --release -p tally-server --bin tally-server
cargo build --quiet --release -p tally-dap --example dap_throughput
echo "== $(date -u +%FT%TZ) on $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== client: cargo bench -p tally-dap --bench client -- $rounds"
cargo bench --quiet -p tally-dap --bench client -- "$rounds" 2>/dev/null | grep -v '^$'
echo "== leader + helper: dap_throughput --reports $reports --entries $entries --connections $connections --takeovers $takeovers"
target/release/examples/dap_throughput --server target/release/tally-server \
    --reports "$reports" --entries "$entries" --connections "$connections" --takeovers "$takeovers"
