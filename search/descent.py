"""How large the search's proposals are: the params range each sampled design is fitted into (``size_range``).

BudgetNAS answers "the smallest design that meets the target", not "the best design near the budget":

- **No target**: the whole range, from ``FLOOR_SHARE`` of the budget to the budget, so the trained designs map the
  accuracy-vs-params front instead of crowding at the budget.
- **A target nothing has met yet** (on validation, at full fidelity): ``FILL`` of the budget, the best chance to meet
  it, as before.
- **A target met**: below the smallest design that met it, ``P*``: ``[P* / DESCENT_RATIO, P*]``. Each smaller
  design that meets it lowers ``P*``, so the search descends while designs keep meeting the target; designs that
  miss it score their validation accuracy (``search.ranking.score``), which keeps the sampler near the edge.

A proposal's size is the sampled ``size`` in [0, 1] placed log-uniformly in the range (``target_params``). The range
is a pure function of the finished trials, so every worker of a study computes the same one.
"""

from __future__ import annotations

import math
from typing import Iterable, NamedTuple

__all__ = ["DESCENT_RATIO", "FILL", "FLOOR_SHARE", "SizeRange", "near_budget", "size_range", "target_params"]

FILL = (0.8, 1.0)  # shares of the budget while a target is unmet
FLOOR_SHARE = 1 / 32  # the smallest share of the budget a proposal is sized to
DESCENT_RATIO = 4.0  # once the target is met by P* params: proposals in [P* / this, P*]


class SizeRange(NamedTuple):
    """Proposals are fitted to between ``low`` and ``high`` params; ``why`` says which rule chose the range."""

    low: int
    high: int
    why: str


def size_range(budget: int | None, target: float | None,
               finished: Iterable[tuple[int, float]] = ()) -> SizeRange | None:
    """The range for the next proposal (module doc). ``finished``: (params, validation accuracy) of the trials
    trained at full fidelity so far. None without a param budget (other limits size the designs)."""
    if budget is None:
        return None
    floor = max(1, int(budget * FLOOR_SHARE))
    if target is None:
        return SizeRange(floor, budget, "no target: the whole range")
    met = [params for params, acc in finished if acc >= target]
    if not met:
        return near_budget(budget)
    smallest = min(min(met), budget)
    return SizeRange(max(floor, int(smallest / DESCENT_RATIO)), smallest,
                     f"target met by {smallest:,} params: below it")


def near_budget(budget: int) -> SizeRange:
    """``FILL`` of the budget: the range while a target is unmet (and of designs drawn outside a search)."""
    return SizeRange(int(budget * FILL[0]), int(budget * FILL[1]), "target not met yet: near the budget")


def target_params(size: float, span: SizeRange) -> int:
    """The params a proposal is fitted to: ``size`` in [0, 1] placed log-uniformly in ``span``."""
    low, high = max(span.low, 1), max(span.high, 1)
    return int(round(low * math.exp(min(max(size, 0.0), 1.0) * math.log(high / low)))) if high > low else high
