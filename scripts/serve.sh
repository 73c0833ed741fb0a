#!/usr/bin/env bash
# Quick start: builds Switchyard (release) and runs `switchyard serve` on the
# embedded default: one demo worker per core behind the balancer on :3000,
# routed by the default strategy. Extra arguments go to `switchyard serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --release --locked -p switchyard -- serve "$@"
