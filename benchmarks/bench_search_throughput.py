"""Search throughput: trained trials per hour of one fixed search, and where a trial's time goes.

    python benchmarks/bench_search_throughput.py --data-dir ../shared/data              # workers 1, then 2
    python benchmarks/bench_search_throughput.py --data-dir ../shared/data --workers 1 2 auto
    python benchmarks/bench_search_throughput.py --data-dir ../shared/data --skip-split --workers 2 auto \
        --baseline /tmp/before --repeat 2     # an earlier commit's checkout, interleaved with this one
    python benchmarks/bench_search_throughput.py --data-dir ../shared/data --skip-split --workers auto \
        --baseline /tmp/b57 --baseline-workers 1 2 --repeat 3   # the code the issue measured, its two layouts

Part 1 runs the search in this process (one worker) with every step timed: data loading (once per
worker), model build, training steps, validation, storage round trips and leaderboard writing.
Part 2 runs the same search through the CLI at each ``--workers`` value and reports trials/hour.
Every run trains the same designs (``--designs`` genomes sampled once from the space at the budget
and queued with ``--enqueue``, so each layout trains exactly these), at the same fidelity on real
MNIST; run it alone on the machine. Each layout also reports its in-trial seconds (the leaderboard's
``seconds``): busy share = in-trial seconds / (workers x wall time), and the steady-state rate a long
search approaches once start-up and the idle tail of the last trials no longer weigh. ``--epochs 3`` gives
longer trials, where a worker's start-up (importing torch, loading the data) weighs less. ``--baseline
DIR`` runs DIR's ``run_search.py`` (e.g. ``git worktree add /tmp/before <commit>``; it needs ``--enqueue``)
on the same designs right before this checkout's, layout by layout, ``--repeat`` times, so that a
before/after ratio comes from one sitting on one machine; ``--baseline-workers`` gives the baseline its own
layouts (each round: the baseline's, then this checkout's). The issue's own starting point, 57c3fff, predates
``--enqueue``: ``git worktree add /tmp/b57 57c3fff && git -C /tmp/b57 apply
$PWD/benchmarks/baselines/57c3fff-enqueue.patch`` adds it (trial N trains the N-th genome; nothing else changes).
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

from search.settings import cpu_worker_cap  # noqa: E402

# The reference search: 8 trials, 1 epoch, 15,000 training images, budget 8,000.
BUDGET, SUBSET = 8000, 15000


def designs(n: int, seed: int = 0) -> list[str]:
    """``n`` designs sampled from the search space at the budget (random sampler, fixed seed)."""
    from blocks import InputSpec
    from budgets import Limits
    from search.space import random_designs

    return [g.to_string() for g in random_designs(InputSpec(1, 28, 28, 10), [Limits(max_params=BUDGET)] * n, seed)]


def _search_args(genomes: list[str], epochs: int) -> list[str]:
    return ["--budget", str(BUDGET), "--trials", str(len(genomes)), "--epochs", str(epochs), "--train-subset",
            str(SUBSET), "--sampler", "tpe", "--pruner", "none", "--final-top", "0", "--device", "cpu",
            "--seed", "0", "--enqueue", *genomes]


def _split(data_dir: str, out: Path, genomes: list[str], epochs: int) -> dict[str, float]:
    """One worker in-process, every step timed; returns seconds per step and the trial count."""
    import optuna
    import torch

    from reports.leaderboard import write_leaderboard
    from blocks import Genome
    from search.runner import enqueue_genomes, run_worker
    from search.settings import SearchSettings, open_study
    from training import load_splits, train

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    torch.set_num_threads(1)
    settings = SearchSettings(budget=BUDGET, trials=len(genomes), epochs=epochs, train_subset=SUBSET, sampler="tpe",
                              pruner="none",
                              device="cpu", seed=0, data_dir=data_dir, out=str(out), study="split")
    t = {"data loading": 0.0, "model build": 0.0, "training steps": 0.0, "validation": 0.0, "leaderboard": 0.0}
    start = time.perf_counter()
    splits = load_splits("mnist", data_dir, val_size=settings.val_size).subset(SUBSET, seed=0)
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
    enqueue_genomes(study, [Genome.from_string(g) for g in genomes], log=lambda line: None)
    trained = run_worker(settings, study=study, splits=splits, log=lambda line: None,
                         callbacks=[timed_leaderboard], train_fn=timed_train)
    total = time.perf_counter() - start
    t["storage, sampler and the rest"] = total - sum(t.values())
    return {**t, "total": total, "trials": trained}


def _cli(data_dir: str, out: Path, workers: str, genomes: list[str], epochs: int,
         code: Path = ROOT) -> tuple[float, int, float, list[float]]:
    """Wall seconds of one CLI search by the checkout ``code``, its trained trials, the sum of their in-trial
    seconds, and their validation accuracies in trial order (equal results: compare them between checkouts)."""
    study = f"w{workers}-{len(list(out.glob('w*')))}"
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(code / "run_search.py"), *_search_args(genomes, epochs),
                             "--workers", workers,
                             "--data-dir", str(Path(data_dir).resolve()), "--out", str(out), "--study", study],
                            capture_output=True, text=True, cwd=code)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-2000:])
    import pandas as pd

    board = pd.read_csv(out / study / "leaderboard.csv")
    trained = board[board["status"].isin(["complete", "pruned"])].sort_values("trial")
    return time.perf_counter() - start, len(trained), float(trained["seconds"].sum()), list(trained["val_acc"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--workers", nargs="*", default=["1", "2"])
    parser.add_argument("--skip-split", action="store_true")
    parser.add_argument("--designs", type=int, default=8, help="trials (the same designs at every layout)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--baseline", type=Path, help="an earlier checkout, run on the same designs before each run")
    parser.add_argument("--baseline-workers", nargs="*",
                        help="the baseline's layouts when they differ from --workers (an old checkout without auto); "
                             "each round then runs every baseline layout, then every layout of this checkout")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each layout (and of the baseline)")
    args = parser.parse_args()
    if args.baseline_workers is not None and not args.baseline:
        parser.error("--baseline-workers needs --baseline")
    genomes = designs(args.designs)
    print(f"{len(genomes)} designs at budget {BUDGET:,}, {args.epochs} epoch(s) on {SUBSET:,} images each")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if not args.skip_split:
            split = _split(args.data_dir, out, genomes, args.epochs)
            print(f"one worker in-process: {split['trials']} trials in {split['total']:.1f} s "
                  f"= {3600 * split['trials'] / split['total']:.0f} trials/hour")
            for step, seconds in split.items():
                if step not in ("total", "trials"):
                    print(f"  {step:32s} {seconds:7.1f} s  {100 * seconds / split['total']:5.1f}%")
        codes = [("baseline", args.baseline.resolve()), ("this checkout", ROOT)] if args.baseline else [("", ROOT)]
        if args.baseline_workers is not None:
            runs = [(codes[0], w) for w in args.baseline_workers] + [(codes[1], w) for w in args.workers]
            runs = runs * args.repeat
        else:  # layout by layout, the baseline right before this checkout
            runs = [(code, w) for w in args.workers for _ in range(args.repeat) for code in codes]
        for (name, code), workers in runs:
            seconds, trials, busy, accs = _cli(args.data_dir, out, workers, genomes, args.epochs, code)
            n = min(cpu_worker_cap()[0] if workers == "auto" else int(workers), trials)
            print(f"{name + ': ' if name else ''}CLI --workers {workers}: {trials} trials in {seconds:.1f} s "
                  f"(process start and data loading included) = {3600 * trials / seconds:.0f} trials/hour; "
                  f"in-trial time {busy:.1f} s ({busy / trials:.1f} s per trial), workers busy "
                  f"{100 * busy / (n * seconds):.0f}% of the wall time; steady state (no start-up, no idle "
                  f"tail) {3600 * trials * n / busy:.0f} trials/hour; val % "
                  + " ".join(f"{a:.2f}" for a in accs), flush=True)


if __name__ == "__main__":
    main()
