"""The one rule for "does this design meet the target?", from its test accuracies over independent seeds.

A finalist's test accuracy varies from seed to seed (the 4,404-param design: 99.28-99.43% on seeds 3-5), so a
yes/no on the mean of a few seeds misleads at the target. The verdict says how sure it is:

- ``certain``: the one-sided 95% lower confidence bound of the mean (Student's t over the seeds) is at or above
  the target;
- ``likely``: the mean is at or above the target, the bound is not;
- ``no``: the mean is below the target.

``decided`` says when more seeds would not be expected to change that: racing (``--seeds auto``) adds seeds while
it is False.
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

__all__ = ["CONFIDENCE", "VERDICT_RULE", "VERDICTS", "decided", "lower_bound", "share_at_target", "verdict"]

CONFIDENCE = 0.95
VERDICTS = ("certain", "likely", "no")
VERDICT_RULE = ("certain = the one-sided 95% lower confidence bound of the test mean over the seeds (Student's t) "
                "is at or above the target; likely = the mean is, the bound is not; no = the mean is below")


def lower_bound(accs: Sequence[float], confidence: float = CONFIDENCE) -> float:
    """One-sided lower confidence bound of the mean of ``accs`` (Student's t); NaN with fewer than two values."""
    from scipy.stats import t

    values = [a for a in accs if a is not None and math.isfinite(a)]
    if len(values) < 2:
        return float("nan")
    n = len(values)
    return statistics.fmean(values) - float(t.ppf(confidence, n - 1)) * statistics.stdev(values) / math.sqrt(n)


def share_at_target(accs: Sequence[float], target: float) -> float:
    """The share of seeds whose test accuracy is at or above ``target``."""
    return sum(a >= target for a in accs) / len(accs) if accs else float("nan")


def verdict(accs: Sequence[float], target: float | None) -> str | None:
    """``certain`` / ``likely`` / ``no`` (module doc); None without a target or an accuracy."""
    if target is None or not accs:
        return None
    mean = statistics.fmean(accs)
    if mean < target:
        return "no"
    low = lower_bound(accs)
    return "certain" if math.isfinite(low) and low >= target else "likely"


def decided(accs: Sequence[float], target: float | None) -> bool:
    """True when more seeds are not expected to change the verdict: the one-sided 95% bound on the mean's side of the
    target clears it (above: the lower bound is at or above it, a certain yes; below: the upper bound is below it, a
    clear no). Racing (``--seeds auto``) adds seeds only while this is False: while the mean and the bound on its
    side lie on opposite sides of the target."""
    if target is None:
        return True
    if len(accs) < 2:
        return False
    mean = statistics.fmean(accs)
    margin = mean - lower_bound(accs)  # the one-sided bound's distance from the mean, either side
    return mean - margin >= target if mean >= target else mean + margin < target
