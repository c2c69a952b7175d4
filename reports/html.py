"""``report.html`` (self-contained, images embedded) and ``report.md`` for a study's run directory.

Everything is read from the run directory: ``leaderboard.csv``, ``settings.json``, ``finals.json``.
"""

from __future__ import annotations

import base64
import html
import io
import statistics
from pathlib import Path

import matplotlib.ticker
import numpy as np
import matplotlib.pyplot as plt
import pandas as pd

from blocks import Genome
from budgets import analyze
from reports.classes import WORST_GAP
from reports.leaderboard import FINAL_COLUMNS, read_leaderboard
from reports.runfiles import atomic_write, load_finals, load_settings
from reports.summary import shape_text
from reports.verdict import VERDICT_RULE, lower_bound, share_at_target, verdict
from search.ranking import RANK_RULE

__all__ = ["ending", "headline", "write_report", "plot_accuracy_vs_params", "plot_best_so_far", "plot_final_curves"]

_STATUS_STYLE = {"complete": ("tab:blue", "o", "trained"), "reused": ("tab:blue", "o", None),
                 "pruned": ("tab:orange", "s", "pruned (accuracy when stopped)"),
                 "diverged": ("tab:purple", "v", "diverged"), "rejected": ("tab:red", "x", "rejected (over budget)")}


def _finish(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)


