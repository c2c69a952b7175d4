"""Final evaluation: retrain a genome from scratch on the full training set over several seeds and
report test accuracy (mean, std, min, per epoch); write checkpoint, model.pt2, model.onnx, model.py, metrics CSV.

``finalize`` does it for the top trials of a finished search (the CLI composes search -> finalize).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from blocks import Genome
from reports.export import ExportError, export_onnx, export_program, save_checkpoint, standalone_source
from reports.runfiles import load_finals, save_finals
from reports.verdict import decided, lower_bound, share_at_target, verdict
from training import EpochMetrics, Splits, TrainConfig, TrainResult, load_splits, resolve_device
from training.parallel import train_many, waves

__all__ = ["FinalResult", "final_evaluation", "finalize", "write_artifacts"]


@dataclass
class FinalResult:
    """Test accuracy of one genome over seeds; ``per_seed[i]`` holds that seed's per-epoch metrics."""

    genome: str
    params: int
    seeds: list[int]
    per_seed: list[list[dict]]
    statuses: list[str]
    runs: list[TrainResult] = field(default_factory=list, repr=False)  # trained models, one per seed

    @property
    def final_accs(self) -> list[float]:
        return [epochs[-1]["test_acc"] for epochs in self.per_seed if epochs and epochs[-1]["test_acc"] is not None]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.final_accs) if self.final_accs else float("nan")

    @property
    def std(self) -> float:
        return statistics.stdev(self.final_accs) if len(self.final_accs) > 1 else 0.0

    @property
    def min(self) -> float:
        return min(self.final_accs) if self.final_accs else float("nan")

    def summary(self, target: float | None) -> dict:
        """finals.json's entry: mean, std, min, the lower bound and the verdict (``reports.verdict``), per-epoch runs."""
        accs = self.final_accs
        return {"test_acc_mean": round(self.mean, 4), "test_acc_std": round(self.std, 4),
                "test_acc_min": round(self.min, 4), "test_acc_low": _rounded(lower_bound(accs)),
                "seeds_at_target": None if target is None else _rounded(share_at_target(accs, target)),
                "meets_target": verdict(accs, target),
                "seeds": self.seeds, "statuses": self.statuses,
                "per_epoch_test_acc": [[e["test_acc"] for e in epochs] for epochs in self.per_seed]}


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def final_evaluation(genome: Genome, full: Splits, epochs: int, seeds: list[int], base: TrainConfig | None = None,
                     log: Callable[[str], None] = print, processes: int = 1) -> FinalResult:
    """Train ``genome`` on ``full`` (no validation split) once per seed, evaluating the test set every epoch.

    Prints a notebook-style log line per epoch. ``result.runs`` holds the trained models. ``processes`` > 1
    on CPU trains the seeds side by side, one single-threaded process each (``training.parallel``).
    """
    jobs = _final_jobs(genome, epochs, seeds, base or TrainConfig())
    logger = _epoch_logger([("", list(range(len(jobs))), list(seeds))], log, waves(len(jobs), processes, full.device.type))
    results = dict(train_many(jobs, full, processes, on_epoch=logger))
    return _final_result(genome, [results[i] for i in range(len(jobs))], log)


def _final_jobs(genome: Genome, epochs: int, seeds: list[int], base: TrainConfig) -> list[tuple[Genome, TrainConfig]]:
    return [(genome, replace(base, epochs=epochs, seed=seed, evaluate_test=True)) for seed in seeds]


