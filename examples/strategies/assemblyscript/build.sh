#!/usr/bin/env bash
# Builds canary.wasm with AssemblyScript (npm install assemblyscript). The
# stub runtime has no collector: fine for a strategy that allocates nothing
# per decision, which the SDK's views are written for.
set -euo pipefail
cd "$(dirname "$0")"
ASC=${ASC:-npx asc}
OUT=${OUT:-canary.wasm}
$ASC canary.ts -o "$OUT" --runtime stub -O3
