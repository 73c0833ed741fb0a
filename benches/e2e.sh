#!/usr/bin/env bash
# End-to-end proxy benchmark on loopback: Switchyard in TCP mode (a
# WebAssembly strategy deciding every connection) against HAProxy `mode tcp`
# and nginx `stream`, each at its documented best settings, and against
# hitting a backend directly.
#
# Method: two one-worker nginx backends; each proxy with one thread, pinned to
# core 0; wrk and the backends on core 1. Rounds rotate the order of the
# targets, and every target gets the same warm-up. On a 2-core machine the
# proxies saturate it, so the figure that matters is the proxy's own CPU time
# per request (utime+stime from /proc, over requests served), given as a ratio
# to HAProxy's in the same round (seconds apart, so the machine's drift
# cancels). Also: the whole machine's CPU per request, syscalls per request
# (counted by `strace -c` over a short run: a count, not a time), and a flag
# on every round in which other user-space processes used CPU (more than a
# twentieth of a core); flagged rounds are left out when three clean ones
# remain.
#
#   bash benches/e2e.sh                         # 5 rounds x 5 s, c50, path /
#   ROUNDS=7 DURATION=5 URLPATH=/big bash benches/e2e.sh    # 4.9 KB responses
#   URLPATH=/huge bash benches/e2e.sh           # 256 KB responses
#   CLOSE=1 bash benches/e2e.sh                 # a connection (and a decision) per request
#   FORWARD=copy bash benches/e2e.sh            # Switchyard's forwarding mode
#   BASELINE=/path/to/old/switchyard bash benches/e2e.sh   # an older build, same rounds
#   BIN=/path/to/switchyard bash benches/e2e.sh        # a build other than target/release
#   BASELINE="/a/switchyard /b/switchyard" ...          # several (switchyard-base, -base2)
#   HAPROXY_SPLICE=response URLPATH=/huge bash benches/e2e.sh   # HAProxy always splicing responses
#   NATIVE=1 CLOSE=1 bash benches/e2e.sh       # adds the same strategy run natively
#                                               # (`native:NAME`): what the sandbox costs
#   MODE=http bash benches/e2e.sh               # layer 7: Switchyard HTTP mode (a decision per
#                                               # request) against HAProxy `mode http` and nginx
#                                               # `proxy_pass`, both with upstream keep-alive
#
# Any socket error, non-2xx answer or strategy fallback aborts the run. The
# script checks that the WebAssembly strategy made the decisions (its count,
# logged when Switchyard stops). Loopback only. Installs haproxy, nginx (with
# its stream module), wrk and strace with apt-get if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNS=${CONNS:-50}
URLPATH=${URLPATH:-/}
STRATEGY=${STRATEGY:-builtin:round-robin}
FORWARD=${FORWARD:-auto}
CLOSE=${CLOSE:-0}
BASELINE=${BASELINE:-}
NATIVE=${NATIVE:-0}
# HAProxy's splicing: auto (its heuristics decide), response or request
# (always, that direction).
HAPROXY_SPLICE=${HAPROXY_SPLICE:-auto}
MODE=${MODE:-tcp}
case "$MODE" in tcp|http) ;; *) echo "MODE is tcp or http" >&2; exit 2 ;; esac
WRK_HEADER=()
[ "$CLOSE" = 1 ] && WRK_HEADER=(-H "Connection: close")
WORK=$(mktemp -d /tmp/switchyard-e2e.XXXXXX)
# nginx workers run as an unprivileged user: they must be able to read the files.
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  if [ -n "${KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
fail() { echo "e2e: $*" >&2; exit 1; }
# shellcheck source=benches/peers.sh
source benches/peers.sh

need=()
for tool in haproxy nginx wrk strace; do command -v "$tool" >/dev/null || need+=("$tool"); done
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# A port taken by something else (a previous run's leftovers) would have
# the proxies fail to start and wrk measure whatever answers there.
for port in 9001 9002 9100 9200 9201 9202 9203 9204 9300; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    fail "port $port is in use already (a previous run's processes?): $(ss -ltnp "sport = :$port" 2>/dev/null | tail -n +2)"
  fi
done
bash scripts/setup.sh
cargo build --release --locked -p switchyard >/dev/null 2>&1 || cargo build --release --locked -p switchyard
BIN=${BIN:-target/release/switchyard}

# ---- backends: two nginx instances, one worker each, on core 1 -------------
BACKENDS=()
start_backends "$WORK"

# ---- the proxies, each pinned to core 0 ------------------------------------
if [ "$MODE" = tcp ]; then
# HAProxy at its documented best for TCP: splicing (splice-auto lets its
# heuristics decide, and spliced almost nothing here; HAPROXY_SPLICE=response
# forces it for responses, its best for large ones), and the "smart" accept
# and connect that save a packet each.
haproxy_config "$WORK/haproxy.cfg" "mode tcp" "option splice-$HAPROXY_SPLICE" \
  "option tcp-smart-accept" "option tcp-smart-connect"
else
haproxy_http_config "$WORK/haproxy.cfg"
fi
taskset -c 0 haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>&1 &
PIDS+=($!); HAPROXY=$!

mkdir -p "$WORK/stream"
if [ "$MODE" = tcp ]; then
# nginx stream: one worker, round-robin, reuseport; it has no splice, and
# its listen takes no `deferred` (nginx http and HAProxy defer accepts).
cat > "$WORK/stream/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
daemon off;
error_log $WORK/stream/error.log;
pid $WORK/stream/nginx.pid;
events { worker_connections 8192; }
stream {
  upstream b { server 127.0.0.1:9001; server 127.0.0.1:9002; }
  server { listen 127.0.0.1:9300 reuseport; proxy_pass b; }
}
CONF
else
# nginx proxy_pass with an upstream keep-alive pool larger than the client
# count (a smaller one churns connections), X-Forwarded-For added.
cat > "$WORK/stream/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $WORK/stream/error.log;
pid $WORK/stream/nginx.pid;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/stream; proxy_temp_path $WORK/stream;
  fastcgi_temp_path $WORK/stream; uwsgi_temp_path $WORK/stream; scgi_temp_path $WORK/stream;
  upstream b { server 127.0.0.1:9001; server 127.0.0.1:9002; keepalive 256; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:9300 reuseport deferred;
    location / {
      proxy_pass http://b;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
CONF
fi
taskset -c 0 nginx -c "$WORK/stream/nginx.conf" -p "$WORK/stream" >/dev/null 2>&1 &
PIDS+=($!); NGINX=$!

start_switchyard() { # BIN PORT LOG [ARGS...]
  local bin=$1 port=$2 log=$3
  shift 3
  taskset -c 0 "$bin" serve --threads 1 --host 127.0.0.1 --port "$port" --workers 0 \
    --backend 127.0.0.1:9001 --backend 127.0.0.1:9002 --strategy "$STRATEGY" \
    --forward "$FORWARD" --log info "$@" >"$log" 2>&1 &
  PIDS+=($!)
}
start_switchyard "$BIN" 9200 "$WORK/switchyard.log" --mode "$MODE"; SWITCHYARD=$!
PEER=nginx-stream
[ "$MODE" = http ] && PEER=nginx-http
TARGETS=(direct:9001: haproxy-$MODE:9100:$HAPROXY $PEER:9300:$NGINX switchyard-$MODE:9200:$SWITCHYARD)
if [ "$NATIVE" = 1 ]; then
  case "$STRATEGY" in builtin:*) ;; *) fail "NATIVE=1 needs a builtin: STRATEGY" ;; esac
  wasm_strategy=$STRATEGY
  STRATEGY="native:${STRATEGY#builtin:}"
  start_switchyard "$BIN" 9202 "$WORK/native.log" --mode "$MODE"
  STRATEGY=$wasm_strategy
  TARGETS+=(switchyard-native:9202:$!)
fi
# BASELINE may name several builds, separated by spaces: switchyard-base,
# switchyard-base2, ... in that order, all in the same rounds.
k=0
for base in $BASELINE; do
  k=$((k + 1))
  [ -x "$base" ] || fail "BASELINE=$base is not an executable"
  port=$((9201 + (k > 1 ? k + 1 : 0)))
  name=switchyard-base; [ $k -gt 1 ] && name=switchyard-base$k
  # Builds from before HTTP mode have no --mode (and are TCP only).
  if "$base" serve --help | grep -q -- "--mode"; then
    start_switchyard "$base" $port "$WORK/baseline$k.log" --mode "$MODE"
  else
    [ "$MODE" = tcp ] || fail "BASELINE $base has no HTTP mode"
    start_switchyard "$base" $port "$WORK/baseline$k.log"
  fi
  TARGETS+=($name:$port:$!)
done
sleep 1.5

# ---- measuring -------------------------------------------------------------
TICK=$(getconf CLK_TCK)
# CPU ticks of a process and its threads and children (nginx's workers).
proc_ticks() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
    [ -r "/proc/$p/stat" ] && total=$((total + $(awk '{print $14+$15}' "/proc/$p/stat")))
  done
  echo "$total"
}
backend_ticks() { local t=0 p; for p in "${BACKENDS[@]}"; do t=$((t + $(proc_ticks "$p"))); done; echo "$t"; }
# Busy ticks of the whole machine: user, nice, system, irq, softirq (not
# idle, iowait, or steal: time the hypervisor gave to someone else).
machine_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8}' /proc/stat; }

