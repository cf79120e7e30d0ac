#!/usr/bin/env bash
# Runs the ema-jose `verify` bench (crates/ema-jose/benches/verify.rs) and prints, per algorithm,
# the throughput of the full ema-jose path and of its non-crypto part against raw aws-lc-rs
# verification with a cached parsed key. Ratios are taken inside each round (absolute figures
# drift on a shared machine, ratios much less); the last table is the median over the rounds.
#
# usage: scripts/bench-ratio.sh [rounds]     (default 3)
# env:   BENCH_CPU      core to pin to with taskset, when taskset exists (default 1)
#        BENCH_SECONDS  criterion measurement time per benchmark in seconds (default 5)
# Goals (docs/benchmarks.md): full/raw >= 0.95 for ES256 and EdDSA, >= 0.90 for RS256.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-3}
cpu=${BENCH_CPU:-1}
seconds=${BENCH_SECONDS:-5}
criterion_dir="${CARGO_TARGET_DIR:-target}/criterion"
algs=(ES256 EdDSA RS256)

pin=()
if command -v taskset >/dev/null 2>&1; then
    pin=(taskset -c "$cpu")
    echo "pinned to core $cpu"
else
    echo "taskset not found: running unpinned"
fi

cargo bench -p ema-jose --bench verify --no-run --quiet

# Median point estimate in nanoseconds of one criterion benchmark, from its estimates.json.
estimate() {
    local file="$criterion_dir/$1/new/estimates.json"
    grep -o '"median":{"confidence_interval":{[^}]*},"point_estimate":[0-9.e+-]*' "$file" |
        sed 's/.*"point_estimate"://'
}

results=$(mktemp)
log=$(mktemp)
trap 'rm -f "$results" "$log"' EXIT

for round in $(seq 1 "$rounds"); do
    "${pin[@]}" cargo bench -p ema-jose --bench verify --quiet -- \
        --warm-up-time 2 --measurement-time "$seconds" --noplot >"$log" 2>&1 ||
        { cat "$log"; exit 1; }
    echo
    echo "round $round/$rounds"
    printf '%-6s %12s %12s %16s %10s %10s\n' alg "raw ops/s" "full ops/s" "non-crypto ops/s" full/raw nc/raw
    for alg in "${algs[@]}"; do
        raw=$(estimate "verify_$alg/raw")
        full=$(estimate "verify_$alg/full")
        parse=$(estimate "verify_$alg/non_crypto")
        read -r raw_ops full_ops parse_ops ratio parse_ratio < <(awk -v r="$raw" -v f="$full" -v p="$parse" \
            'BEGIN { printf "%f %f %f %f %f\n", 1e9/r, 1e9/f, 1e9/p, r/f, r/p }')
        echo "$alg $raw_ops $full_ops $parse_ops $ratio" >>"$results"
        printf '%-6s %12.0f %12.0f %16.0f %10.3f %10.3f\n' \
            "$alg" "$raw_ops" "$full_ops" "$parse_ops" "$ratio" "$parse_ratio"
    done
done

echo
echo "median of $rounds rounds (goal for full/raw: ES256, EdDSA >= 0.95; RS256 >= 0.90)"
median() { # median of column $2 for algorithm $1
    grep "^$1 " "$results" | awk -v c="$2" '{ print $c }' | sort -g |
        awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
printf '%-6s %12s %12s %16s %10s %8s\n' alg "raw ops/s" "full ops/s" "non-crypto ops/s" full/raw goal
for alg in "${algs[@]}"; do
    goal=0.95
    [ "$alg" = RS256 ] && goal=0.90
    ratio=$(median "$alg" 5)
    verdict=$(awk -v q="$ratio" -v g="$goal" 'BEGIN { print (q >= g ? "met" : "MISSED") }')
    printf '%-6s %12.0f %12.0f %16.0f %10.3f %8s\n' \
        "$alg" "$(median "$alg" 2)" "$(median "$alg" 3)" "$(median "$alg" 4)" "$ratio" "$verdict"
done
