#!/usr/bin/env bash
# Runs every test of zkdns. Installs what the tests need (Debian packages) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_packages test
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