# wrk_checked PORT SECONDS -> wrk's output; aborts on any socket error or
# non-2xx answer. A 10 s timeout instead of wrk's 2 s: a proxy slowed by
# strace must not fail a run for being traced.
wrk_checked() {
  local out
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$2s" --timeout 10s --latency "${WRK_HEADER[@]}" "http://127.0.0.1:$1$URLPATH" 2>&1) \
    || fail "wrk against :$1 failed: $out"
  if grep -q "Non-2xx" <<<"$out"; then fail "error responses from :$1$URLPATH:
$out"; fi
  if grep -q "Socket errors" <<<"$out"; then fail "socket errors against :$1$URLPATH:
$out"; fi
  grep -q "requests in" <<<"$out" || fail "no result from wrk against :$1: $out"
  echo "$out"
}

# Processes whose CPU is the benchmark's own: the proxies, the backends,
# their children, this script.
known_pids() {
  local p
  for p in "${PIDS[@]}" $$; do echo "$p"; pgrep -P "$p" 2>/dev/null || true; done
}

# run ROUND NAME PORT PID: one measured run, appended to results.
run() {
  local round=$1 name=$2 port=$3 pid=$4 p0=0 p1=0 b0 b1 m0 m1 out
  python3 benches/e2e_report.py --snapshot > "$WORK/snap0"
  [ -n "$pid" ] && p0=$(proc_ticks "$pid")
  b0=$(backend_ticks); m0=$(machine_ticks)
  out=$(wrk_checked "$port" "$DURATION")
  m1=$(machine_ticks); b1=$(backend_ticks)
  [ -n "$pid" ] && p1=$(proc_ticks "$pid")
  python3 benches/e2e_report.py --snapshot > "$WORK/snap1"
  local reqs rps p50 p99 other
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  # shellcheck disable=SC2046 # one pid per word
  other=$(python3 benches/e2e_report.py --other "$WORK/snap0" "$WORK/snap1" $(known_pids))
  echo "$round $name $rps $p50 $p99 $reqs $((p1 - p0)) $((b1 - b0)) $((m1 - m0)) $other $pid" >> "$WORK/results"
}

