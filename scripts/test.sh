#!/usr/bin/env bash
# The whole test suite, as CI runs it: format, lints, then every test of every
# crate (unit, integration with real processes and sockets, doc tests).
set -euo pipefail
cd "$(dirname "$0")/.."
# Free disk on record: a cold debug target is about 3 GB (see Cargo.toml [profile.dev]).
df -h . | sed 's/^/disk: /'
bash scripts/setup.sh
bash scripts/test-deps.sh
bash scripts/toolchains.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
