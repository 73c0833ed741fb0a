#!/usr/bin/env bash
# End-to-end proxy benchmark: Switchyard in TCP mode (a WebAssembly strategy
# deciding every connection) against HAProxy `mode tcp` and against hitting a
# backend directly, following shared/reference/proxy-peers-on-this-machine.md:
# two one-worker nginx backends, each proxy pinned to core 0 with one thread,
# wrk and the backends on core 1, interleaved rounds, medians. The robust
# figure is the proxy's CPU time per request (utime+stime from /proc).
#
#   bash benches/e2e.sh                 # 3 rounds x 10 s, c50, path /
#   ROUNDS=5 DURATION=10 CONNS=50 URLPATH=/big bash benches/e2e.sh
#   URLPATH=/huge bash benches/e2e.sh      # 4.9 KB /big, 256 KB /huge
#   FORWARD=copy CLOSE=1 bash benches/e2e.sh   # forwarding mode; a connection per request
#
# Loopback only. Installs haproxy, nginx and wrk with apt-get if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
URLPATH=${URLPATH:-/}
STRATEGY=${STRATEGY:-builtin:round-robin}
# How Switchyard moves bytes: auto (default), copy or splice.
FORWARD=${FORWARD:-auto}
# CLOSE=1 sends `Connection: close`: one connection, and so one strategy
# decision, per request (keep-alive runs decide once per wrk connection).
CLOSE=${CLOSE:-0}
WRK_HEADER=()
[ "$CLOSE" = 1 ] && WRK_HEADER=(-H "Connection: close")
WORK=$(mktemp -d /tmp/switchyard-e2e.XXXXXX)
# nginx workers run as an unprivileged user: they must be able to read the files.
chmod 755 "$WORK"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$WORK"; }
trap cleanup EXIT

need=()
for tool in haproxy nginx wrk strace; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
bash scripts/setup.sh
cargo build --release --locked -p switchyard >/dev/null 2>&1 || cargo build --release --locked -p switchyard
BIN=target/release/switchyard

# Backends: two nginx instances, one worker each, on core 1.
head -c 100 /dev/zero | tr '\0' 'x' > "$WORK/index"
head -c 4900 /dev/zero | tr '\0' 'y' > "$WORK/big"
head -c 262144 /dev/zero | tr '\0' 'z' > "$WORK/huge"
for port in 9001 9002; do
  mkdir -p "$WORK/n$port"
  cat > "$WORK/n$port/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $WORK/n$port/error.log;
pid $WORK/n$port/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  open_file_cache max=100;
  client_body_temp_path $WORK/n$port; proxy_temp_path $WORK/n$port;
  fastcgi_temp_path $WORK/n$port; uwsgi_temp_path $WORK/n$port; scgi_temp_path $WORK/n$port;
  server {
    listen 127.0.0.1:$port reuseport;
    location = / { root $WORK; try_files /index =404; }
    location = /big { root $WORK; }
    location = /huge { root $WORK; }
  }
}
CONF
  taskset -c 1 nginx -c "$WORK/n$port/nginx.conf" -p "$WORK/n$port" >/dev/null 2>&1 &
  PIDS+=($!)
done

cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8000
defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend f
  bind 127.0.0.1:9100
  mode tcp
  default_backend b
backend b
  mode tcp
  balance roundrobin
  server b1 127.0.0.1:9001
  server b2 127.0.0.1:9002
CONF
taskset -c 0 haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>&1 &
PIDS+=($!); HAPROXY=$!

taskset -c 0 "$BIN" serve --threads 1 --host 127.0.0.1 --port 9200 --workers 0 \
  --backend 127.0.0.1:9001 --backend 127.0.0.1:9002 --strategy "$STRATEGY" --forward "$FORWARD" \
  --log warn >/dev/null 2>&1 &
PIDS+=($!); SWITCHYARD=$!
sleep 1.5

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

