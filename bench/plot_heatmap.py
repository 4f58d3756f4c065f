#!/usr/bin/env python3
"""Heat-map of a `ramp bench layer` result: roofline efficiency (floor / time) per model and
token count, one panel per routing, plus the speedup over torch._grouped_mm measured in the
same run. Needs matplotlib.

    python3 bench/plot_heatmap.py bench/results/h100-2026-11-22-layer.json -o layer.png
"""
import argparse
import json
import math
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("result", help="JSON written by `ramp bench layer --out`")
    parser.add_argument("-o", "--output", required=True, help="PNG to write")
    args = parser.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_heatmap.py: matplotlib is not installed (pip install matplotlib)")

    with open(args.result) as f:
        result = json.load(f)
    cases = [c for c in result["cases"] if c.get("ramp", {}).get("status") == "ok"]
    if not cases:
        sys.exit(f"plot_heatmap.py: {args.result} holds no measured case")
    models = list(dict.fromkeys(c["model"] for c in cases))
    tokens = sorted({c["tokens"] for c in cases})
    routings = list(dict.fromkeys(c["routing"] for c in cases))

    figure, axes = plt.subplots(1, len(routings), figsize=(1.3 * len(tokens) * len(routings) + 2,
                                                          0.6 * len(models) + 2.2),
                                squeeze=False)
    for panel, (axis, routing) in enumerate(zip(axes[0], routings)):
        grid = [[math.nan] * len(tokens) for _ in models]
        notes = [[""] * len(tokens) for _ in models]
        for c in cases:
            if c["routing"] != routing:
                continue
            row, column = models.index(c["model"]), tokens.index(c["tokens"])
            grid[row][column] = c["ramp"]["efficiency"]
            torch_ms = c.get("peers", {}).get("torch_grouped_mm", {}).get("time_ms")
            speedup = f"\n{torch_ms / c['ramp']['time_ms']:.2f}x" if torch_ms else ""
            notes[row][column] = f"{c['ramp']['efficiency']:.2f}{speedup}"
        image = axis.imshow(grid, vmin=0.0, vmax=1.0, cmap="RdYlGn", aspect="auto")
        axis.set_xticks(range(len(tokens)), [str(t) for t in tokens])
        axis.set_yticks(range(len(models)), models if panel == 0 else [])
        axis.set_xlabel("tokens T")
        axis.set_title(f"routing {routing}")
        for row in range(len(models)):
            for column in range(len(tokens)):
                if notes[row][column]:
                    axis.text(column, row, notes[row][column], ha="center", va="center", fontsize=7)
    figure.colorbar(image, ax=axes[0].tolist(), label="roofline efficiency (floor / time)")
    ceilings = result["ceilings"]
    figure.suptitle(
        f"ramp-moe layer on {result['device']['name']}, {result['date_utc'][:10]}, "
        f"commit {result.get('git_commit', '?')}\n"
        f"cell: efficiency, then speedup over torch._grouped_mm (same run); ceilings "
        f"{ceilings['gemm']['tflops']:.0f} TFLOP/s, {ceilings['copy']['gbps']:.0f} GB/s",
        fontsize=9)
    figure.savefig(args.output, dpi=110, bbox_inches="tight")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
