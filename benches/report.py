#!/usr/bin/env python3
"""Prints the decision benchmark as a markdown table from criterion's output
(target/criterion/<strategy>_<variant>/<n>/new/estimates.json): median ns per
decision, and the WebAssembly/native ratio."""
import json, os, sys

root = os.path.join(os.path.dirname(__file__), "..", "target", "criterion")
sizes = ["4", "16", "64", "256"]
variants = ["native", "wasm-fuel", "wasm-epoch"]

def median(strategy, variant, n):
    p = os.path.join(root, f"{strategy}_{variant}", n, "new", "estimates.json")
    try:
        with open(p) as f:
            return json.load(f)["median"]["point_estimate"]
    except OSError:
        return None

strategies = sorted({d.rsplit("_", 1)[0] for d in os.listdir(root)
                     if "_" in d and not d.startswith("report") and "threads" not in d})
print("| strategy | N | native | wasm (fuel) | wasm (epoch) | fuel / native |")
print("|---|---|---|---|---|---|")
for s in strategies:
    for n in sizes:
        v = [median(s, x, n) for x in variants]
        if v[0] is None:
            continue
        fmt = lambda x: "-" if x is None else f"{x:.1f} ns"
        ratio = "-" if v[1] is None else f"{v[1] / v[0]:.1f}x"
        print(f"| {s} | {n} | {fmt(v[0])} | {fmt(v[1])} | {fmt(v[2])} | {ratio} |")

two = median("least-connections", "wasm-fuel-2-threads", "16")
one = median("least-connections", "wasm-fuel", "16")
if two and one:
    print()
    print(f"Two threads deciding at once (least-connections, 16 candidates, fuel): "
          f"{two:.1f} ns per decision per thread vs {one:.1f} ns alone ({two / one:.2f}x).")
