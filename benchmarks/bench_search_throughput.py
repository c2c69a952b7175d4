"""Search throughput: trained trials per hour of one fixed search, and where a trial's time goes.

    python benchmarks/bench_search_throughput.py --data-dir ../shared/data              # workers 1, then 2
    python benchmarks/bench_search_throughput.py --data-dir ../shared/data --workers 1 2 auto

Part 1 runs the search in this process (one worker) with every step timed: data loading (once per
worker), model build, training steps, validation, storage round trips and leaderboard writing.
Part 2 runs the same search through the CLI at each ``--workers`` value and reports trials/hour.
Every run uses the same seed, fidelity and real MNIST; run it alone on the machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The reference search: 8 trials, 1 epoch, 15,000 training images, budget 8,000.
SEARCH = ["--budget", "8000", "--trials", "8", "--epochs", "1", "--train-subset", "15000", "--sampler", "tpe",
          "--pruner", "none", "--final-top", "0", "--device", "cpu", "--seed", "0"]


def _split(data_dir: str, out: Path) -> dict[str, float]:
    """One worker in-process, every step timed; returns seconds per step and the trial count."""
    import optuna
    import torch

    from reports.leaderboard import write_leaderboard
    from search.runner import run_worker
    from search.settings import SearchSettings, open_study
    from training import load_splits, train

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    torch.set_num_threads(1)
    settings = SearchSettings(budget=8000, trials=8, epochs=1, train_subset=15000, sampler="tpe", pruner="none",
                              device="cpu", seed=0, data_dir=data_dir, out=str(out), study="split")
    t = {"data loading": 0.0, "model build": 0.0, "training steps": 0.0, "validation": 0.0, "leaderboard": 0.0}
    start = time.perf_counter()
    splits = load_splits("mnist", data_dir, val_size=settings.val_size).subset(15000, seed=0)
    t["data loading"] = time.perf_counter() - start

    def timed_train(*args, **kwargs):
        result = train(*args, **kwargs)
        t["model build"] += result.setup_seconds
        t["validation"] += sum(m.eval_seconds for m in result.epochs)
        t["training steps"] += sum(m.seconds - m.eval_seconds for m in result.epochs)
        return result

    def timed_leaderboard(study, trial):
        t0 = time.perf_counter()
        write_leaderboard(study, settings)
        t["leaderboard"] += time.perf_counter() - t0

    study = open_study(settings)
    trained = run_worker(settings, study=study, splits=splits, log=lambda line: None,
                         callbacks=[timed_leaderboard], train_fn=timed_train)
    total = time.perf_counter() - start
    t["storage, sampler and the rest"] = total - sum(t.values())
    return {**t, "total": total, "trials": trained}


def _cli(data_dir: str, out: Path, workers: str) -> tuple[float, int]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(ROOT / "run_search.py"), *SEARCH, "--workers", workers,
                             "--data-dir", data_dir, "--out", str(out), "--study", f"w{workers}"],
                            capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-2000:])
    import pandas as pd

    board = pd.read_csv(out / f"w{workers}" / "leaderboard.csv")
    return time.perf_counter() - start, int(board["status"].isin(["complete", "pruned"]).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--workers", nargs="*", default=["1", "2"])
    parser.add_argument("--skip-split", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if not args.skip_split:
            split = _split(args.data_dir, out)
            print(f"one worker in-process: {split['trials']} trials in {split['total']:.1f} s "
                  f"= {3600 * split['trials'] / split['total']:.0f} trials/hour")
            for step, seconds in split.items():
                if step not in ("total", "trials"):
                    print(f"  {step:32s} {seconds:7.1f} s  {100 * seconds / split['total']:5.1f}%")
        for workers in args.workers:
            seconds, trials = _cli(args.data_dir, out, workers)
            print(f"CLI --workers {workers}: {trials} trials in {seconds:.1f} s (process start and data loading "
                  f"included) = {3600 * trials / seconds:.0f} trials/hour", flush=True)


if __name__ == "__main__":
    main()
