"""The CSV leaderboard of a study: one row per trial, ranked by ``search.ranking.rank_key``, written atomically.

Only trained trials (status complete) are ranked; rejected, pruned, diverged, failed and reused
(duplicate) rows get no rank.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table

from reports.runfiles import atomic_write, load_finals
from search.ranking import rank_key, tie_floor

__all__ = ["COLUMNS", "FINAL_COLUMNS", "LeaderboardWriter", "rank_trials", "read_leaderboard", "top_table", "trials_frame", "write_leaderboard"]

COLUMNS = ["rank", "trial", "status", "genome", "params", "rf", "macs", "ram", "flash", "val_acc", "best_epoch", "epochs", "images",
           "rung_val", "seconds", "device", "seed", "reasons", "hash", "val_meets_target"]
INTEGER_COLUMNS = ["trial", "params", "rf", "macs", "ram", "flash", "best_epoch", "epochs", "images", "seed"]
# Filled in for the finalists (retrained on the full training set over several seeds, test set).
FINAL_COLUMNS = ["test_acc_mean", "test_acc_std", "test_acc_min", "test_acc_low", "seeds_at_target", "meets_target",
                 "judged_on", "int8_test_acc_mean", "int8_test_acc_min", "arena_bytes", "tflite_bytes",
                 "measured_violations"]  # the int8 ones: measured in TFLM (--precision int8)


def trials_frame(study: Any, target: float | None = None, finals: dict | None = None,
                 val_images: int | None = None) -> pd.DataFrame:
    """One row per trial of ``study`` with the leaderboard columns, ranked (``val_images``: see ``rank_trials``)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        status = a.get("status", t.state.name.lower())
        if t.state.name == "FAIL":
            status = "failed"
        elif t.state.name == "RUNNING" and status == "training":
            status = "running"
        rows.append({
            "trial": t.number, "status": status, "genome": a.get("genome"), "params": a.get("params"),
            "rf": a.get("rf"), "macs": a.get("macs"), "ram": a.get("ram"), "flash": a.get("flash"), "val_acc": a.get("val_acc"), "best_epoch": a.get("best_epoch"),
            "epochs": a.get("epochs"), "images": a.get("images"), "rung_val": _rung_text(a.get("rungs")),
            "seconds": a.get("seconds"), "device": a.get("device"), "seed": a.get("seed"),
            "reasons": a.get("reasons"), "hash": a.get("hash"),
        })
    df = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("rank", "val_meets_target")])
    for column in INTEGER_COLUMNS:  # nullable: a missing value must not turn 5 into 5.0 in the CSV
        df[column] = pd.array(pd.to_numeric(df[column], errors="coerce"), dtype="Int64")
    df = rank_trials(df, target, val_images)
    for key in FINAL_COLUMNS:
        df[key] = pd.Series([None] * len(df), dtype="object")
    for trial, final in (finals or {}).items():
        mask = df["trial"] == int(trial)
        for key in FINAL_COLUMNS:
            value = final.get(key)
            df.loc[mask, key] = "; ".join(value) if isinstance(value, list) else value
    return df


def _rung_text(rungs: dict | None) -> str | None:
    """Validation accuracy of each separate rung run, e.g. ``1ep 97.66 / 3ep 98.38``."""
    return " / ".join(f"{epochs}ep {acc:.2f}" for epochs, acc in rungs.items()) if rungs else None


def rank_trials(df: pd.DataFrame, target: float | None, val_images: int | None = None) -> pd.DataFrame:
    """Add ``val_meets_target`` and ``rank`` (1 = best) and sort ranked rows first.

    ``val_images``: size of the validation split; given, accuracies within one standard error of the best one
    at the same fidelity are ties that go to fewer params (``search.ranking``). ``None`` ranks by accuracy.
    """
    df = df.copy()
    acc = pd.to_numeric(df["val_acc"], errors="coerce")
    df["val_meets_target"] = (acc >= target) if target is not None else None
    eligible = df[(df["status"] == "complete") & acc.notna()]
    fidelity = {i: (_int(eligible.loc[i].get("epochs")), _int(eligible.loc[i].get("images"))) for i in eligible.index}
    best: dict[tuple[int, int], float] = {}
    for i, level in fidelity.items():
        best[level] = max(best.get(level, -math.inf), float(acc[i]))
    floors = {level: tie_floor(top, val_images) for level, top in best.items()} if val_images else {}

    def key(i: Any) -> tuple:
        return rank_key(float(acc[i]), int(eligible.loc[i, "params"]), target, *fidelity[i], floors.get(fidelity[i]))

    order = sorted(eligible.index, key=key)
    df["rank"] = pd.array([None] * len(df), dtype="Int64")
    for position, index in enumerate(order, start=1):
        df.loc[index, "rank"] = position
    rest = [i for i in df.index if i not in set(order)]
    df = df.loc[order + rest]
    return df.reindex(columns=COLUMNS).reset_index(drop=True)


