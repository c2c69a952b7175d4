"""The ranking rule, in one place: the objective, the leaderboard, the finalists and the help text use it.

Trials are only compared at the same fidelity: more training epochs (then more training images) rank
first. At one fidelity, among trained trials that meet the target, fewest params wins (ties: higher
validation accuracy); they all rank above trials that miss it. Among those (and without a target),
validation accuracies closer to the best one than the best's standard error are a tie, and ties go to
fewer params (the one-standard-error rule); the rest follow by validation accuracy (ties: fewer params).
A 5,000-image validation split measures 99.3% to about ±0.12 points, so a 0.04-point lead is noise and
must not beat a design with half the params.
"""

from __future__ import annotations

import math

__all__ = ["FINALS_RULE", "FINALS_STEP", "RANK_RULE", "finalists", "noise_band", "rank_key", "score", "tie_floor"]

RANK_RULE = ("highest fidelity (epochs, images) first; then meets target -> fewest params; else fewest params "
             "within one standard error of the best val acc, then highest val acc")


FINALS_RULE = ("with --target: the designs that met it on validation, smallest first, each next one at least 1.25x "
               "the params of the one before and not less accurate on validation beyond one standard error, one "
               "at a time until one is certain on the test set; otherwise the top ranks")
FINALS_STEP = 1.25  # each next finalist on the way up has at least this many times the params of the one before


def finalists(ranked: "pd.DataFrame", target: float | None, top_k: int,
              val_images: int | None = None) -> tuple["pd.DataFrame", bool]:
    """The rows of a ranked leaderboard frame that the final evaluation retrains, and whether it goes through them
    one at a time, stopping at the first certain one (``FINALS_RULE``).

    With a target that some trials of the top fidelity met on validation: the smallest of them first, then, going
    up, each next one at least ``FINALS_STEP`` times larger than the one before and with a validation accuracy
    within one standard error (on ``val_images``) of the best candidate before it, or above it, at most ``top_k``: the
    smallest design that is certain on the test set is the answer, and a larger one is trained only when the smaller
    ones were not certain. A candidate that failed on the test set says that designs of about its size fail too,
    hence the step. Otherwise: the ``top_k`` best ranks, side by side."""
    rows = ranked[ranked["rank"].notna()].sort_values("rank")
    if target is None or rows.empty:
        return rows.head(top_k), False
    top = rows.iloc[0]
    same = rows[rows["epochs"] == top["epochs"]]
    if "images" in rows.columns:
        same = same[same["images"] == top["images"]]
    met = same[same["val_acc"] >= target].sort_values(["params", "val_acc"], ascending=[True, False])
    if met.empty:
        return rows.head(top_k), False
    chosen, best, last = [], -math.inf, 0
    for index, row in met.iterrows():
        floor = tie_floor(best, val_images) if val_images and best > -math.inf else best
        if not chosen or (row["params"] >= FINALS_STEP * last and row["val_acc"] >= floor):
            chosen.append(index)
            last, best = row["params"], max(best, row["val_acc"])
    return met.loc[chosen].head(top_k), True


def noise_band(val_acc: float, val_images: int) -> float:
    """One binomial standard error, in points, of a validation accuracy ``val_acc`` (percent) on ``val_images``."""
    if val_images <= 0:
        raise ValueError(f"val_images must be positive, got {val_images}")
    p = min(max(val_acc / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1.0 - p) / val_images)


def tie_floor(best_val_acc: float, val_images: int) -> float:
    """The validation accuracy from which a trial ties with the best one of its fidelity (one standard error below)."""
    return best_val_acc - noise_band(best_val_acc, val_images)


def rank_key(val_acc: float, params: int, target: float | None, epochs: int = 0, images: int = 0,
             tie_floor: float | None = None) -> tuple:
    """Sort key of a trained trial: ascending order is best first.

    ``tie_floor``: the validation accuracy from which a trial that misses the target counts as tied with the
    best of its fidelity (``tie_floor``); ``None`` turns the tie rule off.
    """
    fidelity = (-epochs, -images)
    if target is not None and val_acc >= target:
        return (*fidelity, 0, 0, params, -val_acc)
    if tie_floor is not None and val_acc >= tie_floor:
        return (*fidelity, 1, 0, params, -val_acc)
    return (*fidelity, 1, 1, -val_acc, params)


def score(val_acc: float, params: int, target: float | None, budget: int | None) -> float:
    """The single objective the sampler maximises, ordered like ``rank_key`` up to its tie rules.

    Below ``target`` it is the validation accuracy; at or above it, ``target + (1 - params / budget)``,
    so the sampler goes on looking for smaller models that still meet the target.
    """
    if target is None or val_acc < target:
        return val_acc
    return target + (1.0 - params / budget if budget else 0.0)
