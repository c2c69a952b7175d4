import itertools

import pytest

from search.ranking import noise_band, rank_key, score, tie_floor


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


def test_noise_band_is_one_binomial_standard_error():
    assert noise_band(99.3, 5000) == pytest.approx(100 * (0.993 * 0.007 / 5000) ** 0.5)
    assert 0.11 < noise_band(99.3, 5000) < 0.12
    assert noise_band(99.3, 20000) == pytest.approx(noise_band(99.3, 5000) / 2)
    assert noise_band(100.0, 5000) == 0.0
    with pytest.raises(ValueError, match="val_images"):
        noise_band(99.0, 0)


def test_within_the_noise_of_the_best_fewer_params_win():
    floor = tie_floor(99.34, 5000)  # about 99.22
    tied_small, best_big, below = rank_key(99.30, 4404, 99.4, tie_floor=floor), rank_key(99.34, 7554, 99.4, tie_floor=floor), \
        rank_key(99.20, 3000, 99.4, tie_floor=floor)
    assert tied_small < best_big < below
    assert rank_key(99.41, 7900, 99.4, tie_floor=floor) < tied_small  # meeting the target still ranks first
    assert rank_key(99.34, 7554, 99.4) < rank_key(99.30, 4404, 99.4)  # without a floor: accuracy first


def _board(rows):
    import pandas as pd

    df = pd.DataFrame(rows, columns=["trial", "params", "val_acc", "epochs", "images"])
    df["rank"] = range(1, len(df) + 1)
    return df


def test_finalists_are_the_front_of_the_designs_that_met_the_target_smallest_first():
    from search.ranking import finalists

    board = _board([(0, 900, 99.2, 15, 100), (1, 3000, 99.1, 15, 100), (2, 4000, 99.5, 15, 100),
                    (3, 1500, 99.3, 15, 100), (4, 600, 98.0, 15, 100), (5, 500, 99.6, 3, 100), (6, 1000, 99.4, 15, 100)])
    rows, in_turn = finalists(board, 99.0, 5)
    # 1,000 is not 1.25x 900; 3,000 is less accurate than 1,500 on validation: not on the way up
    assert in_turn and list(rows["trial"]) == [0, 3, 2]
    assert list(finalists(board, 99.0, 2)[0]["trial"]) == [0, 3]
    # within one standard error on 1,000 validation images (0.17 points at 99.4%), 3,000 ties with the best smaller
    assert list(finalists(board, 99.0, 5, val_images=1000)[0]["trial"]) == [0, 3, 1, 2]
    assert list(finalists(board, 99.9, 2)[0]["trial"]) == [0, 1] and not finalists(board, 99.9, 2)[1]  # none met
    assert list(finalists(board, None, 3)[0]["trial"]) == [0, 1, 2] and not finalists(board, None, 3)[1]
