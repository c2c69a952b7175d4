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


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    from blocks import GenomeError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.describe:
            return _describe(args)
        parser.print_usage(sys.stderr)
        print("run_search.py: error: nothing to do; give --describe GENOME", file=sys.stderr)
        return 2
    except (GenomeError, UsageError) as e:
        print(f"run_search.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