def _int(value: Any) -> int:
    return 0 if value is None or pd.isna(value) else int(value)


def write_leaderboard(study: Any, settings: Any, finals: dict | None = None) -> pd.DataFrame:
    """Rewrite ``<out>/<study>/leaderboard.csv`` atomically from the study's trials; returns the frame.

    ``finals`` defaults to the run directory's ``finals.json``.
    """
    finals = load_finals(settings.run_dir) if finals is None else finals
    df = trials_frame(study, settings.target, finals, settings.validation_images)
    atomic_write(settings.run_dir / "leaderboard.csv", df.to_csv(index=False))
    return df


class LeaderboardWriter:
    """Optuna callback that rewrites the leaderboard after every trial (picklable, for worker processes)."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def __call__(self, study: Any, trial: Any) -> None:
        write_leaderboard(study, self.settings)


def read_leaderboard(path: str | Path) -> pd.DataFrame:
    """A leaderboard CSV; raises ValueError with the file name when missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such leaderboard: {path}")
    try:
        df = pd.read_csv(path)
    except Exception as e:
        raise ValueError(f"{path}: not a readable CSV ({type(e).__name__}: {e})".splitlines()[0]) from None
    missing = [c for c in ("trial", "status", "genome", "rank") if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a BudgetNAS leaderboard (missing column(s) {', '.join(missing)})")
    return df


def top_table(df: pd.DataFrame, n: int = 10, title: str = "Top trials", genome_chars: int | None = None) -> Table:
    """A rich table of the ``n`` best ranked rows; genomes cut to ``genome_chars`` (narrow terminals)."""
    table = Table(title=title, title_justify="left")
    for name, justify in (("rank", "right"), ("trial", "right"), ("params", "right"), ("val_acc", "right"),
                          ("rf", "right"), ("macs", "right"), ("genome", "left")):
        table.add_column(name, justify=justify, overflow="fold")
    extra = "test_acc_mean" in df.columns and df["test_acc_mean"].notna().any()
    int8 = extra and "arena_bytes" in df.columns and df["arena_bytes"].notna().any()
    if extra:
        table.add_column("test acc (mean ± std, low)", justify="right")
        if int8:
            table.add_column("int8 TFLM (mean, arena, tflite)", justify="right")
        table.add_column("verdict")
    ranked = df[df["rank"].notna()].head(n)
    for _, r in ranked.iterrows():
        genome = str(r["genome"])
        if genome_chars is not None and len(genome) > genome_chars:
            genome = genome[:max(genome_chars - 1, 8)] + "…"
        cells = [str(int(r["rank"])), str(int(r["trial"])), f"{int(r['params']):,}", f"{float(r['val_acc']):.2f}",
                 str(int(r["rf"])), f"{int(r['macs']):,}", genome]
        if extra:
            low = r.get("test_acc_low")
            one_seed = low is None or pd.isna(low)  # no spread, no bound
            cells.append("" if pd.isna(r["test_acc_mean"]) else f"{r['test_acc_mean']:.2f}" if one_seed
                         else f"{r['test_acc_mean']:.2f} ± {r['test_acc_std']:.2f}, {low:.2f}")
            if int8:
                cells.append("" if pd.isna(r["arena_bytes"]) else f"{r['int8_test_acc_mean']:.2f}, "
                             f"{int(r['arena_bytes']):,} B, {int(r['tflite_bytes']):,} B")
            cells.append("" if r.get("meets_target") is None or pd.isna(r.get("meets_target")) else str(r["meets_target"]))
        table.add_row(*cells)
    return table
