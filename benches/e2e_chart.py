"""One PNG of proxy CPU per request per target, from results files that
benches/e2e.sh wrote (RESULTS=...), each under a label:

    /usr/bin/python3 benches/e2e_chart.py docs/e2e-cpu.png \
        "tcp c50 100 B=/tmp/e2e-tcp.txt" "http c50 100 B=/tmp/e2e-http.txt"

Medians over the rounds of each file, as benches/e2e_report.py computes
them. Needs matplotlib (Debian: python3-matplotlib).
"""
import os
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TICK = 100.0
ORDER = ["haproxy-tcp", "haproxy-http", "nginx-stream", "nginx-http",
         "switchyard-tcp", "switchyard-http", "switchyard-native", "switchyard-base"]


def load(path):
    per = defaultdict(list)
    for line in open(path):
        f = line.split()
        if len(f) < 10 or f[0] in ("syscalls", "decisions") or f[1] == "direct":
            continue
        reqs, proxy = float(f[5]), float(f[6])
        per[f[1]].append(proxy / TICK / reqs * 1e6)
    return {k: statistics.median(v) for k, v in per.items()}


out, specs = sys.argv[1], sys.argv[2:]
groups = []
for spec in specs:
    label, path = spec.rsplit("=", 1)
    groups.append((label, load(path)))
# One bar per kind of proxy across groups: HAProxy, nginx, Switchyard.
kinds = ["haproxy", "nginx", "switchyard"]
colours = {"haproxy": "#4878a8", "nginx": "#5a9e5a", "switchyard": "#d08030"}
fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(groups)), 4), dpi=120)
width = 0.8 / len(kinds)
for k, kind in enumerate(kinds):
    xs, ys = [], []
    for g, (_, medians) in enumerate(groups):
        name = next((n for n in ORDER if n.startswith(kind) and n in medians
                     and n not in ("switchyard-base", "switchyard-native")), None)
        if name:
            xs.append(g + (k - 1) * width)
            ys.append(medians[name])
    bars = ax.bar(xs, ys, width, label=kind, color=colours[kind])
    ax.bar_label(bars, fmt="%.1f", fontsize=7)
ax.set_xticks(range(len(groups)), [g[0] for g in groups], fontsize=8)
ax.set_ylabel("proxy CPU per request (us)")
title = os.environ.get("TITLE", "proxy CPU per request")
ax.set_title(f"{title}, one pinned thread each (lower is better)", fontsize=10)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(out)
print(f"wrote {out}")
