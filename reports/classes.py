"""Per-class truth of a finalist on the test set: recall and precision by class name, the confusion matrix of its
seeds summed, and balanced accuracy (the mean of the recalls), as pure functions of predictions and counts.

Plain accuracy hides a class that fails: with one class at 5% of the images, a model that never predicts it still
scores 95%. Balanced accuracy weighs every class alike.
"""

from __future__ import annotations

import statistics
from typing import Sequence

import torch

__all__ = ["WORST_GAP", "balanced_accuracy", "class_summary", "confusion_matrix"]

WORST_GAP = 3.0  # points: a class whose recall is this far below the mean recall is named in the headline


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, classes: int) -> list[list[int]]:
    """``m[true][predicted]`` counts."""
    flat = labels.long().cpu() * classes + predicted.long().cpu()
    return torch.bincount(flat, minlength=classes * classes).view(classes, classes).tolist()


def _recalls(matrix: Sequence[Sequence[int]]) -> list[float | None]:
    return [100.0 * row[i] / sum(row) if sum(row) else None for i, row in enumerate(matrix)]


def balanced_accuracy(matrix: Sequence[Sequence[int]]) -> float:
    """The mean recall over the classes that have test images, in percent."""
    recalls = [r for r in _recalls(matrix) if r is not None]
    return statistics.fmean(recalls) if recalls else float("nan")


def class_summary(matrices: Sequence[Sequence[Sequence[int]]], names: Sequence[str]) -> dict:
    """finals.json's per-class entries of one finalist from its seeds' confusion matrices: recall and precision by
    class name (mean over the seeds, percent), the matrix summed over the seeds, balanced accuracy per seed and its
    mean, and the worst class by recall."""
    k = len(names)
    summed = [[sum(m[i][j] for m in matrices) for j in range(k)] for i in range(k)]
    per_class = {}
    for i, name in enumerate(names):
        recalls = [100.0 * m[i][i] / sum(m[i]) for m in matrices if sum(m[i])]
        precisions = [100.0 * m[i][i] / sum(row[i] for row in m) for m in matrices if sum(row[i] for row in m)]
        per_class[str(name)] = {"recall": round(statistics.fmean(recalls), 4) if recalls else None,
                                "precision": round(statistics.fmean(precisions), 4) if precisions else None,
                                "test_images": sum(summed[i]) // max(len(matrices), 1)}
    balanced = [round(balanced_accuracy(m), 4) for m in matrices]
    scored = [(v["recall"], name) for name, v in per_class.items() if v["recall"] is not None]
    worst = min(scored) if scored else None
    return {"per_class": per_class, "confusion": summed, "balanced_acc": balanced,
            "balanced_acc_mean": round(statistics.fmean(balanced), 4) if balanced else None,
            "worst_class": {"name": worst[1], "recall": worst[0]} if worst else None}
