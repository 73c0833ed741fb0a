#!/usr/bin/env bash
# Builds canary.wasm with Zig (PyPI's `ziglang` ships it: python3 -m ziglang).
# wasm32-freestanding: no libc, no WASI. -fno-entry: a strategy is a library
# of exports. -rdynamic: without it the `export fn`s are not exported. The
# target and -O come before the -M module flags they apply to. ReleaseFast:
# ReleaseSmall's byte-at-a-time reads cost about 20 times the fuel.
set -euo pipefail
cd "$(dirname "$0")"
ZIG=${ZIG:-zig}
SDK=${SDK:-../../../guest-sdk/zig}
OUT=${OUT:-canary.wasm}
"$ZIG" build-exe -target wasm32-freestanding -fno-entry -rdynamic -O ReleaseFast \
  --dep switchyard -Mroot=canary.zig -Mswitchyard="$SDK/switchyard.zig" \
  -femit-bin="$OUT"
