"""Training-step time of the throughput benchmark's designs, per design, under each layout, thread count and dropout.

    python benchmarks/bench_step_costs.py --data-dir ../shared/data                       # 1 thread, both layouts
    python benchmarks/bench_step_costs.py --data-dir ../shared/data --threads 1 2 --layouts channels_last nchw
    python benchmarks/bench_step_costs.py --data-dir ../shared/data --without-dropout     # what dropout costs

The designs are ``bench_search_throughput``'s (``--designs`` sampled at its budget with its seed). Each setting
trains ``--steps`` steps of the engine (default TrainConfig, batch 128) after ``--warmup`` untimed ones, in this
one process, every setting once per ``--repeat`` round and the rounds interleaved, so that a ratio between
settings comes from one sitting. ``--without-dropout`` adds each design with its dropout removed (rate 0):
the difference is what dropout costs. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_search_throughput import designs  # noqa: E402


def without_dropout(genome: str) -> str:
    """The compact genome string with every layer's dropout removed (rate 0, no ``d`` in its order)."""
    from blocks import Genome

    data = Genome.from_string(genome).to_dict(explicit=False)
    for layer in data["layers"]:
        layer.pop("dropout", None)
        if "order" in layer:
            layer["order"] = layer["order"].replace("d", "")
    return Genome.from_dict(data).to_string()


def step_ms(genome: str, splits, threads: int, channels_last: bool, steps: int, warmup: int) -> float:
    """Milliseconds per training step of ``genome`` (``threads`` CPU threads, the given layout)."""
    import torch

    from blocks import Genome
    from training import TrainConfig
    from training.engine import Trainer

    torch.set_num_threads(threads)
    trainer = Trainer(Genome.from_string(genome), splits,
                      TrainConfig(device="cpu", epochs=1, max_steps=warmup + steps, channels_last=channels_last))
    trainer.total_steps = warmup
    trainer.train_epoch()
    trainer.total_steps = warmup + steps
    start = time.perf_counter()
    trainer.train_epoch()
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--designs", type=int, default=8)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--layouts", nargs="+", choices=["channels_last", "nchw"], default=["channels_last", "nchw"])
    parser.add_argument("--without-dropout", action="store_true")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    import torch

    from training import load_splits

    splits = load_splits("mnist", args.data_dir, device=torch.device("cpu"))
    genomes = designs(args.designs)
    settings = [(threads, layout, drop) for threads in args.threads for layout in args.layouts
                for drop in ((True, False) if args.without_dropout else (True,))]
    names = [f"{t} thr {layout}{'' if drop else ' no dropout'}" for t, layout, drop in settings]
    print(f"torch {torch.__version__}, {len(genomes)} designs, {args.steps} steps each after {args.warmup}, "
          f"mean of {args.repeat} interleaved rounds, ms per step")
    print(" | ".join(["design", *names]))
    totals = [0.0] * len(settings)
    for index, genome in enumerate(genomes):
        row = [0.0] * len(settings)
        for _ in range(args.repeat):
            for i, (threads, layout, drop) in enumerate(settings):
                g = genome if drop else without_dropout(genome)
                row[i] += step_ms(g, splits, threads, layout == "channels_last", args.steps, args.warmup) / args.repeat
        totals = [a + b for a, b in zip(totals, row)]
        print(" | ".join([str(index), *(f"{ms:.1f}" for ms in row)]), flush=True)
    print(" | ".join(["sum", *(f"{ms:.1f}" for ms in totals)]))
    print(" | ".join(["ratio to first", *(f"{totals[0] / ms:.2f}x" for ms in totals)]))


if __name__ == "__main__":
    main()
