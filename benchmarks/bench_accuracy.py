"""Accuracy check: train one genome with the default TrainConfig and print per-epoch val / test accuracy.

    python benchmarks/bench_accuracy.py --data-dir ../shared/data --genome zoo/mnist_8k_gap.json --epochs 15

Trains on the training split (the validation split is carved out and used only for selection),
evaluates the test set after every epoch for the record. Tune defaults on the val column only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blocks import load_genome  # noqa: E402
from training import TrainConfig, load_splits, resolve_device, train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--genome", default="zoo/mnist_8k_gap.json")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=JSON",
                        help="override TrainConfig fields, e.g. lr=0.1 translate_px=1.0")
    args = parser.parse_args()
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    config = TrainConfig(epochs=args.epochs, seed=args.seed, device=args.device, evaluate_test=True, **overrides)
    splits = load_splits(args.dataset, args.data_dir, device=resolve_device(args.device))
    genome = load_genome(args.genome)
    print(f"{genome.to_string()}\nconfig: {overrides or 'defaults'}", flush=True)
    print(f"{'epoch':>5} {'train_loss':>10} {'train_acc':>9} {'val_acc':>8} {'test_acc':>8} {'seconds':>7}", flush=True)

    def report(m):
        print(f"{m.epoch:>5} {m.train_loss:>10.4f} {m.train_acc:>9.2f} {m.val_acc:>8.2f} {m.test_acc:>8.2f} "
              f"{m.seconds:>7.1f}", flush=True)

    result = train(genome, splits, config, on_epoch=report, progress=False)
    best = max(result.epochs, key=lambda m: m.val_acc)
    print(f"status {result.status}; {result.params:,} params; best val {best.val_acc:.2f}% at epoch {best.epoch} "
          f"(test {best.test_acc:.2f}%); final test {result.epochs[-1].test_acc:.2f}%; "
          f"max test {max(m.test_acc for m in result.epochs):.2f}%; {result.seconds:.0f} s on {result.device}")


if __name__ == "__main__":
    main()
