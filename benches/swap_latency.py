#!/usr/bin/env python3
"""How long a strategy swap takes to change routing, end to end.

Starts `switchyard serve` (HTTP mode, two demo workers) with a strategy
file that sends everything to worker 0, then swaps in one that sends
everything to worker 1, ROUNDS times each way: by renaming a file into
place, and by `PUT /strategy` on the admin API. For each swap it polls
with requests until worker 1 (or 0) answers and reports the time from
the rename or the PUT to the first request routed the new way.

Usage: python3 benches/swap_latency.py [path/to/switchyard] [ROUNDS]
"""
import http.client, os, socket, statistics, subprocess, sys, tempfile, time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/switchyard"
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 20

def constant(i):
    return f"""(module
  (memory (export "memory") 2)
  (func (export "switchyard_abi_version") (result i32) (i32.const 1))
  (func (export "switchyard_input") (param i32) (result i32) (i32.const 1024))
  (func (export "switchyard_decide") (param i32) (result i32)
    (if (result i32) (i32.gt_u (i32.load offset=8 (i32.const 1024)) (i32.const {i}))
      (then (i32.const {i})) (else (i32.const 0)))))"""

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def worker(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/"); body = c.getresponse().read().decode(); c.close()
    return int(body.split()[1])

def wait_for(port, want, started, limit=5.0):
    while time.monotonic() - started < limit:
        if worker(port) == want:
            return (time.monotonic() - started) * 1000
    raise SystemExit(f"routing did not change within {limit} s")

d = tempfile.mkdtemp()
path = os.path.join(d, "strategy.wat")
open(path, "w").write(constant(0))
port, admin = free_port(), free_port()
base = free_port()
proc = subprocess.Popen([BIN, "serve", "--mode", "http", "--workers", "2", "--port", str(port),
                         "--base-worker-port", str(base), "--admin", f"127.0.0.1:{admin}",
                         "--strategy", path, "--log", "warn"])
try:
    deadline = time.monotonic() + 30
    while True:
        try:
            worker(port); break
        except OSError:
            if time.monotonic() > deadline: raise
            time.sleep(0.05)
    renamed, put = [], []
    for r in range(ROUNDS):
        for want in (1, 0):
            tmp = os.path.join(d, f".next-{r}-{want}.wat")
            open(tmp, "w").write(constant(want))
            started = time.monotonic()
            os.rename(tmp, path)
            renamed.append(wait_for(port, want, started))
    for r in range(ROUNDS):
        for want in (1, 0):
            body = constant(want).encode()
            started = time.monotonic()
            c = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
            c.request("PUT", "/strategy", body=body); resp = c.getresponse(); resp.read(); c.close()
            assert resp.status == 200, resp.status
            put.append(wait_for(port, want, started))
    for name, xs in (("rename into place", renamed), ("PUT /strategy", put)):
        xs.sort()
        print(f"{name}: {len(xs)} swaps, median {statistics.median(xs):.1f} ms, "
              f"p90 {xs[int(len(xs) * 0.9) - 1]:.1f} ms, max {xs[-1]:.1f} ms")
finally:
    proc.terminate(); proc.wait()
