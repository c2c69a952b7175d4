"""``report.html`` (self-contained, images embedded) and ``report.md`` for a study's run directory.

Everything is read from the run directory: ``leaderboard.csv``, ``settings.json``, ``finals.json``.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib.ticker
import matplotlib.pyplot as plt
import pandas as pd

from blocks import Genome
from budgets import analyze
from reports.leaderboard import load_finals, read_leaderboard
from search.ranking import RANK_RULE

__all__ = ["write_report", "plot_accuracy_vs_params", "plot_best_so_far", "plot_final_curves"]

_STATUS_STYLE = {"complete": ("tab:blue", "o", "trained"), "reused": ("tab:blue", "o", None),
                 "pruned": ("tab:orange", "s", "pruned (partial training)"),
                 "diverged": ("tab:purple", "v", "diverged"), "rejected": ("tab:red", "x", "rejected (over budget)")}


def _finish(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def pareto_front(df: pd.DataFrame) -> pd.DataFrame:
    """Trained trials that no other trained trial beats on both val accuracy (up) and params (down)."""
    trained = df[df["status"] == "complete"].sort_values(["params", "val_acc"], ascending=[True, False])
    front, best = [], -1.0
    for _, row in trained.iterrows():
        if row["val_acc"] > best:
            front.append(row)
            best = row["val_acc"]
    return pd.DataFrame(front)


def plot_accuracy_vs_params(df: pd.DataFrame, budget: int | None, target: float | None):
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    trained_acc = df.loc[df["status"].isin(["complete", "pruned", "diverged"]), "val_acc"].dropna()
    floor = (trained_acc.min() if len(trained_acc) else 0.0) - 1.0
    for status, (color, marker, label) in _STATUS_STYLE.items():
        rows = df[(df["status"] == status) & df["params"].notna()]
        if rows.empty or label is None:
            continue
        y = rows["val_acc"].fillna(floor) if status != "rejected" else pd.Series([floor] * len(rows), index=rows.index)
        ax.scatter(rows["params"], y, c=color, marker=marker, s=28, alpha=0.75,
                   label=f"{label} ({len(rows)})")
    front = pareto_front(df)
    if not front.empty:
        ax.step(front["params"], front["val_acc"], where="post", color="black", lw=1.2, label="Pareto front")
    if budget:
        ax.axvline(budget, color="tab:red", ls="--", lw=1, label=f"budget {budget:,}")
    if target is not None:
        ax.axhline(target, color="tab:green", ls=":", lw=1, label=f"target {target}%")
    _finish(ax, "parameters", "validation accuracy (%)",
            "Validation accuracy vs parameters (rejected shown on the bottom line)")
    ax.legend(fontsize=8, loc="best")
    return fig


def plot_best_so_far(df: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(7.5, 3.5))
    trained = df[df["status"] == "complete"].sort_values("trial")
    if not trained.empty:
        ax.plot(trained["trial"], trained["val_acc"], "o", color="tab:blue", alpha=0.35, ms=4, label="trial")
        ax.step(trained["trial"], trained["val_acc"].cummax(), where="post", color="tab:blue", label="best so far")
    _finish(ax, "trial number", "validation accuracy (%)", "Best validation accuracy so far")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_final_curves(finals: dict, df: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for trial, final in sorted(finals.items(), key=lambda kv: int(kv[0])):
        curves = [c for c in final.get("per_epoch_test_acc", []) if c]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        mean = [sum(c[i] for c in curves) / len(curves) for i in range(n)]
        params = df.loc[df["trial"] == int(trial), "params"]
        label = f"trial {trial} ({int(params.iloc[0]):,} params)" if len(params) else f"trial {trial}"
        line, = ax.plot(range(1, n + 1), mean, marker="o", ms=3, label=label)
        for c in curves:
            ax.plot(range(1, len(c) + 1), c, color=line.get_color(), alpha=0.25, lw=0.8)
    _finish(ax, "epoch", "test accuracy (%)", "Finalists: test accuracy per epoch (mean over seeds; thin lines: each seed)")
    if ax.lines:
        ax.legend(fontsize=8, loc="lower right")
        low = min(min(line.get_ydata()) for line in ax.lines)
        ax.set_ylim(max(low, 95.0) - 0.2, 100.0)
    return fig


def _table(df: pd.DataFrame, css: str = "t") -> str:
    return df.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.2f}", border=0, classes=css)


def _top(df: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    cols = ["rank", "trial", "params", "val_acc", "rf", "macs", "test_acc_mean", "test_acc_std", "test_acc_min",
            "meets_target", "genome"]
    top = df[df["rank"].notna()].head(n)
    top = top[[c for c in cols if c in top.columns]].copy()
    for column in ("rank", "trial", "params", "rf", "macs"):
        top[column] = top[column].astype("Int64")
    return top


def _winner_table(genome_text: str) -> pd.DataFrame:
    analysis = analyze(Genome.from_string(genome_text))
    rows = [{"#": r.index, "layer": r.token, "output shape": str(list(r.output_shape)), "params": r.params,
             "RF": r.receptive_field, "MACs": r.macs} for r in analysis.layers]
    rows.append({"#": "", "layer": "total", "output shape": str(list(analysis.output_shape)),
                 "params": analysis.params, "RF": analysis.receptive_field, "MACs": analysis.macs})
    return pd.DataFrame(rows)


def _markdown(df: pd.DataFrame) -> str:
    header = "| " + " | ".join(str(c) for c in df.columns) + " |"
    sep = "| " + " | ".join("---" for _ in df.columns) + " |"

    def cell(v) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return ""
        return f"{v:.2f}" if isinstance(v, float) else (f"`{v}`" if isinstance(v, str) and v.startswith("i") and "-" in v else str(v))
    return "\n".join([header, sep] + ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)])


def write_report(run_dir: str | Path, df: pd.DataFrame | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` in ``run_dir``; returns their paths.

    ``df`` is the leaderboard frame when the caller has it; otherwise ``leaderboard.csv`` is read.
    """
    run_dir = Path(run_dir)
    df = read_leaderboard(run_dir / "leaderboard.csv") if df is None else df
    settings_path = run_dir / "settings.json"
    settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
    finals = load_finals(run_dir)
    budget, target = settings.get("budget"), settings.get("target")
    counts = df["status"].value_counts().to_dict()
    top = _top(df)
    winner = top.iloc[0]["genome"] if len(top) else None
    images = {"Validation accuracy vs parameters": _png(plot_accuracy_vs_params(df, budget, target)),
              "Best so far": _png(plot_best_so_far(df))}
    if finals:
        images["Finalists per epoch"] = _png(plot_final_curves(finals, df))
    shown = {k: settings.get(k) for k in ("study", "dataset", "budget", "min_rf", "max_macs", "target", "trials",
                                          "epochs", "sampler", "pruner", "workers", "train_subset", "seed")}
    name = html.escape(str(settings.get("study", run_dir.name)))
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>BudgetNAS report: {name}</title>",
             "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table.t{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}"
             "table.t td,table.t th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right}"
             "table.g td:last-child{text-align:left;font-family:monospace;font-size:12px;word-break:break-all}"
             "code{background:#f3f3f3;padding:1px 4px}img{max-width:100%}</style></head><body>",
             f"<h1>BudgetNAS report: {name}</h1>",
             "<h2>Search settings</h2><p>" + ", ".join(f"<b>{k}</b> {html.escape(str(v))}" for k, v in shown.items()
                                                        if v is not None) + "</p>",
             "<p>Trials: " + ", ".join(f"{v} {html.escape(str(k))}" for k, v in counts.items()) + "</p>",
             f"<p>Ranking: {html.escape(RANK_RULE)}. Test accuracy comes from retraining the finalists from scratch "
             "on the full training set.</p>",
             "<h2>Top 10</h2>", _table(top, "t g")]
    if winner:
        parts += [f"<h2>Winner</h2><p><code>{html.escape(winner)}</code></p>", _table(_winner_table(winner))]
    for title, data in images.items():
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    html_path = run_dir / "report.html"
    html_path.write_text("\n".join(parts))

    md = [f"# BudgetNAS report: {settings.get('study', run_dir.name)}", "",
          ", ".join(f"**{k}** {v}" for k, v in shown.items() if v is not None), "", "## Top 10", "", _markdown(top)]
    if winner:
        md += ["", "## Winner", "", f"`{winner}`", "", _markdown(_winner_table(winner))]
    md_path = run_dir / "report.md"
    md_path.write_text("\n".join(md) + "\n")
    return html_path, md_path