# Everyone gets the same warm-up.
for t in "${TARGETS[@]}"; do
  IFS=: read -r name port pid <<<"$t"
  wrk_checked "$port" 2 >/dev/null
done
# Rounds, each in a rotated order.
n=${#TARGETS[@]}
for r in $(seq "$ROUNDS"); do
  for k in $(seq 0 $((n - 1))); do
    IFS=: read -r name port pid <<<"${TARGETS[$(( (k + r) % n ))]}"
    run "$r" "$name" "$port" "$pid"
  done
done

# Syscalls per request, counted by strace over a short run of each proxy.
syscalls() { # NAME PORT PID
  local sp out reqs attach=() p
  # The process and its children (nginx's worker does the work).
  for p in "$3" $(pgrep -P "$3" 2>/dev/null || true); do attach+=(-p "$p"); done
  strace -c -f "${attach[@]}" -o "$WORK/strace.$2" 2>"$WORK/strace.$2.err" &
  sp=$!
  sleep 0.5
  out=$(wrk_checked "$2" 3)
  sleep 0.3
  # strace may be gone already (a traced process that exited): not a
  # reason to abort under `set -e`, silently, as it once did.
  kill -INT "$sp" 2>/dev/null || echo "e2e: strace for $1 ended early: $(cat "$WORK/strace.$2.err")" >&2
  wait "$sp" 2>/dev/null || true
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "syscalls $1 $reqs $(python3 benches/e2e_report.py --strace-total "$WORK/strace.$2")" >> "$WORK/results"
}
for t in "${TARGETS[@]}"; do
  IFS=: read -r name port pid <<<"$t"
  [ -n "$pid" ] && syscalls "$name" "$port" "$pid"
done

# Did the WebAssembly strategy decide? Switchyard logs its counts when it stops.
kill -TERM "$SWITCHYARD"
for _ in $(seq 50); do kill -0 "$SWITCHYARD" 2>/dev/null || break; sleep 0.1; done
stopped=$(grep "switchyard stopped" "$WORK/switchyard.log" || true)
decisions=$(sed -n 's/.*wasm_decisions=\([0-9]*\).*/\1/p' <<<"$stopped")
fallbacks=$(sed -n 's/.*fallbacks=\([0-9]*\).*/\1/p' <<<"$stopped")
[ -n "$decisions" ] || fail "Switchyard did not report its decisions:
$(cat "$WORK/switchyard.log")"
[ "$decisions" -gt 0 ] || fail "the strategy made no decision"
[ "$fallbacks" = 0 ] || fail "$fallbacks decisions fell back to the native strategy"
echo "decisions $decisions $fallbacks" >> "$WORK/results"

cp "$WORK/results" "${RESULTS:-/tmp/switchyard-e2e-results.txt}"
echo "mode $MODE, path $URLPATH, c$CONNS, close=$CLOSE, forward=$FORWARD, ${DURATION}s x $ROUNDS rounds (order rotated), strategy $STRATEGY; medians"
echo
python3 benches/e2e_report.py "$WORK/results" "$TICK" "$DURATION"
