#!/usr/bin/env python3
"""The tables of benches/e2e.sh, from its results file.

Lines: `ROUND NAME RPS P50 P99 REQUESTS PROXY_TICKS BACKEND_TICKS MACHINE_TICKS
OTHER_TICKS PID`, `syscalls NAME REQUESTS CALLS`, `decisions N FALLBACKS`.

`e2e_report.py --strace-total FILE` prints the total calls of a `strace -c`
summary instead.
"""
import re
import statistics
import sys


def strace_total(f):
    """Total syscalls from `strace -c`, read by column position: the columns
    are right-aligned, so the count is the token that ends where the header's
    "calls" ends. (Counting fields from the end reads microseconds per call
    when the errors column is empty.)"""
    lines = open(f).read().splitlines()
    header = next(l for l in lines if re.search(r"\bcalls\b", l))
    end = re.search(r"\bcalls\b", header).end()
    total = next(l for l in lines if l.split() and l.split()[-1] == "total")
    return int(next(m.group() for m in re.finditer(r"\S+", total) if m.end() == end))


def snapshot():
    """CPU ticks of every user-space process: `pid ticks` lines. Kernel
    threads are left out: the network's softirq work of the benchmark itself
    runs there, and it is not somebody else's load."""
    import os
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        f = stat[stat.rindex(")") + 2:].split()
        if int(f[6]) & 0x00200000:  # PF_KTHREAD
            continue
        print(pid, int(f[11]) + int(f[12]))


def other_ticks(before, after, known):
    """Ticks used between two snapshots by processes not in `known`."""
    old = dict(l.split() for l in open(before))
    total = 0
    for line in open(after):
        pid, ticks = line.split()
        if pid not in known:
            total += int(ticks) - int(old.get(pid, ticks))
    return total


if sys.argv[1] == "--strace-total":
    print(strace_total(sys.argv[2]))
    sys.exit(0)
if sys.argv[1] == "--snapshot":
    snapshot()
    sys.exit(0)
if sys.argv[1] == "--other":
    print(other_ticks(sys.argv[2], sys.argv[3], set(sys.argv[4:])))
    sys.exit(0)

path, tick, duration = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
runs, syscalls, decisions = [], {}, None
for line in open(path):
    f = line.split()
    if not f:
        continue
    if f[0] == "syscalls":
        syscalls[f[1]] = (int(f[2]), int(f[3]))
    elif f[0] == "decisions":
        decisions = (int(f[1]), int(f[2]))
    else:
        r = dict(zip(["round", "name", "rps", "p50", "p99", "reqs", "proxy", "backends",
                      "machine", "other"], f))
        for k in ["rps", "reqs", "proxy", "backends", "machine", "other"]:
            r[k] = float(r[k])
        r["proxy_us"] = r["proxy"] / tick / r["reqs"] * 1e6
        r["machine_us"] = r["machine"] / tick / r["reqs"] * 1e6
        # User-space CPU of processes other than the proxy, the backends and
        # this script, as a share of one core over the run: other load.
        r["other"] = max(r["other"], 0.0) / tick / duration
        runs.append(r)

FLAG = 0.05  # more than a twentieth of a core used by other processes
ORDER = ["direct", "haproxy-tcp", "haproxy-http", "nginx-stream", "nginx-http",
         "switchyard-tcp", "switchyard-http", "switchyard-native", "switchyard-base"]
names = sorted(dict.fromkeys(r["name"] for r in runs),
               key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
rounds = sorted({r["round"] for r in runs}, key=int)
flagged = {r["round"] for r in runs if r["other"] > FLAG}
clean = [x for x in rounds if x not in flagged]
use = clean if len(clean) >= 3 else rounds


def by(name, rnd):
    return next((r for r in runs if r["name"] == name and r["round"] == rnd), None)


def calls(name):
    if name not in syscalls:
        return None
    reqs, total = syscalls[name]
    return total / reqs


def per_round_ratio(name, ref):
    ratios = sorted(by(name, x)["proxy_us"] / by(ref, x)["proxy_us"] for x in use
                    if by(name, x) and by(ref, x))
    if not ratios:
        return "-"
    return f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"


def middle(name):
    """The run with the median throughput (the lower one of an even count),
    whose latencies the table shows."""
    rs = sorted((by(name, x) for x in use if by(name, x)), key=lambda r: r["rps"])
    return rs, rs[(len(rs) - 1) // 2]


direct = middle("direct")[1]["rps"]
# The reference: HAProxy in the same mode, measured in the same rounds.
ref = next(n for n in names if n.startswith("haproxy-"))
mine = next(n for n in names if n in ("switchyard-tcp", "switchyard-http"))
print("| target | req/s | vs direct | p50 | p99 | proxy CPU per request | "
      "CPU vs HAProxy, per round | machine CPU per request | syscalls per request |")
print("|---|---|---|---|---|---|---|---|---|")
for name in names:
    rs, mid = middle(name)
    if name == "direct":
        cpu, ratio = "-", "-"
    else:
        cpu = f"{statistics.median(r['proxy_us'] for r in rs):.1f} us"
        ratio = "1.00x" if name == ref else per_round_ratio(name, ref)
    machine = statistics.median(r["machine_us"] for r in rs)
    c = calls(name)
    print(f"| {name} | {mid['rps']:.0f} | {mid['rps'] / direct:.2f}x | {mid['p50']} | "
          f"{mid['p99']} | {cpu} | {ratio} | {machine:.1f} us | "
          f"{'-' if c is None else f'{c:.1f}'} |")
print()
if "switchyard-native" in names:
    print(f"{mine} (WebAssembly) vs switchyard-native (the same strategy native), CPU per request, "
          f"per round: {per_round_ratio(mine, 'switchyard-native')}")
if "switchyard-base" in names:
    print(f"{mine} vs switchyard-base (BASELINE), CPU per request, per round: "
          f"{per_round_ratio(mine, 'switchyard-base')}")
busy = ", ".join(f"{max(r['other'] for r in runs if r['round'] == x):.2f}" for x in rounds)
print(f"Other processes' load per round (cores): {busy}.")
if flagged:
    how = "left out" if use == clean else "kept: fewer than 3 clean rounds"
    print(f"Flagged (over {FLAG} of a core): rounds {', '.join(sorted(flagged, key=int))} ({how}).")
if decisions:
    print(f"The WebAssembly strategy made {decisions[0]} decisions, {decisions[1]} fallbacks.")
