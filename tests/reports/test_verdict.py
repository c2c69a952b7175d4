"""The verdict rule (issue 26): certain / likely / no from the test accuracies over seeds."""

import math

import pytest

from reports.verdict import decided, lower_bound, share_at_target, verdict


def test_lower_bound_is_students_t_one_sided_95():
    # mean 99.43, sample std 0.0656..., n = 3: t(0.95, 2) = 2.919986
    accs = [99.37, 99.50, 99.42]
    std = math.sqrt(sum((a - 99.43) ** 2 for a in accs) / 2)
    assert lower_bound(accs) == pytest.approx(99.43 - 2.919986 * std / math.sqrt(3), abs=1e-5)
    assert math.isnan(lower_bound([99.4]))


@pytest.mark.parametrize("accs, expected", [
    ([99.44, 99.46, 99.45, 99.43, 99.47], "certain"),  # bound 99.435 >= 99.4
    ([99.37, 99.50, 99.42], "likely"),  # the 4,404-param design on seeds 0-2: mean 99.43, bound 99.32
    ([99.28, 99.40, 99.43], "no"),  # the same design on seeds 3-5: mean 99.37
    ([99.40, 99.40], "certain"),  # no spread: the bound is the mean
])
def test_verdict(accs, expected):
    assert verdict(accs, 99.4) == expected
    assert verdict(accs, None) is None


def test_share_and_decided():
    assert share_at_target([99.28, 99.40, 99.43], 99.4) == pytest.approx(2 / 3)
    assert decided([99.44, 99.46, 99.45, 99.43, 99.47], 99.4)  # clearly above
    assert decided([98.0, 98.1, 98.05], 99.4)  # clearly below: the bound and the mean both under
    assert not decided([99.37, 99.50, 99.42], 99.4)  # mean above, bound below: more seeds can tell
    assert not decided([99.30, 99.45, 99.40], 99.4)  # mean 99.383 below, but the upper side is open
