"""Twins among a search's trained designs: distinct genome strings that compute the same function (one canonical
form, ``blocks.Genome.canonical``). Reads leaderboards (``leaderboard.csv``); counts trained trials (complete or
pruned: they cost training) whose design has a twin trained in the same study.

    python benchmarks/bench_twins.py benchmarks/results/*/leaderboard.csv benchmarks/results/*/*/leaderboard.csv
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blocks import Genome  # noqa: E402


def twins(board: pd.DataFrame) -> tuple[int, int, int]:
    """(trained trials, trained trials with a twin, twin pairs) of one leaderboard."""
    trained = board[board["status"].isin(["complete", "pruned"])]
    forms: dict[str, set[str]] = defaultdict(set)
    for text in trained["genome"]:
        forms[Genome.from_string(text).hash].add(text)
    twinned = {text for texts in forms.values() if len(texts) > 1 for text in texts}
    pairs = sum(len(texts) * (len(texts) - 1) // 2 for texts in forms.values())
    return len(trained), int(trained["genome"].isin(twinned).sum()), pairs


def main() -> None:
    total = [0, 0, 0]
    print("| leaderboard | trained trials | with a twin | twin pairs |")
    print("| --- | ---: | ---: | ---: |")
    for path in sys.argv[1:]:
        counts = twins(pd.read_csv(path))
        total = [a + b for a, b in zip(total, counts)]
        print(f"| {path} | {counts[0]} | {counts[1]} ({counts[1] / max(counts[0], 1):.0%}) | {counts[2]} |")
    print(f"| all | {total[0]} | {total[1]} ({total[1] / max(total[0], 1):.0%}) | {total[2]} |")


if __name__ == "__main__":
    main()