def _epoch_logger(groups: list[tuple[str, list[int], list[int]]], log: Callable[[str], None],
                  batches: list[list[int]]) -> Callable[[int, EpochMetrics], None]:
    """Per-epoch lines for runs whose epochs arrive interleaved. ``groups``: (title, job indices, seeds), one per
    finalist; ``batches``: the job indices that train side by side (``training.parallel.waves``). Runs of one group in
    one batch get one row per epoch, once each of them has finished it, with a column per seed; a run alone gets
    notebook lines (train loss and accuracy, test loss and accuracy). No line mixes runs."""
    units: dict[int, tuple[str, list[int], list[int]]] = {}  # job index -> (title, its unit's indices, their seeds)
    for title, indices, seeds in groups:
        seed_of = dict(zip(indices, seeds))
        for batch in batches:
            unit = [i for i in batch if i in seed_of]
            for i in unit:
                units[i] = (title, unit, [seed_of[j] for j in unit])
    pending: dict[tuple[int, int], dict[int, EpochMetrics]] = {}  # (first index of the unit, epoch) -> metrics so far

    def on_epoch(index: int, m: EpochMetrics) -> None:
        title, unit, seeds = units[index]
        if len(unit) == 1:
            if m.epoch == 1:
                log(f"{title + ' ' if title else ''}seed {seeds[0]}:")
            log(f"  Epoch {m.epoch:>2}: train loss {m.train_loss:.4f}, train acc {m.train_acc:.2f}% | "
                f"test loss {m.test_loss:.4f}, test acc {m.test_acc:.2f}%  ({m.seconds:.1f} s)")
            return
        row = pending.setdefault((unit[0], m.epoch), {})
        if m.epoch == 1 and not row:
            log(f"{title + ' ' if title else ''}seeds {', '.join(map(str, seeds))}: test accuracy after each epoch, "
                "one column per seed")
        row[index] = m
        if len(row) == len(unit):
            del pending[(unit[0], m.epoch)]
            cells = "  ".join(f"seed {seed}: {row[i].test_acc:6.2f}%" for i, seed in zip(unit, seeds))
            log(f"  Epoch {m.epoch:>2}  {cells}  ({max(r.seconds for r in row.values()):.1f} s an epoch)")
    return on_epoch


def _final_result(genome: Genome, runs: list[TrainResult], log: Callable[[str], None]) -> FinalResult:
    for result in runs:
        if result.status != "complete":
            log(f"  seed {result.seed} ended with status {result.status}")
    final = FinalResult(genome.to_string(), runs[0].params if runs else 0, [r.seed for r in runs],
                        [[asdict(m) for m in r.epochs] for r in runs], [r.status for r in runs], runs)
    log(f"test accuracy over {len(final.final_accs)} seed(s): {final.mean:.2f} ± {final.std:.2f} % "
        f"(min {final.min:.2f} %)")
    return final


