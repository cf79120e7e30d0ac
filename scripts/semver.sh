#!/usr/bin/env bash
# Public-API check of every published crate against the API baseline (.ci/api-baseline): a
# change that would break a user of the baseline's API fails unless the crate's version says
# so (0.x: the minor number). Additions pass. Run by .ci/run; see docs/releasing.md.
#
# How: rustdoc's JSON output of the whole workspace is built twice, once from the baseline
# commit (a detached worktree under the target dir) and once from the work tree, by one
# `cargo doc` each (dependencies are checked once and shared), then `cargo semver-checks`
# compares the two files of each crate. The JSON output is a nightly-only rustdoc flag, enabled
# on the stable toolchain with RUSTC_BOOTSTRAP=1 exactly as cargo-semver-checks itself does when
# it builds the files.
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.51.0
if [ "$(cargo semver-checks --version 2>/dev/null)" != "cargo-semver-checks $version" ]; then
    cargo install cargo-semver-checks --version "$version" --locked --quiet
fi

baseline=$(grep -v '^#' .ci/api-baseline | head -n1 | tr -d '[:space:]')
if ! git cat-file -e "$baseline^{commit}" 2>/dev/null; then
    echo "error: the API baseline $baseline (.ci/api-baseline) is not in this clone's history" >&2
    echo "       (a shallow clone? fetch the full history)" >&2
    exit 1
fi

target=${CARGO_TARGET_DIR:-$PWD/target}
work="$target/semver"
rm -rf "$work/base-json" "$work/current-json"
mkdir -p "$work/base-json" "$work/current-json"

rustdoc_json() { # $1: workspace root, $2: where the JSON files go
    (cd "$1" && CARGO_TARGET_DIR="$target" RUSTC_BOOTSTRAP=1 \
        RUSTDOCFLAGS="-Z unstable-options --output-format json" \
        cargo doc --workspace --no-deps --lib --all-features --locked --quiet)
    mv "$target"/doc/*.json "$2"/
}

git worktree remove --force "$work/base" 2>/dev/null || rm -rf "$work/base"
git worktree prune
git worktree add --quiet --detach "$work/base" "$baseline"
trap 'git worktree remove --force "$work/base" 2>/dev/null || true' EXIT
rustdoc_json "$work/base" "$work/base-json"
rustdoc_json . "$work/current-json"

# The published crates: every workspace member whose `publish` is not false.
crates=$(cargo metadata --no-deps --format-version 1 --locked | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p.get("publish") != []:
        print(p["name"].replace("-", "_"))')

status=0
for crate in $crates; do
    if [ ! -f "$work/base-json/$crate.json" ]; then
        echo "$crate: new since the baseline, nothing to compare"
        continue
    fi
    echo "$crate:"
    cargo semver-checks --color never \
        --baseline-rustdoc "$work/base-json/$crate.json" \
        --current-rustdoc "$work/current-json/$crate.json" || status=1
done
if [ "$status" != 0 ]; then
    echo "error: a public API changed incompatibly; bump the crate's version or move .ci/api-baseline (docs/releasing.md)" >&2
fi
exit "$status"
