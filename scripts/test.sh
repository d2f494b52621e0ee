#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints and every test, after installing what the
# tests need when it is missing. The Kafka end-to-end test starts a tansu broker on
# 127.0.0.1; tansu is built once with cargo (about 11 minutes on 2 cores) into a cache
# folder outside the repository and reused afterwards. Debian's prometheus-alertmanager is
# installed with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${FEEDLOOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/feedloop}"
tansu_version=0.6.0
tansu="$cache/tansu-$tansu_version/bin/tansu"
if [ ! -x "$tansu" ]; then
    echo "installing tansu $tansu_version into $cache (once; about 11 minutes on 2 cores)"
    cargo install tansu --version "$tansu_version" --locked --features dynostore \
        --root "$cache/tansu-$tansu_version"
fi
export FEEDLOOP_TANSU="$tansu"

# The Alertmanager receiver's test starts Debian's Alertmanager on 127.0.0.1.
bash scripts/ensure-alertmanager.sh
export FEEDLOOP_REQUIRE_ALERTMANAGER=1

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