def write_artifacts(out_dir: Path, genome: Genome, final: FinalResult, full: Splits,
                    log: Callable[[str], None] = print, require_onnx: bool = False) -> list[Path]:
    """checkpoint_seed<N>.pt per seed, model.pt2 and model.onnx (first seed), model.py and metrics.csv.

    Without the optional ONNX packages, model.onnx is skipped with one line (an error if ``require_onnx``).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    results = final.runs
    for result in results:
        path = out_dir / f"checkpoint_seed{result.seed}.pt"
        config = {**result.config, "normalize": {"mean": list(full.mean), "std": list(full.std)},
                  "dataset": full.name, "classes": full.classes}
        save_checkpoint(path, result.model, genome, config, result.seed, [asdict(m) for m in result.epochs])
        written.append(path)
    if results:
        export_program(results[0].model, genome, out_dir / "model.pt2")
        written.append(out_dir / "model.pt2")
        try:
            export_onnx(results[0].model, genome, out_dir / "model.onnx", full.mean, full.std, full.classes,
                        seed=results[0].seed)
            written.append(out_dir / "model.onnx")
        except ExportError as e:
            if require_onnx:
                raise
            log(f"model.onnx not written: {e}")
    (out_dir / "model.py").write_text(standalone_source(genome, mean=full.mean, std=full.std, classes=full.classes))
    written.append(out_dir / "model.py")
    rows = [{"seed": seed, **epoch} for seed, epochs in zip(final.seeds, final.per_seed) for epoch in epochs]
    pd.DataFrame(rows).to_csv(out_dir / "metrics.csv", index=False)
    written.append(out_dir / "metrics.csv")
    return written


def _already_evaluated(summary: dict | None, folder: Path, epochs: int, seeds: list[int], target: float | None,
                       max_seeds: int | None) -> bool:
    """A finals.json entry that covers these seeds and epochs (racing: these first, then until decided or
    ``max_seeds``), every run complete, artifacts on disk."""
    if not summary or set(summary.get("statuses", [])) != {"complete"}:
        return False
    done = summary.get("seeds", [])
    if max_seeds is None and done != list(seeds):
        return False
    if max_seeds is not None:
        accs = [run[-1] for run in summary.get("per_epoch_test_acc", []) if run]
        if done[:len(seeds)] != list(seeds) or not (decided(accs, target) or len(done) >= max_seeds):
            return False
    if any(len(accs) != epochs for accs in summary.get("per_epoch_test_acc", [])):
        return False
    return all((folder / f"checkpoint_seed{seed}.pt").is_file() for seed in done)


def finalize(study: Any, settings: Any, ranked: pd.DataFrame, top_k: int, epochs: int, seeds: list[int],
             log: Callable[[str], None] = print, splits: Splits | None = None,
             on_final: Callable[[dict], None] | None = None, processes: int = 1,
             max_seeds: int | None = None) -> dict:
    """Retrain the ``top_k`` best rows of ``ranked`` (a leaderboard frame) on the full training set over ``seeds``.

    Test-set summaries go to ``<run_dir>/finals.json`` after each finalist (``on_final(finals)`` is called
    then, e.g. to rewrite the leaderboard); artifacts go to ``<run_dir>/final/trial<N>/``. Returns the finals.
    ``processes`` > 1 on CPU trains the runs (finalists x seeds) side by side (``training.parallel``).
    ``max_seeds`` (``--seeds auto``): racing. A finalist whose verdict is still open after ``seeds``
    (``reports.verdict.decided``) gets more seeds, as many at a time as there are processes, up to ``max_seeds``.
    """
    top = ranked[ranked["rank"].notna()].head(top_k)
    if top.empty:
        log("final evaluation: no trained trial to evaluate")
        return {}
    full = splits if splits is not None else load_splits(settings.dataset, settings.data_dir,
                                                         device=resolve_device(settings.device), val_size=0,
                                                         image_size=settings.image_size)
    finals = load_finals(settings.run_dir)
    base = TrainConfig(device=settings.device, augment=settings.augment, **settings.train_overrides)
    rounds: list[tuple[int, Genome, list[int]]] = []  # (trial, genome, seeds) still to train
    for _, row in top.iterrows():
        trial = int(row["trial"])
        genome = Genome.from_string(row["genome"])
        if _already_evaluated(finals.get(str(trial)), settings.run_dir / "final" / f"trial{trial}", epochs, seeds,
                              settings.target, max_seeds):
            log(f"final evaluation of rank {int(row['rank'])} (trial {trial}): already done with these seeds "
                f"and epochs in {settings.run_dir / 'finals.json'}; not retrained")
            continue
        log(f"final evaluation of rank {int(row['rank'])} (trial {trial}, {int(row['params']):,} params): "
            f"{epochs} epochs x {len(seeds)} seed(s) on the full training set"
            + (f", more seeds (up to {max_seeds}) while its verdict is open" if max_seeds else ""))
        rounds.append((trial, genome, list(seeds)))
    runs_of: dict[int, list[TrainResult]] = {trial: [] for trial, _, _ in rounds}
    while rounds:
        jobs: list[tuple[Genome, TrainConfig]] = []  # every finalist's runs go to one pool, so none waits for another
        groups: list[tuple[str, list[int], list[int]]] = []
        owner: dict[int, tuple[int, Genome, range]] = {}
        for trial, genome, round_seeds in rounds:
            indices = range(len(jobs), len(jobs) + len(round_seeds))
            owner.update({i: (trial, genome, indices) for i in indices})
            jobs += _final_jobs(genome, epochs, round_seeds, base)
            groups.append((f"trial {trial}", list(indices), round_seeds))
        rounds = []
        results: dict[int, TrainResult] = {}
        logger = _epoch_logger(groups, log, waves(len(jobs), processes, full.device.type))
        for index, result in train_many(jobs, full, processes, on_epoch=logger):
            results[index] = result
            trial, genome, indices = owner[index]
            if not all(i in results for i in indices):  # this finalist still has runs going
                continue
            runs_of[trial] += [results.pop(i) for i in indices]
            log(f"trial {trial}:")
            final = _final_result(genome, runs_of[trial], log)
            write_artifacts(settings.run_dir / "final" / f"trial{trial}", genome, final, full)
            finals[str(trial)] = final.summary(settings.target)
            save_finals(settings.run_dir, finals)
            if on_final is not None:
                on_final(finals)
            done = len(runs_of[trial])
            if max_seeds is not None and done < max_seeds and not decided(final.final_accs, settings.target):
                more = list(range(max(final.seeds) + 1, max(final.seeds) + 1 + min(max(processes, 1), max_seeds - done)))
                log(f"trial {trial}: verdict still open after {done} seeds (the mean and its 95% bound lie on "
                    f"opposite sides of the target); adding seed(s) {', '.join(map(str, more))}")
                rounds.append((trial, genome, more))
    return finals
