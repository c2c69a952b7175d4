"""BudgetNAS command line: describe a genome, search for one under a budget, reproduce a winner.

Exit codes: 0 success; 1 ``--describe`` found the genome over the given limits; 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main", "build_parser"]


class UsageError(ValueError):
    """Bad command-line input: printed as one line, exit code 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="run_search.py",
        description="Find tiny CNNs under a hard budget (params, receptive field, MACs).",
        epilog="examples:\n"
               "  python run_search.py --describe zoo/mnist_8k_gap.json --budget 8000\n"
               "  python run_search.py --describe 'i1x28x28n10-conv_c8_k3-gap-conv_c10_k1_oc' --json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_argument_group("modes")
    mode.add_argument("--describe", metavar="GENOME",
                      help="print the layer table, totals and verdict of a genome (.json file or compact string)")
    mode.add_argument("--json", action="store_true", help="with --describe: print one JSON object instead")

    search = parser.add_argument_group("search (the default mode)")
    search.add_argument("--dataset", default="mnist", help="mnist (default), fashion-mnist or cifar10")
    search.add_argument("--data-dir", default="data", help="dataset root; downloaded there when missing (default ./data)")
    search.add_argument("--target", type=float, metavar="ACC",
                        help="validation accuracy in percent to reach; then smaller models are sought")
    search.add_argument("--stop-at-target", action="store_true", help="stop at the first trial that meets --target")
    search.add_argument("--trials", type=_positive_int, default=50,
                        help="trained trials (rejected proposals don't count; default 50)")
    search.add_argument("--timeout", type=float, metavar="SECONDS", help="stop starting trials after this long")
    search.add_argument("--epochs", type=_positive_int, default=5, help="training epochs per trial (default 5)")
    search.add_argument("--sampler", default="tpe", help="tpe (default), nsga2 (accuracy up, params down) or random")
    search.add_argument("--pruner", default="median", help="median (default), hyperband or none")
    search.add_argument("--storage", metavar="URL",
                        help="Optuna storage URL (default: sqlite file under --out/<study>/)")
    search.add_argument("--study", help="study name (default <dataset>-b<budget>); the same name resumes it")
    search.add_argument("--workers", type=_positive_int, default=1, help="local worker processes (default 1)")
    search.add_argument("--device", default="auto", help="auto (default: cuda, then mps, then cpu), cuda, mps or cpu")
    search.add_argument("--seed", type=int, default=0, help="sampler and training seed (default 0)")
    search.add_argument("--out", default="runs", help="output directory (default runs/)")
    search.add_argument("--train-subset", type=_positive_int, metavar="N",
                        help="train each trial on N training images only (cheap proxy search)")
    search.add_argument("--tune-hparams", action="store_true", help="also search lr, weight decay, batch size, "
                                                                   "label smoothing")
    search.add_argument("--no-repair", action="store_true",
                        help="reject over-budget proposals instead of scaling their widths down to the budget")

    limits = parser.add_argument_group("limits")
    limits.add_argument("--budget", type=_positive_int, metavar="PARAMS", help="maximum trainable parameters")
    limits.add_argument("--min-rf", metavar="PIXELS|auto",
                        help="minimum receptive field of the last feature map; 'auto' = input size")
    limits.add_argument("--max-macs", type=_positive_int, metavar="MACS",
                        help="maximum multiply-accumulates per image")
    return parser


def _limits(args: argparse.Namespace):
    from budgets import Limits, parse_min_rf

    try:
        min_rf = parse_min_rf(args.min_rf)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return Limits(max_params=args.budget, min_rf=min_rf, max_macs=args.max_macs)


def _source_name(source: str) -> str:
    return source if source.endswith(".json") else "genome string"


def _describe(args: argparse.Namespace) -> int:
    from blocks import GenomeError, load_genome
    from budgets import analyze, check
    from reports.summary import render_summary

    genome = load_genome(args.describe)
    try:
        analysis = analyze(genome)
    except GenomeError as e:
        raise e.with_source(_source_name(args.describe)) from None
    verdict = check(genome, _limits(args))
    if args.json:
        print(json.dumps({**analysis.to_dict(), "violations": list(verdict.violations), "ok": verdict.ok}))
    else:
        render_summary(analysis, verdict, _limits(args))
    return 0 if verdict.ok else 1


def _search(args: argparse.Namespace) -> int:
    from rich.console import Console

    from reports.leaderboard import load_finals, top_table, trials_frame
    from search.runner import run_search
    from search.settings import SearchSettings, redact
    from training import resolve_device

    limits = _limits(args)
    if args.budget is None and args.max_macs is None:
        raise UsageError("give a limit to search under: --budget PARAMS (and/or --max-macs)")
    try:
        resolve_device(args.device) if args.device in ("auto", "cuda", "mps", "cpu") else None
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.device not in ("auto", "cuda", "mps", "cpu"):
        raise UsageError(f"unknown --device {args.device!r}; choose from auto, cuda, mps, cpu")
    settings = SearchSettings(
        budget=args.budget, min_rf=limits.min_rf, max_macs=args.max_macs, target=args.target, dataset=args.dataset,
        data_dir=args.data_dir, trials=args.trials, timeout=args.timeout, epochs=args.epochs, sampler=args.sampler,
        pruner=args.pruner, storage=args.storage, study=args.study, workers=args.workers, device=args.device,
        seed=args.seed, out=args.out, train_subset=args.train_subset, tune_hparams=args.tune_hparams,
        repair=not args.no_repair, stop_at_target=args.stop_at_target)
    from training import DATASETS
    if settings.dataset not in DATASETS:
        raise UsageError(f"unknown dataset {settings.dataset!r}; known: {', '.join(DATASETS)}")
    console = Console(soft_wrap=True)
    console.print(f"study {settings.study} in {redact(settings.storage_url)}: {settings.limits.describe()}, "
                  f"{settings.trials} trials x {settings.epochs} epochs, sampler {settings.sampler}, "
                  f"pruner {settings.pruner}, {settings.workers} worker(s)")
    code = 0
    study = None
    try:
        study = run_search(settings)
    except KeyboardInterrupt:
        console.print("interrupted: completed trials are kept in the study; leaderboard written")
        code = 130
    if study is None:
        from search.settings import open_study
        study = open_study(settings)
    df = trials_frame(study, settings.target, load_finals(settings.run_dir))
    console.print(top_table(df, 10, title=f"Top 10 of study {settings.study} (ranked: {_RANK_RULE})"))
    console.print(f"leaderboard: {settings.run_dir / 'leaderboard.csv'}")
    return code


_RANK_RULE = "meets target -> fewest params; else highest val acc"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    from blocks import GenomeError
    from search.settings import SearchError
    from training import DataError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.describe:
            return _describe(args)
        return _search(args)
    except (GenomeError, UsageError, SearchError, DataError) as e:
        print(f"run_search.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
