"""What a search command will run, in epochs, and roughly how long that takes on this machine.

``expected_epochs`` is the pruner's arithmetic; ``calibrate`` times a few real training steps of a
design from the search space at the budget, so the estimate is of this machine, not of a table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["REDUCTION", "Plan", "calibrate", "expected_epochs", "format_duration", "rung_epochs"]

REDUCTION = 3  # successive halving: a third of the trials go on at each rung


def rung_epochs(min_epochs: int, epochs: int) -> list[int]:
    """Epochs of the separate short runs that serve as rungs: ``min_epochs`` x 1, 3, 9, ... while a rung
    costs at most a third of the full run (15 epochs from 1: rungs of 1 and 3 epochs)."""
    rungs, rung = [], min_epochs
    while rung * REDUCTION <= epochs:
        rungs.append(rung)
        rung *= REDUCTION
    return rungs


def expected_epochs(pruner: str, min_epochs: int, epochs: int, rungs: str = "inline") -> float:
    """Mean epochs a trial trains under ``pruner`` (successive halving: a third survive each rung).

    ``rungs="separate"``: each rung is its own short run, and survivors of the last rung train ``epochs``
    from scratch; ``"inline"``: the rungs are epochs of the one full-length run.
    """
    if pruner == "none" or min_epochs >= epochs:
        return float(epochs)
    if rungs == "separate":
        total, survivors = 0.0, 1.0
        for rung in rung_epochs(min_epochs, epochs):
            total += survivors * rung
            survivors /= 2 if pruner == "median" else REDUCTION
        return total + survivors * epochs
    if pruner not in ("sha", "hyperband"):
        return float(epochs)
    total, rung, survivors = 0.0, 0, 1.0
    start = 0
    while True:
        stop = min(min_epochs * REDUCTION ** rung, epochs)
        total += survivors * (stop - start)
        if stop >= epochs:
            return total
        start, rung, survivors = stop, rung + 1, survivors / REDUCTION


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


@dataclass(frozen=True)
class Plan:
    """The work of one search command, in epochs, and its estimated wall time."""

    trials: int  # still to train
    epochs_per_trial: float  # expected, after the pruner
    search_epoch_s: float  # one training epoch of a trial (training split, plus validation)
    workers: int
    final_runs: int  # finalists x seeds
    final_epochs: int
    final_epoch_s: float  # one epoch on the full training set, plus the test set
    device: str
    trained: int = 0  # already in a resumed study
    timeout: float | None = None  # --timeout: workers start no trial after this many seconds
    final_runs_max: int | None = None  # --seeds auto: the final runs if every finalist's verdict stays open

    @property
    def search_epochs(self) -> float:
        return self.trials * self.epochs_per_trial

    @property
    def total_epochs(self) -> float:
        return self.search_epochs + self.final_runs * self.final_epochs

    @property
    def search_seconds(self) -> float:
        """The search part, capped by ``timeout`` (the trials running at the deadline still finish)."""
        search = self.search_epochs * self.search_epoch_s / self.workers
        return min(search, self.timeout) if self.timeout is not None else search

    @property
    def seconds(self) -> float:
        return self._seconds_with(self.final_runs)

    def _seconds_with(self, final_runs: int) -> float:
        return self.search_seconds + final_runs * self.final_epochs * self.final_epoch_s

    def lines(self) -> list[str]:
        more, already = ("more ", f" ({self.trained} already trained)") if self.trained else ("", "")
        finals = (f"then {self.final_runs} final run(s) x {self.final_epochs} epochs on the full training set"
                  + (f" (up to {self.final_runs_max} while verdicts are open: --seeds auto)" if self.final_runs_max
                     else "") if self.final_runs else "no final evaluation (--final-top 0)")
        most = self._seconds_with(self.final_runs_max) if self.final_runs_max else None
        return [
            f"device: {self.device}, {self.workers} worker(s)",
            f"plan: up to {self.trials} {more}trained trials{already} x ~{self.epochs_per_trial:.1f} epochs each after pruning "
            f"(~{self.search_epochs:.0f} epochs), {finals}: ~{self.total_epochs:.0f} epochs in all",
            f"estimate: ~{format_duration(self.seconds)}"
            + (f" (~{format_duration(most)} if every finalist's verdict stayed open to --max-seeds)" if most else "")
            + f" at ~{self.search_epoch_s:.0f} s per search epoch (measured here just now)"
            + (f", the search cut at --timeout {format_duration(self.timeout)}"
               if self.timeout is not None and self.search_seconds == self.timeout else "")
            + "; cheaper: fewer --trials, --timeout SECONDS, --train-subset N, "
            f"--epochs / --final-epochs, --final-top 0",
        ]


def calibrate(genome, spec, device, steps: int = 6, batch_size: int = 128) -> float:
    """Seconds per training image of ``genome``: ``steps`` steps of the real engine (its layout, augmentation
    and optimizer) on random images on ``device``, timed after one untimed forward and backward pass
    (the kernels' one-off set-up is not a per-image cost)."""
    import torch

    from training import Splits, TrainConfig, Trainer

    device = torch.device(device)
    n = batch_size * steps
    images = torch.randint(0, 256, (n, spec.channels, spec.height, spec.width), dtype=torch.uint8, device=device)
    labels = torch.randint(0, spec.classes, (n,), device=device)
    none_x, none_y = images[:0], labels[:0]
    splits = Splits("calibration", spec, images, labels, none_x, none_y, none_x, none_y, (0.5,) * spec.channels,
                    (0.25,) * spec.channels)
    trainer = Trainer(genome, splits, TrainConfig(epochs=1, batch_size=batch_size, device=device.type))
    trainer.forward(trainer._prepare(images[:batch_size])).sum().backward()  # warm-up; train_epoch zeroes grads
    start = time.perf_counter()
    trainer.train_epoch()  # reads the loss back at the end, so an accelerator is synchronised
    return (time.perf_counter() - start) / n
