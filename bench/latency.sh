#!/usr/bin/env bash
# Builds the release binaries and runs the finding latency benchmark, which starts a tansu
# broker and `feedloop run` on 127.0.0.1 and writes the "Finding latency" section of
# bench/RESULTS.md. Options are passed to `feedloop-bench latency`; see
# `feedloop-bench latency --help`. tansu comes from FEEDLOOP_TANSU or the cache folder that
# scripts/test.sh installs it to.
set -euo pipefail

cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"

cargo build --release --locked -p feedloop -p feedloop-bench
exec "$target_dir/release/feedloop-bench" latency \
    --feedloop "$target_dir/release/feedloop" \
    --dir "$target_dir/bench/latency" \
    "$@"
