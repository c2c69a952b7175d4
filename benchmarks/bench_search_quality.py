"""Search quality: the default multi-fidelity search with each sampler, at equal compute, over sampler seeds.

    python benchmarks/bench_search_quality.py --data-dir ../shared/data --out benchmarks/results/search_quality
    python benchmarks/bench_search_quality.py ... --shard 0/2 &  python benchmarks/bench_search_quality.py ... --shard 1/2
    python benchmarks/bench_search_quality.py --out benchmarks/results/search_quality --table [--plot curves.png]

Each run is one search (``search.runner.run_search``, one worker, one CPU thread) with one sampler and one seed
(the sampler's and the training's): the same budget, pruner, rungs and number of trained trials for every
sampler. Its JSON records every trial and the trajectory: after each trained trial, the epochs spent so far
(rung runs included) and the best full-fidelity validation accuracy found so far, with its params. Samplers are
compared at equal epochs spent: at fractions of the smallest total any run of the benchmark spent.

The fidelity is a parameter: the default is a cheap replica of the default search (successive halving with
separate 1- and 3-epoch rungs, full runs of 9 epochs, on a fixed 10,000-image training subset), so that several
seeds fit in an afternoon; ``--epochs 15 --train-subset 0`` is the real thing. The compute is equal by epochs, not
by trials: a run that has trained its ``--trials`` but spent fewer than ``--allowance`` epochs (a sampler whose
proposals are pruned early spends less) gets more trials until it has. A finished run is never repeated; a stopped
one, or one below the allowance, resumes its study (``runs/search_quality``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.resumable import add_arguments, pending, save  # noqa: E402

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def trajectory(trials: list[dict], epochs: int) -> list[dict]:
    """After each trained trial (in the order they finished): epochs spent so far and the best full-fidelity
    (``epochs``) validation accuracy so far, with its params. ``trials``: the run's trial records."""
    spent, best, points = 0, None, []
    for t in sorted((t for t in trials if t["trained"]), key=lambda t: t["finished"]):
        spent += t["epochs_trained"]
        if t["status"] == "complete" and t["epochs"] == epochs and (best is None or t["val_acc"] > best["val_acc"]):
            best = t
        points.append({"epochs_spent": spent, "best_val": best["val_acc"] if best else None,
                       "best_params": best["params"] if best else None})
    return points


def best_at(points: list[dict], allowance: float) -> float | None:
    """The best full-fidelity validation accuracy a run had found within ``allowance`` epochs spent."""
    found = [p["best_val"] for p in points if p["epochs_spent"] <= allowance and p["best_val"] is not None]
    return found[-1] if found else None


def _record(study, settings) -> list[dict]:
    from optuna.trial import TrialState

    from search.runner import TRAINED

    trials = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        trials.append({"number": t.number, "status": a.get("status"), "trained": a.get("status") in TRAINED,
                       "genome": a.get("genome"), "params": a.get("params"), "val_acc": a.get("val_acc"),
                       "epochs": a.get("epochs"), "epochs_trained": a.get("epochs_trained") or a.get("epochs") or 0,
                       "rungs": a.get("rungs"), "seconds": a.get("seconds"),
                       "finished": t.datetime_complete.timestamp() if t.datetime_complete else 0.0})
    return trials


def _spent_enough(path: Path, allowance: int) -> bool:
    """Whether a finished run spent ``allowance`` epochs; a run below it is removed, to be resumed."""
    if not path.exists():
        return False
    if json.loads(path.read_text())["trajectory"][-1]["epochs_spent"] >= allowance:
        return True
    path.unlink()
    return False


def _run(sampler: str, seed: int, args: argparse.Namespace) -> dict:
    import optuna
    import torch

    from search.runner import run_search
    from search.settings import SearchSettings

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = SearchSettings(budget=args.budget, sampler=sampler, seed=seed, trials=args.trials, epochs=args.epochs,
                              min_epochs=1, train_subset=args.train_subset or None, workers=1, device="cpu",
                              data_dir=args.data_dir, out=args.runs, study=f"{sampler}-s{seed}-b{args.budget}")
    start = time.time()
    study = run_search(settings)
    trials = _record(study, settings)
    points = trajectory(trials, settings.epochs)
    while points[-1]["epochs_spent"] < args.allowance:  # equal compute: more trials until the allowance is spent
        settings.trials += 5
        study = run_search(settings)
        trials = _record(study, settings)
        points = trajectory(trials, settings.epochs)
    ranked = _rank_1(trials, settings.val_size)
    return {"sampler": sampler, "seed": seed, "settings": settings.to_dict(), "seconds": round(time.time() - start, 1),
            "trials": trials, "trajectory": points, "rank_1": ranked, "date": time.strftime("%Y-%m-%d")}


def within(trials: list[dict], allowance: float) -> list[dict]:
    """The trained trials that had finished when ``allowance`` epochs were spent (in the order they finished)."""
    spent, kept = 0, []
    for t in sorted((t for t in trials if t["trained"]), key=lambda t: t["finished"]):
        spent += t["epochs_trained"]
        if spent > allowance:
            break
        kept.append(t)
    return kept


