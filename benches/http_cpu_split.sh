#!/usr/bin/env bash
# User and system CPU per request, HAProxy `mode http` against Switchyard
# HTTP mode, on the e2e bench's setup (two one-worker nginx backends on core
# 1, each proxy on one thread on core 0, wrk c50 keep-alive on core 1),
# alternating for three runs. Where benches/e2e.sh gives the total, this says
# whether a difference is in user space or in the kernel.
#
#   bash benches/http_cpu_split.sh                # target/release/switchyard
#   BIN=/path/to/switchyard DUR=10 bash benches/http_cpu_split.sh
#   FLOOR=target/release/examples/h1_floor bash benches/http_cpu_split.sh
#   CLOSE=1 bash benches/http_cpu_split.sh        # a connection per request
#
# FLOOR adds the floor of a hand-written HTTP/1.1 path
# (benches/examples/h1_floor.rs) on port 9300, measured in the same rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/switchyard}
DUR=${DUR:-6}
WRK_HEADER=()
[ "${CLOSE:-0}" = 1 ] && WRK_HEADER=(-H "Connection: close")
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release -p switchyard" >&2; exit 1; }
for port in 9001 9002 9100 9200 9299 9300; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use already" >&2; exit 1
  fi
done
W=$(mktemp -d /tmp/switchyard-split.XXXXXX); chmod 755 "$W"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$W"; }
trap cleanup EXIT
# shellcheck source=benches/peers.sh
source benches/peers.sh
BACKENDS=()
start_backends "$W"
haproxy_http_config "$W/haproxy.cfg"
taskset -c 0 haproxy -f "$W/haproxy.cfg" -db >/dev/null 2>&1 & PIDS+=($!); HA=$!
taskset -c 0 "$BIN" serve --threads 1 --host 127.0.0.1 --port 9200 --workers 0 \
  --backend 127.0.0.1:9001 --backend 127.0.0.1:9002 --strategy builtin:round-robin \
  --mode http --log warn --admin 127.0.0.1:9299 >"$W/switchyard.log" 2>&1 & PIDS+=($!); SY=$!
if [ -n "${FLOOR:-}" ]; then
  taskset -c 0 "$FLOOR" 127.0.0.1:9300 127.0.0.1:9001 127.0.0.1:9002 >"$W/floor.log" 2>&1 & PIDS+=($!); FL=$!
fi
sleep 1.5
measure() { # NAME PORT PID
  local u0 s0 u1 s1 out n
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$3/stat")
  out=$(taskset -c 1 wrk -t1 -c50 -d"${DUR}s" "${WRK_HEADER[@]}" "http://127.0.0.1:$2/" 2>&1)
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$3/stat")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  awk -v n="$n" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$(getconf CLK_TCK)" -v name="$1" \
    'BEGIN { f = 1e6 / hz; printf "%-12s %8d requests  user %5.1f us  system %5.1f us  total %5.1f us\n", name, n, u*f/n, s*f/n, (u+s)*f/n }'
}
for _ in 1 2 3; do
  measure haproxy 9100 "$HA"
  measure switchyard 9200 "$SY"
  if [ -n "${FLOOR:-}" ]; then measure h1-floor 9300 "$FL"; fi
done
