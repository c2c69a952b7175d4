"""Seeds trained as one wide model (``training.seedbatch``) against one run per seed, in training images per second.

    python benchmarks/bench_seed_batch.py --data-dir ../shared/data --steps 100 zoo/mnist_5k_search.json ...

For each genome and layout, every process trains ``--steps`` timed engine steps (batch 128 per seed, after 10
warm-up steps) and reports seed-images per second (seeds x images). Layouts:
- ``separate``: ``training.Trainer``, one seed per process: what ``train_many`` does today;
- ``batched S``: ``train_seeds``' wide model of S seeds in one process.
Layouts run as 1 process of 1 thread, 2 processes of 1 thread each side by side (the final evaluation on a
2-core machine), and 1 process of 2 threads. Run it alone on the machine; ratios are within one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(data_dir: str, genome_path: str, seeds: int, steps: int, threads: int = 1, warmup: int = 10) -> dict:
    """``seeds`` 0: one ``Trainer``; else a seed batch of that many. Seed-images per second over ``steps`` steps."""
    import torch

    from blocks import load_genome
    from training import TrainConfig, Trainer, load_splits
    from training.seedbatch import _SeedBatch

    torch.set_num_threads(threads)
    splits = load_splits("mnist", data_dir, device=torch.device("cpu"))
    genome = load_genome(genome_path)
    config = TrainConfig(device="cpu", epochs=15, max_steps=warmup + steps)
    runner = Trainer(genome, splits, config) if seeds == 0 else \
        _SeedBatch(genome, splits, [replace(config, seed=s) for s in range(seeds)])
    runner.total_steps = warmup
    runner.train_epoch()  # warm-up steps
    runner.total_steps = warmup + steps
    start = time.perf_counter()
    runner.train_epoch()
    seconds = time.perf_counter() - start
    return {"seed_images_per_s": max(seeds, 1) * steps * config.batch_size / seconds}


def run(args: argparse.Namespace, genome: str, seeds_per_process: list[int], threads: int) -> list[dict]:
    from benchmarks.bench_two_processes import side_by_side

    return side_by_side([[sys.executable, __file__, "--child", str(seeds), "--data-dir", args.data_dir, "--steps",
                          str(args.steps), "--threads", str(threads), genome] for seeds in seeds_per_process])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("genomes", nargs="*", default=[str(ROOT / "zoo" / "mnist_5k_search.json")])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.data_dir, args.genomes[0], args.child, args.steps, args.threads)), flush=True)
        return
    layouts = [("separate", [0], 1), ("batched 1", [1], 1), ("batched 3", [3], 1), ("batched 6", [6], 1),
               ("separate", [0, 0], 1), ("batched 2 + 1", [2, 1], 1), ("batched 3 + 3", [3, 3], 1),
               ("separate", [0], 2), ("batched 3", [3], 2), ("batched 6", [6], 2)]
    print(f"{args.steps} timed steps of batch 128 per seed; seed-images/s")
    print("| genome | layout | processes x threads | seed-images/s per process | in all | vs separate, same layout |\n"
          "| --- | --- | ---: | --- | ---: | ---: |")
    for genome in args.genomes:
        base: dict[int, float] = {}
        for name, seeds, threads in layouts:
            results = run(args, genome, seeds, threads)
            total = sum(r["seed_images_per_s"] for r in results)
            base.setdefault((len(seeds), threads), total)
            rates = " + ".join(f"{r['seed_images_per_s']:,.0f}" for r in results)
            print(f"| {Path(genome).stem} | {name} | {len(seeds)} x {threads} | {rates} | {total:,.0f} | "
                  f"{total / base[(len(seeds), threads)]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