def _rank_1(trials: list[dict], val_size: int) -> dict | None:
    """The rank 1 of ``trials`` under ``search.ranking`` (the one-standard-error rule on the validation split)."""
    import pandas as pd

    from reports.leaderboard import rank_trials

    rows = [{"trial": t["number"], "status": t["status"], "val_acc": t["val_acc"], "params": t["params"],
             "epochs": t["epochs"], "images": 0, "genome": t["genome"]} for t in trials]
    ranked = rank_trials(pd.DataFrame(rows), None, val_size)
    top = ranked[ranked["rank"] == 1]
    if top.empty:
        return None
    row = top.iloc[0]
    return {"trial": int(row["trial"]), "val_acc": float(row["val_acc"]), "params": int(row["params"]),
            "genome": row["genome"]}


def _summary(runs: list[dict]) -> tuple[str, dict[str, list[tuple[float, float]]]]:
    """The Markdown table, and each sampler's mean curve (epochs spent, mean best val) for the plot."""
    allowance = min(r["trajectory"][-1]["epochs_spent"] for r in runs)
    samplers = sorted({r["sampler"] for r in runs})
    lines = ["| sampler | seeds | " + " | ".join(f"best val at {f:.0%} ({f * allowance:.0f} epochs)" for f in FRACTIONS)
             + f" | at {allowance:.0f} epochs: rank 1 (1-SE rule), val and params | distinct genomes trained | "
             "minutes per whole run |",
             "| --- | ---: | " + " | ".join("---" for _ in FRACTIONS) + " | --- | ---: | ---: |"]
    curves = {}
    for sampler in samplers:
        group = sorted((r for r in runs if r["sampler"] == sampler), key=lambda r: r["seed"])
        cells = []
        for f in FRACTIONS:
            values = [best_at(r["trajectory"], f * allowance) for r in group]
            values = [v for v in values if v is not None]
            if values:
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.fmean(values):.2f} ± {std:.2f} (min {min(values):.2f})")
            else:
                cells.append("-")
        ranks = [x for x in (_rank_1(within(r["trials"], allowance), r["settings"]["val_size"]) for r in group) if x]
        rank_text = (f"{statistics.fmean(x['val_acc'] for x in ranks):.2f}, "
                     f"{statistics.fmean(x['params'] for x in ranks):,.0f}" if ranks else "-")
        distinct = statistics.fmean(len({t["genome"] for t in within(r["trials"], allowance)}) for r in group)
        minutes = statistics.fmean(r["seconds"] for r in group) / 60
        lines.append(f"| {sampler} | {len(group)} ({', '.join(str(r['seed']) for r in group)}) | "
                     + " | ".join(cells) + f" | {rank_text} | {distinct:.0f} | {minutes:.1f} |")
        grid = [allowance * i / 40 for i in range(1, 41)]
        curve = []
        for x in grid:
            values = [v for v in (best_at(r["trajectory"], x) for r in group) if v is not None]
            if len(values) == len(group):
                curve.append((x, statistics.fmean(values)))
        curves[sampler] = curve
    return "\n".join(lines), curves


def _plot(curves: dict[str, list[tuple[float, float]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for sampler, curve in curves.items():
        if curve:
            ax.plot(*zip(*curve), label=sampler)
    ax.set_xlabel("epochs spent (rung runs included)")
    ax.set_ylabel("best full-fidelity val acc so far (%), mean over seeds")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, "benchmarks/results/search_quality")
    parser.add_argument("--samplers", nargs="+", default=["tpe", "random", "evolution"])
    parser.add_argument("--seeds", type=int, default=3, help="repeats per sampler (sampler and training seed)")
    parser.add_argument("--seed-offset", type=int, default=0)
    parser.add_argument("--budget", type=int, default=5000)
    parser.add_argument("--trials", type=int, default=40, help="trained trials per search")
    parser.add_argument("--epochs", type=int, default=9, help="the full fidelity (rungs of 1 and 3 epochs below it)")
    parser.add_argument("--train-subset", type=int, default=10000, help="training images (0: all 55,000)")
    parser.add_argument("--allowance", type=int, default=200,
                        help="epochs each run spends at least (rung runs included): trials are added until it has; "
                             "a finished run below it is resumed")
    parser.add_argument("--runs", default="runs/search_quality", help="where the studies live (resume)")
    parser.add_argument("--plot", help="with --table: write the mean curves to this PNG")
    args = parser.parse_args()
    out = Path(args.out)
    if args.table:
        runs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
        if not runs:
            raise SystemExit(f"no finished runs in {out}")
        table, curves = _summary(runs)
        print(table)
        if args.plot:
            s = runs[0]["settings"]
            _plot(curves, Path(args.plot), f"budget {s['budget']:,}, rungs of 1 and 3 epochs, full fidelity "
                  f"{s['epochs']} epochs on {s['train_subset'] or 55000:,} images; {len(runs)} runs")
        return
    jobs = ((f"{sampler}__s{seed}__b{args.budget}", (sampler, seed))
            for seed in range(args.seed_offset, args.seed_offset + args.seeds) for sampler in args.samplers)
    jobs = [(stem, job) for stem, job in jobs if not _spent_enough(out / f"{stem}.json", args.allowance)]
    for path, (sampler, seed) in pending(jobs, out, args.shard):
        run = _run(sampler, seed, args)
        save(path, run)
        last = run["trajectory"][-1]
        print(f"{sampler} seed {seed}: best val {last['best_val']} at {last['best_params']} params, "
              f"{last['epochs_spent']} epochs, rank 1 {run['rank_1']}, {run['seconds'] / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
