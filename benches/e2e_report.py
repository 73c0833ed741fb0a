#!/usr/bin/env python3
"""The tables of benches/e2e.sh, from its results file.

Lines: `ROUND NAME RPS P50 P99 REQUESTS PROXY_TICKS BACKEND_TICKS MACHINE_TICKS
WRK_CPU_S PID`, `syscalls NAME REQUESTS STRACE_FILE`, `decisions N FALLBACKS`.
"""
import statistics
import sys

path, tick, duration = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
runs, syscalls, decisions = [], {}, None
for line in open(path):
    f = line.split()
    if not f:
        continue
    if f[0] == "syscalls":
        syscalls[f[1]] = (int(f[2]), f[3])
    elif f[0] == "decisions":
        decisions = (int(f[1]), int(f[2]))
    else:
        r = dict(zip(["round", "name", "rps", "p50", "p99", "reqs", "proxy", "backends",
                      "machine", "wrk"], f))
        for k in ["rps", "reqs", "proxy", "backends", "machine", "wrk"]:
            r[k] = float(r[k])
        r["proxy_us"] = r["proxy"] / tick / r["reqs"] * 1e6
        r["machine_us"] = r["machine"] / tick / r["reqs"] * 1e6
        # CPU used by anything but the proxy, wrk and the backends, as a
        # share of one core over the run: other load on a shared machine.
        other = r["machine"] / tick - (r["proxy"] + r["backends"]) / tick - r["wrk"]
        r["other"] = max(other, 0.0) / duration
        runs.append(r)

FLAG = 0.10  # more than a tenth of a core busy elsewhere
names = list(dict.fromkeys(r["name"] for r in runs))
rounds = sorted({r["round"] for r in runs}, key=int)
flagged = {r["round"] for r in runs if r["other"] > FLAG}
clean = [x for x in rounds if x not in flagged]
use = clean if len(clean) >= 3 else rounds


def by(name, rnd):
    return next((r for r in runs if r["name"] == name and r["round"] == rnd), None)


def calls(name):
    """Total syscalls from `strace -c`, read by column name: when the errors
    column is empty, counting fields from the end would read microseconds."""
    if name not in syscalls:
        return None
    reqs, f = syscalls[name]
    lines = open(f).read().splitlines()
    header = next(l for l in lines if "calls" in l.split())
    col = header.split().index("calls")
    total = next(l for l in lines if l.split() and l.split()[-1] == "total")
    return int(total.split()[col]) / reqs


def per_round_ratio(name, ref):
    ratios = sorted(by(name, x)["proxy_us"] / by(ref, x)["proxy_us"] for x in use
                    if by(name, x) and by(ref, x))
    if not ratios:
        return "-"
    return f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"


direct = statistics.median(by("direct", x)["rps"] for x in use if by("direct", x))
print("| target | req/s | vs direct | p50 | p99 | proxy CPU per request | "
      "CPU vs HAProxy, per round | machine CPU per request | syscalls per request |")
print("|---|---|---|---|---|---|---|---|---|")
for name in names:
    rs = sorted((by(name, x) for x in use if by(name, x)), key=lambda r: r["rps"])
    mid = rs[(len(rs) - 1) // 2]
    if name == "direct":
        cpu, ratio = "-", "-"
    else:
        cpu = f"{statistics.median(r['proxy_us'] for r in rs):.1f} us"
        ratio = "1.00x" if name == "haproxy-tcp" else per_round_ratio(name, "haproxy-tcp")
    machine = statistics.median(r["machine_us"] for r in rs)
    c = calls(name)
    print(f"| {name} | {mid['rps']:.0f} | {mid['rps'] / direct:.2f}x | {mid['p50']} | "
          f"{mid['p99']} | {cpu} | {ratio} | {machine:.1f} us | "
          f"{'-' if c is None else f'{c:.1f}'} |")
print()
if "switchyard-base" in names:
    print(f"switchyard-tcp vs switchyard-base (BASELINE), CPU per request, per round: "
          f"{per_round_ratio('switchyard-tcp', 'switchyard-base')}")
busy = ", ".join(f"round {x}: {max(r['other'] for r in runs if r['round'] == x):.2f}"
                 for x in rounds)
print(f"Other load (cores busy besides proxy, wrk and backends): {busy}.")
if flagged:
    how = "left out" if use == clean else "kept: fewer than 3 clean rounds"
    print(f"Flagged (over {FLAG} of a core): rounds {', '.join(sorted(flagged, key=int))} ({how}).")
if decisions:
    print(f"The WebAssembly strategy made {decisions[0]} decisions, {decisions[1]} fallbacks.")
