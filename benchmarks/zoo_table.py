"""The zoo's re-statement and int8 tables for BENCHMARKS.md, from the ``summary.json`` files of ``--reproduce``.

    python benchmarks/zoo_table.py benchmarks/results/zoo_restate/*.summary.json --target 99.4

Each summary (``reports.reproduce``: written by ``--reproduce ... --export tflite``) holds the seeds, each seed's
per-epoch fp32 test accuracy and, when measured, its int8 accuracy in TensorFlow Lite Micro, the arena and the
.tflite bytes. Printed: fp32 per seed, mean ± std, min, 95% lower bound and the verdict at ``--target``; then int8
per seed, the paired drop (fp32 - int8, seed by seed), and the measured arena and file against today's estimates.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from blocks import Genome  # noqa: E402
from budgets import Limits, totals  # noqa: E402
from reports.verdict import lower_bound, verdict  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summaries", nargs="+")
    parser.add_argument("--target", type=float, default=99.4)
    args = parser.parse_args()
    rows = []
    for path in args.summaries:
        s = json.loads(Path(path).read_text())
        fp32 = [run[-1] for run in s["per_epoch_test_acc"]]
        rows.append((Path(path).name.split(".")[0], s, fp32))
    rows.sort(key=lambda r: -r[1]["params"])
    print(f"| design | params | seeds | fp32 test accuracy per seed | mean ± std | min | 95% low | verdict at "
          f"{args.target} (seeds at it) |\n| --- | ---: | --- | --- | ---: | ---: | ---: | --- |")
    for name, s, fp32 in rows:
        seeds = s["seeds"]
        span = f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
        low = lower_bound(fp32)
        print(f"| `{name}` | {s['params']:,} | {span} | {', '.join(f'{a:.2f}' for a in fp32)} | "
              f"{statistics.fmean(fp32):.2f}" + (f" ± {statistics.stdev(fp32):.2f}%" if len(fp32) > 1 else "%")
              + f" | {min(fp32):.2f} | " + (f"{low:.2f}" if low == low else "") + f" | {verdict(fp32, args.target)} "
              f"({sum(a >= args.target for a in fp32)} of {len(fp32)}) |")
    print("\n| design | int8 test accuracy per seed (TFLM) | int8 mean | drop fp32 - int8: mean, worst seed | arena B "
          "(estimate) | .tflite B (estimate) |\n| --- | --- | ---: | ---: | ---: | ---: |")
    for name, s, fp32 in rows:
        int8 = s.get("int8_test_acc")
        if not int8:
            continue
        drops = [f - i for f, i in zip(fp32, int8)]
        t = totals(Genome.from_string(s["genome"]))
        limits = Limits(precision="int8")
        print(f"| `{name}` | {', '.join(f'{a:.2f}' for a in int8)} | {statistics.fmean(int8):.2f} | "
              f"{statistics.fmean(drops):+.2f}, {max(drops):+.2f} | {s['arena_bytes']:,} ({limits.ram_bytes(t):,}) | "
              f"{s['tflite_bytes']:,} ({limits.flash_bytes(t):,}) |")


if __name__ == "__main__":
    main()
