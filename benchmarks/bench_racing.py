"""``--seeds auto`` replayed on recorded per-seed test accuracies: what racing would have decided, at what cost.

    python benchmarks/bench_racing.py benchmarks/results/racing/recorded.json --targets 99.0 99.2 99.3 99.4

``recorded.json``: ``{design: {"params": N, "accs": {seed: test accuracy}}}``, each design's 15-epoch test accuracy
per training seed (from ``summary.json`` / ``finals.json`` files; the sources are named in the file). For each
design and target, in seed order: the verdict of the fixed default (the first 3 seeds), racing's (3 seeds, then
``--processes`` more at a time while ``reports.verdict.decided`` is False, up to ``--max-seeds``) with the seeds it
used, and the verdict of every recorded seed. Racing that would need more seeds than were recorded says so.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reports.verdict import decided, lower_bound, verdict  # noqa: E402


def race(accs: list[float], target: float, first: int = 3, step: int = 2, most: int = 10) -> tuple[int, bool]:
    """Seeds racing uses, and whether it stopped within the recorded ones."""
    used = first
    while used < most and not decided(accs[:used], target):
        used = min(used + step, most)
        if used > len(accs):
            return used, False
    return used, True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recorded")
    parser.add_argument("--targets", type=float, nargs="+", default=[99.0, 99.2, 99.3, 99.4])
    parser.add_argument("--processes", type=int, default=2, help="seeds racing adds at a time (finalize: processes)")
    parser.add_argument("--max-seeds", type=int, default=10)
    args = parser.parse_args()
    designs = {k: v for k, v in json.loads(Path(args.recorded).read_text()).items() if not k.startswith("_")}
    print("| design | params | seeds recorded: mean, 95% low | target | fixed 3 seeds | racing: seeds, verdict | "
          "all recorded seeds |\n| --- | ---: | --- | ---: | --- | --- | --- |")
    for name, design in designs.items():
        accs = [acc for _, acc in sorted((int(seed), acc) for seed, acc in design["accs"].items())]
        summary = f"{len(accs)}: {statistics.fmean(accs):.2f}, {lower_bound(accs):.2f}"
        for target in args.targets:
            used, within = race(accs, target, step=args.processes, most=args.max_seeds)
            raced = f"{used}, {verdict(accs[:used], target)}" if within else f"> {len(accs)} (not recorded)"
            print(f"| {name} | {design['params']:,} | {summary} | {target} | {verdict(accs[:3], target)} | {raced} | "
                  f"{verdict(accs, target)} |")


if __name__ == "__main__":
    main()
