"""Final evaluation: retrain a genome from scratch on the full training set over several seeds and
report test accuracy (mean, std, min, per epoch); write checkpoint, TorchScript, model.py, metrics CSV."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import pandas as pd

from blocks import Genome
from reports.export import export_torchscript, save_checkpoint, standalone_source
from training import EpochMetrics, Splits, TrainConfig, train

__all__ = ["FinalResult", "final_evaluation", "write_artifacts"]


@dataclass
class FinalResult:
    """Test accuracy of one genome over seeds; ``per_seed[i]`` holds that seed's per-epoch metrics."""

    genome: str
    params: int
    seeds: list[int]
    per_seed: list[list[dict]]
    statuses: list[str]

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
        return {"test_acc_mean": round(self.mean, 4), "test_acc_std": round(self.std, 4),
                "test_acc_min": round(self.min, 4),
                "meets_target": None if target is None else bool(self.mean >= target),
                "seeds": self.seeds, "statuses": self.statuses,
                "per_epoch_test_acc": [[e["test_acc"] for e in epochs] for epochs in self.per_seed]}


def final_evaluation(genome: Genome, full: Splits, epochs: int, seeds: list[int], base: TrainConfig | None = None,
                     log: Callable[[str], None] = print, keep_models: list | None = None) -> FinalResult:
    """Train ``genome`` on ``full`` (no validation split) once per seed, evaluating the test set every epoch.

    Prints a notebook-style log line per epoch. Trained models are appended to ``keep_models`` if given.
    """
    base = base or TrainConfig()
    per_seed, statuses, params = [], [], 0
    for seed in seeds:
        config = replace(base, epochs=epochs, seed=seed, evaluate_test=True)
        log(f"seed {seed}:")

        def on_epoch(m: EpochMetrics) -> None:
            log(f"  Epoch {m.epoch:>2}: train loss {m.train_loss:.4f}, train acc {m.train_acc:.2f}% | "
                f"test loss {m.test_loss:.4f}, test acc {m.test_acc:.2f}%  ({m.seconds:.1f} s)")

        result = train(genome, full, config, on_epoch=on_epoch)
        params = result.params
        per_seed.append([asdict(m) for m in result.epochs])
        statuses.append(result.status)
        if result.status != "complete":
            log(f"  seed {seed} ended with status {result.status}")
        if keep_models is not None:
            keep_models.append(result)
    final = FinalResult(genome.to_string(), params, list(seeds), per_seed, statuses)
    log(f"test accuracy over {len(final.final_accs)} seed(s): {final.mean:.2f} ± {final.std:.2f} % "
        f"(min {final.min:.2f} %)")
    return final


def write_artifacts(out_dir: Path, genome: Genome, final: FinalResult, results: list, full: Splits) -> list[Path]:
    """checkpoint_seed<N>.pt per seed, model.ts (first seed), model.py and metrics.csv under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for result in results:
        path = out_dir / f"checkpoint_seed{result.seed}.pt"
        config = {**result.config, "normalize": {"mean": list(full.mean), "std": list(full.std)},
                  "dataset": full.name}
        save_checkpoint(path, result.model, genome, config, result.seed, [asdict(m) for m in result.epochs])
        written.append(path)
    if results:
        export_torchscript(results[0].model, out_dir / "model.ts")
        written.append(out_dir / "model.ts")
    source = standalone_source(genome).replace(
        "normalised images", f"images normalised with mean {tuple(round(v, 4) for v in full.mean)}, "
                             f"std {tuple(round(v, 4) for v in full.std)}")
    (out_dir / "model.py").write_text(source)
    written.append(out_dir / "model.py")
    rows = [{"seed": seed, **epoch} for seed, epochs in zip(final.seeds, final.per_seed) for epoch in epochs]
    pd.DataFrame(rows).to_csv(out_dir / "metrics.csv", index=False)
    written.append(out_dir / "metrics.csv")
    return written