def _legend(ax, **placement) -> None:
    """The legend, where something is labelled (an empty one is a matplotlib warning on stderr)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, **placement)


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
    """Trained (complete / pruned / diverged) trials at their accuracy; rejected ones on a strip below the axis
    break, with their own marker; the target line stays in view; the legend sits outside the points."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    trained_acc = df.loc[df["status"].isin(["complete", "pruned", "diverged"]), "val_acc"].dropna()
    values = [*trained_acc.tolist(), *([target] if target is not None else [])]
    low, high = (min(values), max(values)) if values else (0.0, 100.0)
    span = max(high - low, 1.0)
    strip = low - 0.12 * span  # where trials without an accuracy are drawn
    for status, (color, marker, label) in _STATUS_STYLE.items():
        rows = df[(df["status"] == status) & df["params"].notna()]
        if rows.empty or label is None:
            continue
        if status == "rejected":
            y, label = pd.Series([strip] * len(rows), index=rows.index), "rejected, no accuracy (bottom strip)"
        else:
            y = rows["val_acc"].fillna(strip)
        ax.scatter(rows["params"], y, c=color, marker=marker, s=28, alpha=0.75,
                   label=f"{label} ({len(rows)})")
    if (df["status"] == "rejected").any():
        ax.axhline(low - 0.06 * span, color="grey", lw=0.6, ls="-", label="below: rejected (no accuracy)")
    ax.set_ylim(strip - 0.06 * span, high + 0.06 * span)
    front = pareto_front(df)
    if not front.empty:  # markers too: a front of one design is a point, not a line
        ax.step(front["params"], front["val_acc"], where="post", color="black", lw=1.2, marker="D", ms=4,
                mfc="none", label=f"Pareto front ({len(front)})")
    if budget:
        ax.axvline(budget, color="tab:red", ls="--", lw=1, label=f"budget {budget:,}")
    if target is not None:
        ax.axhline(target, color="tab:green", ls=":", lw=1, label=f"target {target}%")
    _finish(ax, "parameters", "validation accuracy (%)", "Validation accuracy vs parameters")
    ax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    _legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def plot_best_so_far(df: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(7.5, 3.5))
    trained = df[df["status"] == "complete"].sort_values("trial")
    if not trained.empty:
        ax.plot(trained["trial"], trained["val_acc"], "o", color="tab:blue", alpha=0.35, ms=4, label="trial")
        ax.step(trained["trial"], trained["val_acc"].cummax(), where="post", color="tab:blue", label="best so far")
    _finish(ax, "trial number", "validation accuracy (%)", "Best validation accuracy so far")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    _legend(ax, loc="lower right")
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
            ax.plot(range(1, len(c) + 1), c, color=line.get_color(), alpha=0.25, lw=0.8, label="_seed")
    _finish(ax, "epoch", "test accuracy (%)", "Finalists: test accuracy per epoch (mean over seeds; thin lines: each seed)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    if ax.lines:
        _legend(ax, loc="lower right")
        low = min(min(line.get_ydata()) for line in ax.lines)
        last = min(line.get_ydata()[-1] for line in ax.lines)
        ax.set_ylim(max(low, min(last - 3.0, 95.0)) - 0.2, 100.0)  # the end of every curve in view, not epoch 1's dip
    return fig


GENOME_LEGEND = ("Genome tokens: block name, then fields that differ from their defaults: "
                 "_c out channels, _k kernel, _s stride, _p padding (psame = same), _d dilation, _g groups, "
                 "_b bias (b0 = none), _o order (c conv, b BatchNorm, a activation, d dropout; _oc = conv only), "
                 "_a activation, _r dropout rate. The first token is the input: i<channels>x<height>x<width>n<classes>.")


def _readable(df: pd.DataFrame) -> pd.DataFrame:
    """Cells as a reader wants them: blanks for missing values, yes / no for booleans."""
    def cell(v):
        if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NA:
            return ""
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "no"
        return v
    return df.astype(object).map(cell)


def _table(df: pd.DataFrame, css: str = "t") -> str:
    if df.empty:
        return "<p>No trial has finished its training yet.</p>"
    table = _readable(df).to_html(index=False, na_rep="", float_format=lambda v: f"{v:.2f}", border=0, classes=css)
    return f"<div class='scroll'>{table}</div>"  # a narrow window scrolls the table instead of squeezing it


def _thousands(v) -> str:
    return "" if v is None or pd.isna(v) else f"{int(v):,}"


def _top(df: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The best ranked rows with the console's column names, units and thousands separators."""
    names = {"rank": "rank", "trial": "trial", "params": "params", "val_acc": "val acc (%)", "epochs": "epochs",
             "rf": "RF (px)", "macs": "MACs", "ram": "RAM (B)", "arena_bytes": "TFLM arena (B)", "flash": "flash (B)",
             "tflite_bytes": "tflite (B)", "test_acc_mean": "test mean (%)", "test_acc_std": "test std",
             "test_acc_min": "test min (%)", "test_acc_low": "test 95% low (%)", "int8_test_acc_mean": "int8 test mean (%)",
             "int8_test_acc_min": "int8 test min (%)", "seeds_at_target": "seeds at target",
             "meets_target": "verdict", "judged_on": "judged on", "measured_violations": "measured limits",
             "genome": "genome"}
    top = df[df["rank"].notna()].head(n)
    top = top[[c for c in names if c in top.columns]].copy()
    if "test_acc_mean" in top.columns and top["test_acc_mean"].isna().all():  # no final evaluation: no empty columns
        top = top.drop(columns=[c for c in FINAL_COLUMNS if c in top.columns])
    elif "arena_bytes" in top.columns and top["arena_bytes"].isna().all():  # nothing measured in TFLM
        top = top.drop(columns=[c for c in FINAL_COLUMNS if c in top.columns and (c == "judged_on" or "int8" in c
                                                                                 or c.endswith("bytes")
                                                                                 or c == "measured_violations")])
    for column in ("rank", "trial", "epochs", "rf"):
        if column in top.columns:
            top[column] = top[column].astype("Int64")
    for column in ("params", "macs", "ram", "flash", "arena_bytes", "tflite_bytes"):
        if column in top.columns:
            top[column] = top[column].map(_thousands)
    if "seeds_at_target" in top.columns:  # a share, said as the headline says it
        top["seeds_at_target"] = top["seeds_at_target"].map(lambda v: "" if pd.isna(v) else f"{float(v):.0%}")
    return top.rename(columns=names)


def _winner_table(genome_text: str) -> pd.DataFrame:
    analysis = analyze(Genome.from_string(genome_text))
    rows = [{"#": r.index, "layer": r.token, "output shape": shape_text(r.output_shape), "params": f"{r.params:,}",
             "RF (px)": r.receptive_field, "MACs": f"{r.macs:,}"} for r in analysis.layers]
    rows.append({"#": "", "layer": "total", "output shape": shape_text(analysis.output_shape),
                 "params": f"{analysis.params:,}", "RF (px)": analysis.receptive_field, "MACs": f"{analysis.macs:,}"})
    return pd.DataFrame(rows)


def headline(df: pd.DataFrame, settings: dict, finals: dict) -> list[str]:
    """The answer to the user's question, in plain sentences: target met or not, the best design, fidelity."""
    target = settings.get("target")
    ranked = df[df["rank"].notna()].sort_values("rank")
    trained = df[df["status"].isin(["complete", "pruned", "diverged", "oom"])]
    if ranked.empty:
        partly = df[df["status"].isin(["pruned", "diverged", "oom", "running"])]
        best_partly = pd.to_numeric(partly["val_acc"], errors="coerce").max()
        return [f"No trial has finished its full training yet: {len(partly)} stopped at an earlier rung or are "
                "still training" + (f" (best validation accuracy there {best_partly:.2f}%)" if pd.notna(best_partly)
                                    else "") + f", {int((df['status'] == 'rejected').sum())} rejected.",
                *_near_chance(df)]
    best, title = _answer(ranked, target, finals)
    epochs, images = best.get("epochs"), best.get("images")
    fidelity = f"{int(epochs)} epoch{'s' if int(epochs) != 1 else ''}" + (
        f" x {int(images):,} training images" if pd.notna(images) else "")
    sizes = ", ".join(f"{name} {int(best[c]):,} B" for name, c in (("RAM", "ram"), ("flash", "flash"))
                      if c in best and pd.notna(best[c]))
    design = (f"trial {int(best['trial'])}: {int(best['params']):,} params" + (f" ({sizes})" if sizes else "")
              + f", validation {'balanced ' if settings.get('metric') == 'balanced' else ''}accuracy "
              f"{float(best['val_acc']):.2f}% after {fidelity}")
    final = finals.get(str(int(best["trial"])))
    if final:
        accs = [run[-1] for run in final.get("per_epoch_test_acc", []) if run and run[-1] is not None]
        low = lower_bound(accs)
        measure = "test balanced accuracy" if settings.get("metric") == "balanced" else "test accuracy"
        test = (f"{measure} {final['test_acc_mean']:.2f} ± {final['test_acc_std']:.2f}% "
                f"(min {final['test_acc_min']:.2f}%, 95% lower bound {low:.2f}%) over {len(accs)} seeds"
                if len(accs) > 1 else f"{measure} {final['test_acc_mean']:.2f}% on 1 seed")
        test += ", retrained from scratch"
        on_int8 = final.get("judged_on") == "int8"
        judged = (final.get("int8_test_acc") or []) if on_int8 else accs
        said = {"certain": "MET, certain (the 95% lower bound is at or above it)",
                "likely": "met on the mean but not certain (LIKELY: the 95% lower bound is below it)",
                "no": f"NOT met (the {'int8 ' if on_int8 else ''}test mean is below it)"}
        outcome = ("no target set" if target is None or not judged else
                   f"target {target}%{' on the int8 accuracy' if on_int8 else ''} {said[verdict(judged, target)]}; "
                   f"{share_at_target(judged, target):.0%} of the seeds reached it")
        lines = [f"{title}, {design}; {test}: {outcome}."]
        lines += _class_sentence(final)
        lines += _most_accurate(ranked, finals, best)
        if final.get("int8_test_acc"):
            lines.append(_int8_sentence(final, best))
        elif final.get("int8_error"):
            lines.append(f"On the device: no int8 model ({final['int8_error']}).")
    else:
        on_val = ("no target set" if target is None else
                  f"target {target}% {'met' if float(best['val_acc']) >= target else 'NOT met'} on validation")
        lines = [f"{title}, {design}: {on_val}.",
                 "Final evaluation skipped (--final-top 0 or not run yet): no test accuracy. "
                 "Run --finalize to retrain the best designs over seeds on the full training set."]
    pruned = int((df["status"] == "pruned").sum())
    lines.append(f"Search fidelity: trials that survived the pruner trained {fidelity}; {pruned} trial(s) were "
                 f"stopped earlier and are not ranked.")
    return lines + _near_chance(df)


def ending(run_dir: str | Path, df: pd.DataFrame) -> list[str]:
    """The last lines a search or ``--finalize`` prints: the headline (``headline``), the folder of the named
    design's files, and what to run next."""
    run_dir = Path(run_dir)
    settings, finals = load_settings(run_dir), load_finals(run_dir)
    lines = [line for line in headline(df, settings, finals) if not line.startswith("Search fidelity")]
    ranked = df[df["rank"].notna()].sort_values("rank")
    if ranked.empty:
        return lines + ["next: more --trials, or --timeout, so that designs finish their training"]
    named, _ = _answer(ranked, settings.get("target"), finals)
    trial = int(named["trial"])
    folder = run_dir / "final" / f"trial{trial}"
    final = finals.get(str(trial))
    if final and folder.is_dir():
        files = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("checkpoint"))
        lines.append(f"files of trial {trial}: {folder}/ ({', '.join(files)}, and a checkpoint per seed)")
    target = settings.get("target")
    reproduce = f"budgetnas --reproduce {run_dir / 'leaderboard.csv'} --trial {trial}"
    if not final:
        lines.append(f"next: --finalize (the same flags as the search) retrains it on the full training set over seeds "
                     "and scores it on the test set")
    elif target is not None and final.get("meets_target") != "certain":
        lines.append("next: a certain answer needs more accuracy: a larger --budget, more --trials, or a recipe "
                     "lever (--translate on digits); or more seeds: --finalize --max-seeds 20")
    else:
        lines.append(f"next: deploy it: {reproduce} --seeds 1 --export tflite (int8, measured in TensorFlow Lite "
                     "Micro), or model.py / model.onnx as they are; docs/deploy.md")
    return lines


def _named_final(df: pd.DataFrame, settings: dict, finals: dict) -> tuple[int, dict] | None:
    """(trial, finals entry) of the design the headline names, when it was finalized."""
    ranked = df[df["rank"].notna()].sort_values("rank")
    if ranked.empty:
        return None
    row, _ = _answer(ranked, settings.get("target"), finals)
    final = finals.get(str(int(row["trial"])))
    return (int(row["trial"]), final) if final else None


def _answer(ranked: pd.DataFrame, target: float | None, finals: dict) -> tuple[pd.Series, str]:
    """The design the headline names: with a target, the smallest finalist certain to meet it on the test set;
    otherwise (none certain, or no target) rank 1."""
    if target is not None:
        certain = [row for _, row in ranked.iterrows()
                   if (finals.get(str(int(row["trial"]))) or {}).get("meets_target") == "certain"]
        if certain:
            return min(certain, key=lambda row: (row["params"], row["rank"])), "Smallest certain design"
    return ranked.iloc[0], "Best design"


def _class_sentence(final: dict) -> list[str]:
    """Balanced accuracy, and the worst class when its recall is ``WORST_GAP`` points or more below the mean recall."""
    if final.get("balanced_acc_mean") is None:
        return []
    recalls = [v["recall"] for v in (final.get("per_class") or {}).values() if v.get("recall") is not None]
    worst = final.get("worst_class") or {}
    line = f"Balanced accuracy (the mean of the classes' recalls) {final['balanced_acc_mean']:.2f}%"
    if recalls and worst and statistics.fmean(recalls) - worst["recall"] >= WORST_GAP:
        line += (f"; the worst class, {worst['name']!r}, is recognised {worst['recall']:.2f}% of the time "
                 f"({statistics.fmean(recalls) - worst['recall']:.1f} points below the mean): see the per-class table")
    return [line + "."]


def class_table(final: dict) -> pd.DataFrame:
    """Per-class recall and precision (mean over the seeds) and test images of one finalist."""
    return pd.DataFrame([{"class": name, "recall (%)": f"{v['recall']:.2f}" if v.get("recall") is not None else "",
                          "precision (%)": f"{v['precision']:.2f}" if v.get("precision") is not None else "",
                          "test images": v.get("test_images")} for name, v in (final.get("per_class") or {}).items()])


def confusion_table(final: dict) -> pd.DataFrame:
    """The confusion matrix of one finalist's seeds summed: rows are the true class, columns the predicted one."""
    names = list((final.get("per_class") or {}).keys())
    return pd.DataFrame([{"true \\ predicted": name, **{other: count for other, count in zip(names, row)}}
                         for name, row in zip(names, final.get("confusion") or [])])


def plot_confusion(final: dict, title: str):
    """The summed confusion matrix as an image, each row normalised to the true class's images."""
    names = list((final.get("per_class") or {}).keys())
    counts = np.array(final["confusion"], dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.45 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90 if max(map(len, names)) > 3 else 0)
    ax.set_yticks(range(len(names)), names)
    if len(names) <= 20:
        for i in range(len(names)):
            for j in range(len(names)):
                if counts[i, j]:
                    ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                            color="white" if shares[i, j] > 0.5 else "black")
    _finish(ax, "predicted class", "true class", title)
    return fig


