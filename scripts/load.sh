#!/usr/bin/env bash
# Load and robustness runs of issue 5, with its parameters (figures in docs/benchmarks.md):
#   1. token endpoint: the jwt-bearer grant in process, then over HTTP with 64 keep-alive
#      connections for 30 s, a fresh ID-JAG per request (goal: HTTP >= 0.7x in process);
#   2. MCP tools/call through the bearer layer vs the same server with auth off, 64
#      connections, 30 s per mode (goal: <= 10% throughput loss), with memory figures;
#   3. bad traffic at the three servers over 1000 connections for 10 s, valid traffic alongside
#      (hard conditions: 4xx only, no dropped connection, servers up, valid traffic served).
# The `load` binary starts the servers itself, in process on OS-chosen loopback ports.
# Each run exits non-zero when a hard condition fails; speed goals print PASS or MISS.
#
# usage: scripts/load.sh [secs]      (default 30: the window of runs 1 and 2)
# env:   LOAD_CONNS   connections for runs 1 and 2 (default 64)
#        ABUSE_CONNS  abusive connections (default 1000)
#        ABUSE_SECS   length of the abuse run (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-30}
conns=${LOAD_CONNS:-64}
abuse_conns=${ABUSE_CONNS:-1000}
abuse_secs=${ABUSE_SECS:-10}

cargo build --release -p ema-examples --bin load
bin="${CARGO_TARGET_DIR:-target}/release/load"

# Both ends of every connection live in the one process.
need=$((2 * abuse_conns + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    ulimit -n "$need" 2>/dev/null || echo "warning: open file limit $(ulimit -n) < $need" >&2
fi

echo "machine: $(nproc) cores; $(uptime)"
status=0
"$bin" token-endpoint --secs "$secs" --conns "$conns" || status=1
echo
"$bin" mcp --secs "$secs" --conns "$conns" || status=1
echo
"$bin" abuse --conns "$abuse_conns" --secs "$abuse_secs" || status=1
exit "$status"
