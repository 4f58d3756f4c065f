#!/usr/bin/env python3
"""Sums ncu's per-instruction warp-stall samples over the launches in a `--page source --csv
--print-source sass` dump that ran the same kernel as the first one (same instruction count),
and prints the hottest instructions and 32-instruction windows.
Usage: dev/ncu_hotspots.py dump.csv [top]"""
import csv, sys
from collections import defaultdict

def number(text):
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return 0.0

launches = []  # each: list of (source, samples, executed)
header = None
for row in csv.reader(open(sys.argv[1], errors="replace")):
    if row and row[0] == "Address":
        header = row
        i_samples = header.index("Warp Stall Sampling (All Samples)")
        i_exec = header.index("Instructions Executed")
        launches.append([])
        continue
    if header is None or len(row) != len(header):
        continue
    launches[-1].append((row[1].strip(), number(row[i_samples]), number(row[i_exec])))

samples = defaultdict(float)
executed = defaultdict(float)
order = []
kept = [launch for launch in launches if launches and len(launch) == len(launches[0])]
print(f"{len(kept)} of {len(launches)} launches ran the first launch's kernel")
for launch in kept:
    for position, (source, sampled, ran) in enumerate(launch):
        key = (position, source)
        if key not in samples:
            order.append(key)
        samples[key] += sampled
        executed[key] += ran

total = sum(samples.values()) or 1.0
top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
print(f"{len(order)} instructions, {total:.0f} samples")
for key in sorted(order, key=lambda k: -samples[k])[:top]:
    print(f"{samples[key]:7.0f} {100 * samples[key] / total:5.1f}% exec {executed[key]:8.0f}  @{key[0]:5d} {key[1][:90]}")
window = 32
spans = []
for start in range(0, len(order), window):
    keys = order[start:start + window]
    spans.append((sum(samples[k] for k in keys), start, keys))
print("hottest windows:")
for total_window, start, keys in sorted(spans, reverse=True)[:8]:
    print(f"--- @{start}: {100 * total_window / total:5.1f}%")
    for k in keys:
        if samples[k] > 0:
            print(f"    {samples[k]:6.0f} @{k[0]:5d} {k[1][:90]}")