def _most_accurate(ranked: pd.DataFrame, finals: dict, named: pd.Series) -> list[str]:
    """A line for the finalist with the highest test mean when it is not the design the headline names."""
    evaluated = [(finals[str(int(row["trial"]))]["test_acc_mean"], row) for _, row in ranked.iterrows()
                 if str(int(row["trial"])) in finals and finals[str(int(row["trial"]))].get("test_acc_mean") is not None]
    if not evaluated:
        return []
    mean, row = max(evaluated, key=lambda pair: (pair[0], -pair[1]["params"]))
    if int(row["trial"]) == int(named["trial"]):
        return []
    final = finals[str(int(row["trial"]))]
    return [f"Most accurate design evaluated, trial {int(row['trial'])}: {int(row['params']):,} params, test accuracy "
            f"{mean:.2f} ± {final['test_acc_std']:.2f}% over {len(final.get('seeds', []))} seed(s)"
            + (f" ({final['meets_target']})" if final.get("meets_target") else "") + "."]


def _int8_sentence(final: dict, row: pd.Series) -> str:
    """The best design on the device: int8 accuracy in TFLM, and the measured bytes beside the analytic ones."""
    int8 = final["int8_test_acc"]
    low = final.get("int8_test_acc_low")
    analytic = [f"{int(row[c]):,} B" if c in row and pd.notna(row[c]) else "n/a" for c in ("ram", "flash")]
    broken = final.get("measured_violations") or []
    return (f"On the device (int8 in TensorFlow Lite Micro): test accuracy {final['int8_test_acc_mean']:.2f}% (min "
            f"{final['int8_test_acc_min']:.2f}%" + (f", 95% lower bound {low:.2f}%" if low is not None else "")
            + f") over {len(int8)} seed(s); tensor arena {final['arena_bytes']:,} B (analytic RAM {analytic[0]}), "
            f"flatbuffer {final['tflite_bytes']:,} B (analytic flash {analytic[1]})"
            + (f"; measured limits NOT met: {', '.join(broken)}" if broken else "") + ".")


