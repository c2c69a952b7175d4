import itertools

import pytest

from search.ranking import rank_key, score


@pytest.mark.parametrize("target", [None, 99.0])
def test_score_orders_trials_like_the_ranking_rule(target):
    trials = [(acc, params) for acc, params in itertools.product([97.0, 98.9, 99.0, 99.3, 99.6], [2000, 5000, 7900])]
    by_rule = sorted(trials, key=lambda t: rank_key(t[0], t[1], target))
    by_score = sorted(trials, key=lambda t: -score(t[0], t[1], target, 8000))
    assert [score(*t, target, 8000) for t in by_rule] == [score(*t, target, 8000) for t in by_score]


def test_rule_prefers_fewer_params_once_the_target_is_met():
    assert rank_key(99.1, 3000, 99.0) < rank_key(99.8, 6000, 99.0) < rank_key(98.99, 1000, 99.0)
    assert rank_key(99.8, 6000, None) < rank_key(99.1, 3000, None)
    assert rank_key(99.1, 3000, None) < rank_key(99.1, 4000, None)
