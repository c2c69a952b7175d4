"""Genomes checked per second by the analytic budget checker (no torch module is built).

    taskset -c 0 python benchmarks/bench_budget.py            # one core

Draws a fixed set of random genomes (every block type, 3-9 layers) and times
``budgets.check`` on them, also ``Genome.from_string`` + check and the full per-layer ``analyze``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blocks import Genome  # noqa: E402
from blocks.random_genome import random_genome  # noqa: E402
from budgets import Limits, analyze, check  # noqa: E402


def rate(fn, items, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return len(items) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genomes", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(0)
    genomes = [random_genome(rng) for _ in range(args.genomes)]
    strings = [g.to_string() for g in genomes]
    limits = Limits(max_params=8000, min_rf="auto", max_macs=2_000_000)
    layers = sum(len(g.layers) for g in genomes) / len(genomes)
    print(f"{len(genomes)} random genomes, {layers:.1f} layers on average")
    print(f"analyze (per-layer table):   {rate(analyze, genomes, args.repeats):>10,.0f} genomes/s")
    print(f"from_string + check:         {rate(lambda s: check(Genome.from_string(s), limits), strings, args.repeats):>10,.0f} genomes/s")
    print(f"check (parsed genome):       {rate(lambda g: check(g, limits), genomes, args.repeats):>10,.0f} genomes/s")


if __name__ == "__main__":
    main()
