"""Share of feasible proposals over a 200-trial search at a given budget (no training).

    python benchmarks/bench_feasibility.py --budget 8000 --trials 200 --sampler tpe [--no-repair]
    python benchmarks/bench_feasibility.py --budget 20000 --max-ram 65536 --input 3x96x96 --classes 10

Runs the real search objective (sampling, width repair, analytic check, constraint reporting) in an
in-memory Optuna study; training is replaced by a stand-in accuracy that rises with the share of the
budget used (the pressure a real search puts toward bigger models). Prints the feasible share.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402
import torch  # noqa: E402

from budgets import totals  # noqa: E402
from search.runner import Objective  # noqa: E402
from search.settings import SearchSettings, make_sampler  # noqa: E402
from blocks import InputSpec  # noqa: E402
from training import DATASETS, EpochMetrics, Splits, TrainResult  # noqa: E402


def _no_data(spec: InputSpec) -> Splits:
    """Splits of the input's shape and no images: the objective only needs the spec."""
    empty_x = torch.empty((0, spec.channels, spec.height, spec.width), dtype=torch.uint8)
    empty_y = torch.empty(0, dtype=torch.int64)
    return Splits("none", spec, empty_x, empty_y, empty_x, empty_y, empty_x, empty_y, (0.0,), (1.0,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=8000)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--sampler", default="tpe")
    parser.add_argument("--no-repair", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--input", metavar="CxHxW", help="input shape (default: MNIST's 1x28x28)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--max-ram", type=int, help="bytes of peak activations (int8)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = SearchSettings(budget=args.budget, sampler=args.sampler, repair=not args.no_repair, seed=args.seed,
                              max_ram=args.max_ram)
    spec = DATASETS["mnist"].spec
    if args.input:
        c, h, w = (int(v) for v in args.input.lower().split("x"))
        spec = InputSpec(c, h, w, args.classes)

    def stand_in_train(genome, splits, config, on_epoch=None) -> TrainResult:
        params = totals(genome)[0]
        val_acc = 90.0 + 9.0 * min(params / args.budget, 1.0)
        return TrainResult("complete", [EpochMetrics(1, 0.0, val_acc, 0.0, val_acc)], 0.0, "none", 0, params, {})

    objective = Objective(settings, _no_data(spec), None, log=lambda line: None, train_fn=stand_in_train)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(args.sampler, args.seed))
    study.optimize(objective, n_trials=args.trials)
    statuses = [t.user_attrs.get("status") for t in study.trials]
    feasible = sum(s != "rejected" for s in statuses)
    params = sorted(t.user_attrs["params"] for t in study.trials if t.user_attrs.get("status") != "rejected")
    median = params[len(params) // 2] if params else 0
    low = params[len(params) // 10] if params else 0
    print(f"input {spec.channels}x{spec.height}x{spec.width}, budget {args.budget:,}"
          + (f", max RAM {args.max_ram:,} B" if args.max_ram else "")
          + f", sampler {args.sampler}, repair {'off' if args.no_repair else 'on'}: "
          f"{feasible}/{len(statuses)} feasible = {100 * feasible / len(statuses):.1f}%, "
          f"feasible params: median {median:,}, 10th percentile {low:,}, min {params[0] if params else 0:,}")


if __name__ == "__main__":
    main()
