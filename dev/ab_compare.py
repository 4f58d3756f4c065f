#!/usr/bin/env python3
"""Compares the layer results of dev/ab_layer.sh: per cell the best (lowest) median time of
each label's rounds, the ratio base/new (> 1: new is faster), and the geometric mean.
    python3 dev/ab_compare.py OUTDIR base new"""
import glob
import json
import math
import sys

out, base, new = sys.argv[1:4]


def best_times(label):
    best = {}
    for path in sorted(glob.glob(f"{out}/ab-{label}-*.json")):
        for case in json.load(open(path))["cases"]:
            ramp = case.get("ramp", {})
            if ramp.get("status") != "ok":
                continue
            t = ramp["time_ms"]
            best[case["name"]] = min(best.get(case["name"], t), t)
    return best


a, b = best_times(base), best_times(new)
names = [n for n in a if n in b]
logs = []
for name in names:
    ratio = a[name] / b[name]
    logs.append(math.log(ratio))
    print(f"{name:40s} {base} {a[name]*1000:9.1f} us  {new} {b[name]*1000:9.1f} us  {ratio:.3f}x")
if logs:
    print(f"geomean {base}/{new}: {math.exp(sum(logs)/len(logs)):.3f}x over {len(logs)} cells, "
          f"min {math.exp(min(logs)):.3f}x, max {math.exp(max(logs)):.3f}x")