# run NAME PORT PID -> appends "name reqs_per_s p50 p99 us_per_req" to results
run() {
  local name=$1 port=$2 pid=${3:-}
  local before=0 after=0
  [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  local out
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${WRK_HEADER[@]}" "http://127.0.0.1:$port$URLPATH")
  [ -n "$pid" ] && after=$(cpu_ticks "$pid")
  if grep -q "Non-2xx" <<<"$out"; then
    echo "$name: error responses on $URLPATH; not a valid run:" >&2
    echo "$out" >&2
    exit 1
  fi
  local reqs rps p50 p99 us
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  if [ -n "$pid" ]; then
    us=$(awk -v t=$((after - before)) -v hz="$TICK" -v r="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / r}')
  else
    us=-
  fi
  echo "$name $rps $p50 $p99 $us" >> "$WORK/results"
}

# Warm-up, then interleaved rounds.
taskset -c 1 wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:9200$URLPATH" >/dev/null
for r in $(seq "$ROUNDS"); do
  run direct 9001
  run haproxy-tcp 9100 "$HAPROXY"
  run switchyard-tcp 9200 "$SWITCHYARD"
done

# Syscalls per request, counted (not timed) by strace over a short run of
# each proxy: the deterministic side of the CPU figure.
syscalls() {
  local pid=$1 port=$2 out reqs
  strace -c -f -p "$pid" -o "$WORK/strace.$port" 2>/dev/null &
  local sp=$!
  sleep 0.5
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d3s "${WRK_HEADER[@]}" "http://127.0.0.1:$port$URLPATH")
  sleep 0.3
  kill -INT "$sp" 2>/dev/null; wait "$sp" 2>/dev/null || true
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  # Total calls over requests; HAProxy's clock_gettime counts (it is a real
  # syscall for its clock), the vDSO calls of others do not show at all.
  awk -v r="$reqs" '$NF == "total" {printf "%.1f", $(NF-2) / r}' "$WORK/strace.$port"
}
if command -v strace >/dev/null; then
  echo "syscalls haproxy-tcp $(syscalls "$HAPROXY" 9100)" >> "$WORK/results"
  echo "syscalls switchyard-tcp $(syscalls "$SWITCHYARD" 9200)" >> "$WORK/results"
fi

cp "$WORK/results" "${RESULTS:-/tmp/switchyard-e2e-results.txt}"
echo "path $URLPATH, c$CONNS, close=$CLOSE, forward=$FORWARD, ${DURATION}s x $ROUNDS rounds, strategy $STRATEGY (medians)"
echo
python3 - "$WORK/results" <<'PY'
import statistics, sys
lines = [l.split() for l in open(sys.argv[1]) if l.strip()]
rows = [l for l in lines if l[0] != "syscalls"]
sysc = {l[1]: l[2] for l in lines if l[0] == "syscalls" and len(l) > 2}
def med(xs):
    return statistics.median(xs) if xs else None
direct = med([float(r[1]) for r in rows if r[0] == "direct"])
# CPU per request against HAProxy, round by round: the two ran seconds
# apart, so the ratio cancels most of this machine's drift between rounds.
ha = [float(r[4]) for r in rows if r[0] == "haproxy-tcp"]
def vs_haproxy(name):
    if name == "direct":
        return "-"
    if name == "haproxy-tcp":
        return "1.00x"
    mine = [float(r[4]) for r in rows if r[0] == name]
    if not ha or not mine:
        return "-"
    ratios = sorted(m / h for m, h in zip(mine, ha))
    return f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"
print("| target | req/s | vs direct | p50 | p99 | proxy CPU per request | CPU vs HAProxy, per round | syscalls per request |")
print("|---|---|---|---|---|---|---|---|")
for name in ["direct", "haproxy-tcp", "switchyard-tcp"]:
    rs = [r for r in rows if r[0] == name]
    if not rs:
        continue
    # Latencies from the round with the median throughput.
    rs.sort(key=lambda r: float(r[1]))
    mid = rs[(len(rs) - 1) // 2]
    cpu = med([float(r[4]) for r in rs if r[4] != "-"])
    cpu_s = "-" if cpu is None else f"{cpu:.1f} us"
    print(f"| {name} | {float(mid[1]):.0f} | {float(mid[1]) / direct:.2f}x | {mid[2]} | {mid[3]} | {cpu_s} | {vs_haproxy(name)} | {sysc.get(name, '-')} |")
PY
