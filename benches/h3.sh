#!/usr/bin/env bash
# HTTP/3 through Switchyard against HTTP/1.1 through Switchyard, same
# backends, same rounds: requests per second and Switchyard's CPU per
# request (utime+stime from /proc over requests served).
#
# Switchyard runs `--mode http --h3` on one thread pinned to core 0 (the
# QUIC listener has its own thread, on the same core); two one-worker nginx
# backends and the clients run on core 1. HTTP/1.1 load: wrk, keep-alive.
# HTTP/3 load: benches/h3load.rs (the h3 crate's client over quinn; Debian's
# h2load has no HTTP/3), C connections with S requests in flight each.
#
#   bash benches/h3.sh                    # 5 rounds x 5 s, 50 in flight, path /
#   ROUNDS=3 CONNS=10 STREAMS=5 bash benches/h3.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNS=${CONNS:-10}
STREAMS=${STREAMS:-5}
WORK=$(mktemp -d /tmp/switchyard-h3.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$WORK"; }
trap cleanup EXIT
fail() { echo "h3: $*" >&2; exit 1; }
# shellcheck source=benches/peers.sh
source benches/peers.sh
for tool in nginx wrk; do
  command -v "$tool" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk >/dev/null; }
done
bash scripts/setup.sh
cargo build --release --locked -p switchyard -p switchyard-benches --bin switchyard --bin h3load >/dev/null 2>&1 \
  || cargo build --release --locked -p switchyard -p switchyard-benches --bin switchyard --bin h3load
BACKENDS=()
start_backends "$WORK"
taskset -c 0 target/release/switchyard serve --threads 1 --host 127.0.0.1 --port 9200 --workers 0 \
  --backend 127.0.0.1:9001 --backend 127.0.0.1:9002 --mode http --h3 --log info >"$WORK/sy.log" 2>&1 &
PIDS+=($!); SY=$!
sleep 1.5
grep -q "HTTP/3 listening" "$WORK/sy.log" || fail "no HTTP/3 listener: $(cat "$WORK/sy.log")"
ticks() { awk '{print $14+$15}' "/proc/$SY/stat"; }
TICK=$(getconf CLK_TCK)
h1() { taskset -c 1 wrk -t1 -c$((CONNS * STREAMS)) -d"${1}s" --timeout 10s http://127.0.0.1:9200/ 2>&1; }
h3() { taskset -c 1 target/release/h3load 127.0.0.1:9200 "$CONNS" "$STREAMS" "$1" / 2>&1; }
h1 2 >/dev/null; h3 2 >/dev/null
echo "round proto rps proxy_us" > "$WORK/results"
for r in $(seq "$ROUNDS"); do
  for proto in h1 h3; do
    t0=$(ticks)
    out=$($proto "$DURATION")
    t1=$(ticks)
    if [ "$proto" = h1 ]; then
      grep -q "Socket errors\|Non-2xx" <<<"$out" && fail "wrk: $out"
      reqs=$(awk '/requests in/ {print $1}' <<<"$out"); rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    else
      [ "$(awk '{print $4}' <<<"$out")" = 0 ] || fail "h3load: $out"
      reqs=$(awk '{print $2}' <<<"$out"); rps=$(awk '{print $8}' <<<"$out")
    fi
    echo "$r $proto $rps $(awk -v t=$((t1 - t0)) -v k="$TICK" -v n="$reqs" 'BEGIN {printf "%.1f", t / k / n * 1e6}')" >> "$WORK/results"
  done
done
cat "$WORK/results" > "${RESULTS:-/tmp/switchyard-h3-results.txt}"
echo "HTTP/3 vs HTTP/1.1 through Switchyard, $CONNS connections x $STREAMS in flight (wrk: $((CONNS * STREAMS)) connections), ${DURATION}s x $ROUNDS rounds; medians"
python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
med = lambda p, i: statistics.median(float(r[i]) for r in rows if r[1] == p)
print("| client | req/s | Switchyard CPU per request |")
print("|---|---|---|")
for p, name in (("h1", "HTTP/1.1 (wrk, keep-alive)"), ("h3", "HTTP/3 (h3load: h3 over quinn)")):
    print(f"| {name} | {med(p, 2):.0f} | {med(p, 3):.1f} us |")
ratios = sorted(float(a[3]) / float(b[3]) for a in rows for b in rows if a[0] == b[0] and a[1] == "h3" and b[1] == "h1")
print(f"\nHTTP/3 CPU per request vs HTTP/1.1, per round: {statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})")
PY
