#!/usr/bin/env bash
# The whole test suite (the README's test command): format, lints, every test.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
