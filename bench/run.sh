#!/usr/bin/env bash
# Builds the release binaries and runs the throughput benchmark, which writes bench/RESULTS.md.
# Options are passed to `feedloop-bench run`; see `feedloop-bench run --help`.
set -euo pipefail

cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"

cargo build --release --locked -p feedloop -p feedloop-bench
exec "$target_dir/release/feedloop-bench" run \
    --feedloop "$target_dir/release/feedloop" \
    --dir "$target_dir/bench" \
    "$@"
