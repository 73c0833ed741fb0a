#!/usr/bin/env bash
# Installs what building Switchyard needs beyond the Rust toolchain itself:
# the WebAssembly targets the built-in and example strategies compile to.
# Idempotent; sourced by serve.sh and test.sh.
set -euo pipefail
if command -v rustup >/dev/null 2>&1; then
  installed=$(rustup target list --installed)
  for t in wasm32-unknown-unknown wasm32-wasip1; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
  done
fi
