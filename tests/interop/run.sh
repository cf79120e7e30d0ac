#!/usr/bin/env bash
# Interop: the official MCP SDK clients (TypeScript `@modelcontextprotocol/client`, Python `mcp`)
# run the whole EMA flow and the standard MCP authorization code flow against our reference
# servers (`demo --serve`) and call tools; then rmcp's own EMA client helper does the EMA flow
# (examples/reference/tests/rmcp_ema_client.rs). Installs the pinned dependencies into
# tests/interop/ts/node_modules and tests/interop/python/.venv (reused while package-lock.json /
# requirements.txt are unchanged). Exits non-zero if any client fails. See tests/interop/README.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
start=$SECONDS

say() { printf '\n-- interop: %s\n' "$*"; }
stamp_of() { sha256sum "$1" | cut -d' ' -f1; }

say "build the demo binary"
cargo build -p ema-examples --bin demo --locked --quiet
demo="${CARGO_TARGET_DIR:-target}/debug/demo"

say "TypeScript dependencies (npm ci)"
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
    echo "Node.js >= 20 is required (found: $(node --version 2>/dev/null || echo none))" >&2
    exit 1
fi
ts="$here/ts"
if [ "$(cat "$ts/node_modules/.interop-stamp" 2>/dev/null)" != "$(stamp_of "$ts/package-lock.json")" ]; then
    (cd "$ts" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    stamp_of "$ts/package-lock.json" > "$ts/node_modules/.interop-stamp"
else
    echo "reusing $ts/node_modules"
fi

say "Python dependencies (venv + pip install -r)"
py="$here/python"
if [ "$(cat "$py/.venv/.interop-stamp" 2>/dev/null)" != "$(stamp_of "$py/requirements.txt")" ]; then
    rm -rf "$py/.venv"
    python3 -m venv "$py/.venv"
    "$py/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$py/requirements.txt"
    stamp_of "$py/requirements.txt" > "$py/.venv/.interop-stamp"
else
    echo "reusing $py/.venv"
fi

say "start demo --serve"
work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
"$demo" --serve > "$work/servers.json" 2> "$work/servers.log" &
server_pid=$!
for _ in $(seq 1 300); do
    [ -s "$work/servers.json" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/servers.log" >&2; echo "demo --serve exited" >&2; exit 1; }
    sleep 0.1
done
servers=$(head -n 1 "$work/servers.json")
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert {"idp","authorization_server","mcp"} <= d.keys()' "$servers" \
    || { echo "demo --serve printed no server URLs: '$servers'" >&2; exit 1; }
echo "$servers"

status=0
say "TypeScript SDK client"
t=$SECONDS
if (cd "$ts" && timeout 120 node client.mjs "$servers"); then ts_result=pass; else ts_result=FAIL; status=1; fi
echo "TypeScript: $ts_result ($((SECONDS - t)) s)"

say "Python SDK client"
t=$SECONDS
if timeout 120 "$py/.venv/bin/python" "$py/client.py" "$servers"; then py_result=pass; else py_result=FAIL; status=1; fi
echo "Python: $py_result ($((SECONDS - t)) s)"

if [ "$status" -ne 0 ]; then
    echo "server log:" >&2
    cat "$work/servers.log" >&2
fi

say "rmcp's EMA client helper (cargo test -p ema-examples --test rmcp_ema_client)"
t=$SECONDS
if cargo test -p ema-examples --test rmcp_ema_client --locked --quiet; then rs_result=pass; else rs_result=FAIL; status=1; fi
echo "rmcp: $rs_result ($((SECONDS - t)) s)"

say "TypeScript $ts_result, Python $py_result, rmcp $rs_result; $((SECONDS - start)) s in all"
exit "$status"