def _near_chance(df: pd.DataFrame) -> list[str]:
    """A warning when the best validation accuracy of the search is near chance (the designs learned little)."""
    genomes = df["genome"].dropna() if "genome" in df.columns else pd.Series(dtype=object)
    accs = pd.to_numeric(df["val_acc"], errors="coerce").dropna()
    if genomes.empty or accs.empty:
        return []
    classes = Genome.from_string(genomes.iloc[0]).input.classes
    chance = 100.0 / classes
    best = float(accs.max())
    if best >= chance + 0.25 * (100.0 - chance):
        return []
    return [f"Warning: the best validation accuracy, {best:.2f}%, is near chance ({chance:.0f}% for {classes} classes): "
            "the designs learned little. Train longer (--epochs, more --trials, no --train-subset), or check the "
            "data and its labels."]


def _markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return "No trial has finished its training yet."
    df = _readable(df)
    header = "| " + " | ".join(str(c) for c in df.columns) + " |"
    sep = "| " + " | ".join("---" for _ in df.columns) + " |"

    def cell(v) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return ""
        return f"{v:.2f}" if isinstance(v, float) else (f"`{v}`" if isinstance(v, str) and v.startswith("i") and "-" in v else str(v))
    return "\n".join([header, sep] + ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)])


def _exported(run_dir: Path, finals: dict) -> dict[str, str]:
    """Where the finalists' exported files are, and which seed's weights the single-model exports hold."""
    folders = sorted((run_dir / "final").glob("trial*")) if (run_dir / "final").is_dir() else []
    lines = {}
    for folder in folders:
        seeds = (finals.get(folder.name.removeprefix("trial")) or {}).get("seeds") or []
        names = sorted(p.name for p in folder.iterdir())
        held = [n for n in ("model.pt2", "model.onnx", "model.int8.tflite") if n in names]
        lines[f"exported ({folder.name})"] = (", ".join(names) + f" in {folder}"
                                              + (f"; {_and(held)} hold seed {seeds[0]}'s weights"
                                                 if seeds and held else ""))
    return lines


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def write_report(run_dir: str | Path, df: pd.DataFrame | None = None, run_info: dict | None = None
                 ) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` in ``run_dir``; returns their paths.

    ``df`` is the leaderboard frame when the caller has it; otherwise ``leaderboard.csv`` is read.
    ``run_info`` (e.g. wall time, device) is shown under the settings.
    """
    run_dir = Path(run_dir)
    df = read_leaderboard(run_dir / "leaderboard.csv") if df is None else df
    settings = load_settings(run_dir)
    finals = load_finals(run_dir)
    budget, target = settings.get("budget"), settings.get("target")
    counts = df["status"].value_counts().to_dict()
    top = _top(df)
    winner = top.iloc[0]["genome"] if len(top) else None
    summary = headline(df, settings, finals)
    images = {"Validation accuracy vs parameters": _png(plot_accuracy_vs_params(df, budget, target)),
              "Best so far": _png(plot_best_so_far(df))}
    if finals:
        images["Finalists per epoch"] = _png(plot_final_curves(finals, df))
    named = _named_final(df, settings, finals)
    if named is not None and named[1].get("confusion"):
        trial, final = named
        images[f"Confusion matrix of trial {trial} (its seeds summed)"] = _png(plot_confusion(
            final, f"trial {trial}: true class vs predicted, seeds summed"))
    shown = {k: settings.get(k) for k in ("study", "dataset", "input", "image_size", "budget", "min_rf", "max_macs",
                                          "target", "trials", "epochs", "min_epochs", "sampler", "pruner", "workers",
                                          "train_subset", "seed")}
    if settings.get("classes"):
        names = settings["classes"]
        shown["classes"] = f"{len(names)}: " + ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    shown = {k: (f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in shown.items()}
    info = {**(run_info or {}), **_exported(run_dir, finals)}
    name = html.escape(str(settings.get("study", run_dir.name)))
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>BudgetNAS report: {name}</title>",
             "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "div.scroll{overflow-x:auto}table.t{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}"
             "table.t td,table.t th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right}"
             "table.g td:last-child,table.g th:last-child{text-align:left;font-family:monospace;font-size:12px;"
             "word-break:break-all;min-width:32em}"
             "table.w td:nth-child(2){text-align:left;font-family:monospace;font-size:12px}"
             ".headline{font-size:17px;background:#f5f8ff;border-left:4px solid #3a6ff7;padding:.6em 1em}"
             ".legend{font-size:12px;color:#555}"
             "code{background:#f3f3f3;padding:1px 4px}img{max-width:100%}</style></head><body>",
             f"<h1>BudgetNAS report: {name}</h1>",
             "<div class='headline'>" + "".join(f"<p>{html.escape(line)}</p>" for line in summary) + "</div>",
             "<h2>Search settings</h2><p>" + ", ".join(f"<b>{k}</b> {html.escape(str(v))}" for k, v in shown.items()
                                                        if v is not None) + "</p>",
             "<p>Trials: " + ", ".join(f"{v:,} {html.escape(str(k))}" for k, v in counts.items()) + "</p>"]
    if info:
        parts.append("<p>" + "<br>".join(f"<b>{html.escape(k)}</b> {html.escape(str(v))}" for k, v in info.items())
                     + "</p>")
    parts += [f"<p>Ranking: {html.escape(RANK_RULE)}. Test accuracy comes from retraining the finalists from scratch "
              f"on the full training set. Verdict: {html.escape(VERDICT_RULE)}.</p>",
              "<h2>Top 10</h2>", _table(top, "t g"), f"<p class='legend'>{html.escape(GENOME_LEGEND)}</p>"]
    if winner:
        parts += [f"<h2>Best design</h2><p><code>{html.escape(winner)}</code></p>", _table(_winner_table(winner), "t w")]
    if named is not None and named[1].get("per_class"):
        parts += [f"<h2>Per class: trial {named[0]} on the test set (mean over its seeds)</h2>",
                  _table(class_table(named[1]))]
    for title, data in images.items():
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    html_path = run_dir / "report.html"
    atomic_write(html_path, "\n".join(parts))

    md = [f"# BudgetNAS report: {settings.get('study', run_dir.name)}", "", *[f"> {line}" for line in summary], "",
          ", ".join(f"**{k}** {v}" for k, v in shown.items() if v is not None), "",
          *[f"- **{k}** {v}" for k, v in info.items()], "", "## Top 10", "", _markdown(top), "", GENOME_LEGEND]
    if winner:
        md += ["", "## Best design", "", f"`{winner}`", "", _markdown(_winner_table(winner))]
    if named is not None and named[1].get("per_class"):
        md += ["", f"## Per class: trial {named[0]} on the test set (mean over its seeds)", "",
               _markdown(class_table(named[1])), "", "Confusion matrix, its seeds summed (rows: true class):", "",
               _markdown(confusion_table(named[1]))]
    md_path = run_dir / "report.md"
    atomic_write(md_path, "\n".join(md) + "\n")
    return html_path, md_path
