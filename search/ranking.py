"""The ranking rule, in one place: the objective, the leaderboard, the finalists and the help text use it.

Trials are only compared at the same fidelity: more training epochs (then more training images) rank
first. At one fidelity, among trained trials that meet the target, fewest params wins (ties: higher
validation accuracy); they all rank above trials that miss it, which are ordered by validation accuracy
(ties: fewer params). Without a target, highest validation accuracy wins (ties: fewer params).
"""

from __future__ import annotations

__all__ = ["RANK_RULE", "rank_key", "score"]

RANK_RULE = "highest fidelity (epochs, images) first; then meets target -> fewest params; else highest val acc"


def rank_key(val_acc: float, params: int, target: float | None, epochs: int = 0, images: int = 0) -> tuple:
    """Sort key of a trained trial: ascending order is best first."""
    fidelity = (-epochs, -images)
    if target is not None and val_acc >= target:
        return (*fidelity, 0, params, -val_acc)
    return (*fidelity, 1, -val_acc, params)


def score(val_acc: float, params: int, target: float | None, budget: int | None) -> float:
    """The single objective the sampler maximises, ordered like ``rank_key`` (up to its tie-breaks).

    Below ``target`` it is the validation accuracy; at or above it, ``target + (1 - params / budget)``,
    so the sampler goes on looking for smaller models that still meet the target.
    """
    if target is None or val_acc < target:
        return val_acc
    return target + (1.0 - params / budget if budget else 0.0)
