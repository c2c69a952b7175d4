"""Training-recipe measurement: reference designs x recipes x seeds, 15 epochs, one JSON per finished run.

    python benchmarks/bench_recipe.py --data-dir ../shared/data --out benchmarks/results/recipe
    python benchmarks/bench_recipe.py ... --shard 0/2 &  python benchmarks/bench_recipe.py ... --shard 1/2
    python benchmarks/bench_recipe.py --out benchmarks/results/recipe --table      # Markdown summary

Each run trains on the 55,000-image training split; recipes are compared on the final-epoch
validation accuracy (5,000 held-out training images). The test accuracy is recorded for the
record only. A finished run is never repeated: rerun the same command to resume after a stop.

``--ema D``: every run also keeps a moving average of its weights (``TrainConfig.ema_decay``), and the
final epoch is evaluated twice, raw and averaged: one training run measures both (issue 29's levers:
``--designs t3k6 t3k2 --recipes default translate ls --seeds 3 --seed-offset 3 --ema 0.999``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.resumable import add_arguments, pending, save  # noqa: E402

DESIGNS = {
    "zoo8k": "zoo/mnist_8k_gap.json",
    "hand5k": "i1x28x28n10-conv_c8_k3_r0.05-conv_c12_k3_r0.05-max_k2-conv_c8_k1-conv_c12_k3_r0.05"
              "-conv_c12_k3_r0.05-conv_c14_k3_r0.05-gap-conv_c10_k1_b0_oc-lsm",
    "t3k6": "zoo/mnist_3k6_search.json",  # 3,364 params
    "t3k2": "zoo/mnist_3k2_search.json",  # 3,186
    "t5k": "zoo/mnist_5k_search.json",  # 4,404
}
OLD = {"lr": 0.05, "warmup_frac": 0.2, "weight_decay": 1e-4, "decay_norm_bias": True}
RECIPES = {
    "old-default": OLD,
    "lr0.1": {**OLD, "lr": 0.1, "warmup_frac": 0.25},
    "lr0.1-groups": {"lr": 0.1, "warmup_frac": 0.25, "weight_decay": 1e-4, "decay_norm_bias": False},
    "lr0.1-nowd": {"lr": 0.1, "warmup_frac": 0.25, "weight_decay": 0.0, "decay_norm_bias": False},
    "lr0.1-groups-aug": {"lr": 0.1, "warmup_frac": 0.25, "weight_decay": 1e-4, "decay_norm_bias": False,
                         "rotation_deg": 10.0, "translate_px": 1.5, "scale_frac": 0.1},
    "lr0.1-groups-ls": {"lr": 0.1, "warmup_frac": 0.25, "weight_decay": 1e-4, "decay_norm_bias": False,
                        "label_smoothing": 0.1},
    # Batch size (issue 10: batch 256 trains 1.14x faster per image on CPU): same lr, and lr scaled linearly.
    "bs256": {"lr": 0.1, "warmup_frac": 0.25, "weight_decay": 1e-4, "decay_norm_bias": False, "batch_size": 256},
    "bs256-lr0.2": {"lr": 0.2, "warmup_frac": 0.25, "weight_decay": 1e-4, "decay_norm_bias": False, "batch_size": 256},
    # Issue 29's levers, each against today's defaults alone (rotation 7 degrees, lr 0.1, no smoothing):
    "default": {},
    "translate": {"translate_px": 2.0},  # a shift of up to 2 px (7%) per axis beside the rotation
    "scale": {"scale_frac": 0.1},
    "ls": {"label_smoothing": 0.1},
}


def _runs(designs: list[str], recipes: list[str], seeds: int, offset: int = 0) -> list[tuple[str, str, int]]:
    return [(d, r, s) for s in range(offset, offset + seeds) for d in designs for r in recipes]


def _final(trainer, splits) -> dict[str, float]:
    """Final-epoch validation and test accuracy of the raw weights and, with EMA, of their average."""
    from training import evaluate

    models = {"": trainer.model, **({"ema_": trainer.ema.module} if trainer.ema is not None else {})}
    accs = {}
    for prefix, model in models.items():
        for split in ("val", "test"):
            images, labels = getattr(splits, f"{split}_x"), getattr(splits, f"{split}_y")
            accs[f"{prefix}{split}_acc"] = evaluate(model, images, labels, splits.mean, splits.std,
                                                    memory_format=trainer.memory_format)[1]
    return accs


def _ema_table(runs: list[dict]) -> str:
    rows: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        rows.setdefault((run["design"], run["recipe"]), []).append(run)
    lines = ["| design | params | recipe | seeds | val (mean) | test: mean ± std, min | EMA val (mean) | "
             "EMA test: mean ± std, min | s/run |", "| --- | ---: | --- | ---: | ---: | --- | ---: | --- | ---: |"]

    def stats(values: list[float]) -> str:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.2f} ± {std:.2f}, {min(values):.2f}"

    for (design, recipe), group in sorted(rows.items()):
        group.sort(key=lambda r: r["seed"])
        f = [r["final"] for r in group]
        lines.append(f"| {design} | {group[0]['params']:,} | {recipe} | {len(group)} "
                     f"({group[0]['seed']}-{group[-1]['seed']}) | {statistics.fmean(x['val_acc'] for x in f):.2f} | "
                     f"{stats([x['test_acc'] for x in f])} | {statistics.fmean(x['ema_val_acc'] for x in f):.2f} | "
                     f"{stats([x['ema_test_acc'] for x in f])} | {statistics.fmean(r['seconds'] for r in group):.0f} |")
    return "\n".join(lines)


def _table(out: Path) -> str:
    rows: dict[tuple[str, str], list[dict]] = {}
    runs = [json.loads(path.read_text()) for path in sorted(out.glob("*.json"))]
    if runs and all("final" in run for run in runs):
        return _ema_table(runs)
    for run in runs:
        rows.setdefault((run["design"], run["recipe"]), []).append(run)
    lines = ["| design | params | recipe | seeds | final val acc (mean) | per seed | final test acc (mean) | s/epoch |",
             "| --- | ---: | --- | ---: | ---: | --- | ---: | ---: |"]
    for (design, recipe), runs in sorted(rows.items()):
        vals = [r["epochs"][-1]["val_acc"] for r in runs]
        tests = [r["epochs"][-1]["test_acc"] for r in runs]
        secs = statistics.fmean(r["seconds"] / len(r["epochs"]) for r in runs)
        lines.append(f"| {design} | {runs[0]['params']:,} | {recipe} | {len(runs)} | {statistics.fmean(vals):.2f} | "
                     f"{' / '.join(f'{v:.2f}' for v in vals)} | {statistics.fmean(tests):.2f} | {secs:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, "benchmarks/results/recipe")
    parser.add_argument("--designs", nargs="*", default=list(DESIGNS))
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed-offset", type=int, default=0, help="the first seed")
    parser.add_argument("--ema", type=float, default=0.0, help="also evaluate a moving average of the weights")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    out = Path(args.out)
    if args.table:
        print(_table(out))
        return
    import torch

    from blocks import load_genome
    from training import TrainConfig, Trainer, load_splits, train

    torch.set_num_threads(args.threads)
    splits = load_splits("mnist", args.data_dir, device="cpu")
    runs = _runs(args.designs, args.recipes, args.seeds, args.seed_offset)
    jobs = ((f"{d}__{r}__s{s}", (d, r, s)) for d, r, s in runs)
    for path, (design, recipe, seed) in pending(jobs, out, args.shard):
        start = time.time()
        if args.ema:
            config = TrainConfig(epochs=args.epochs, seed=seed, device="cpu", ema_decay=args.ema, **RECIPES[recipe])
            trainer = Trainer(load_genome(DESIGNS[design]), splits, config)
            losses = [trainer.train_epoch()[0] for _ in range(config.epochs)]
            final = _final(trainer, splits)
            save(path, {"design": design, "genome": trainer.genome.to_string(), "recipe": recipe, "seed": seed,
                        "params": trainer.params, "seconds": round(time.time() - start, 1), "config": asdict(config),
                        "train_loss": losses, "final": final, "threads": args.threads,
                        "host_cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")})
            print(f"{design} {recipe} seed {seed}: " + " ".join(f"{k} {v:.2f}" for k, v in final.items())
                  + f" ({time.time() - start:.0f} s)", flush=True)
            continue
        config = TrainConfig(epochs=args.epochs, seed=seed, device="cpu", evaluate_test=True, **RECIPES[recipe])
        result = train(load_genome(DESIGNS[design]), splits, config, progress=False)
        run = {"design": design, "genome": load_genome(DESIGNS[design]).to_string(), "recipe": recipe, "seed": seed,
               "params": result.params, "status": result.status, "seconds": round(time.time() - start, 1),
               "config": result.config, "epochs": [{"epoch": m.epoch, "val_acc": m.val_acc, "test_acc": m.test_acc,
                                                    "train_loss": m.train_loss} for m in result.epochs],
               "host_cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}
        save(path, run)
        last = result.epochs[-1]
        print(f"{design} {recipe} seed {seed}: val {last.val_acc:.2f} test {last.test_acc:.2f} "
              f"({run['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
