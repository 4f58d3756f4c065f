#!/usr/bin/env python3
"""Bundles the runs of dev/ab_layer.sh into one committed result file: every run's JSON (with
its label), and dev/ab_compare.py's lines for each pair asked for.
    python3 dev/ab_bundle.py OUTDIR RESULT.json "what was compared" base:new [base:new ...]"""
import glob
import json
import os
import subprocess
import sys

out, result, what = sys.argv[1:4]
pairs = [p.split(":") for p in sys.argv[4:]]
compare = {}
for base, new in pairs:
    lines = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "ab_compare.py"),
                            out, base, new], check=True, capture_output=True, text=True).stdout
    compare[f"{base}/{new}"] = [line for line in lines.splitlines() if line.strip()]
runs = []
for path in sorted(glob.glob(f"{out}/ab-*.json")):
    run = json.load(open(path))
    run["ab_label"] = os.path.basename(path)[len("ab-"):-len(".json")]
    runs.append(run)
json.dump({"kind": "layer-ab", "what": what, "compare": compare, "runs": runs},
          open(result, "w"), indent=1)
print(f"{result}: {len(runs)} runs, pairs {', '.join(compare)}")
