"""Print each rule's measured wall time and peak memory from Snakemake's benchmark files, and the resources
(`mem_mb`, `runtime`) the workflow profiles declare from them (profiles/default/config.yaml, `set-resources`):
mem_mb = 1.5 x the largest max_rss, rounded up to
100 MB (at least 500); runtime = 3 x the longest wall time in minutes, rounded up (at least 5).

    python benchmarks/resources_from_benchmarks.py [results/benchmarks]
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd


def main(root: str = "results/benchmarks") -> None:
    rows = []
    for rule_dir in sorted(Path(root).iterdir()):
        frames = [pd.read_csv(p, sep="\t") for p in sorted(rule_dir.glob("*.tsv"))]
        if not frames:
            continue
        df = pd.concat(frames)
        s_max, rss_max = float(df["s"].max()), float(pd.to_numeric(df["max_rss"], errors="coerce").max())
        rows.append({
            "rule": rule_dir.name, "jobs": len(frames), "wall s (sum)": round(float(df["s"].sum()), 1),
            "wall s (max)": round(s_max, 1), "max_rss MB": round(rss_max, 0),
            "mem_mb": max(500, int(math.ceil(1.5 * rss_max / 100.0) * 100)),
            "runtime min": max(5, int(math.ceil(3 * s_max / 60.0))),
        })
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main(*sys.argv[1:])
