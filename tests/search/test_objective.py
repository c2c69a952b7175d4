import optuna
import pytest

from search.ranking import score
from search.runner import Objective
from search.settings import SearchError, SearchSettings
from tests.synthetic import tiny_splits

PARAMS = {"stages": 2, "order": "cba", "dropout": 0.0, "size": 1.0, "s0_blocks": 1, "s0_width": 8,
          "s0_pad": "same", "s0_kernel": 3, "s0_down": "max", "s0_transition_width": 8, "s1_blocks": 1,
          "s1_width": 8, "s1_type": "conv", "s1_pad": "same", "dilate_last": False,
          "s0_repeat": 1, "s1_repeat": 1}


def settings(**kw):
    base = dict(budget=3000, trials=2, epochs=1, device="cpu", pruner="none", train_overrides={"batch_size": 64})
    base.update(kw)
    return SearchSettings(**base)


def test_feasible_trial_is_trained_and_recorded():
    trial = optuna.trial.FixedTrial(PARAMS)
    value = Objective(settings(), tiny_splits(), log=lambda s: None)(trial)
    attrs = trial.user_attrs
    assert attrs["status"] == "complete" and value == attrs["val_acc"]
    assert attrs["params"] <= 3000 and attrs["genome"].startswith("i1x12x12n4-")
    assert attrs["epochs"] == 1 and attrs["device"] == "cpu" and len(attrs["history"]) == 1


def test_over_budget_genome_is_rejected_without_training():
    def must_not_train(*args, **kwargs):
        raise AssertionError("trained a rejected genome")

    big = {**PARAMS, "s0_width": 40, "s1_width": 40, "s1_blocks": 3}
    trial = optuna.trial.FixedTrial(big)
    value = Objective(settings(budget=500, repair=False), tiny_splits(), log=lambda s: None,
                      train_fn=must_not_train)(trial)
    assert value == 0.0
    assert trial.user_attrs["status"] == "rejected"
    assert trial.user_attrs["reasons"].startswith("params ") and "> budget 500" in trial.user_attrs["reasons"]


def test_score_rewards_smaller_models_once_the_target_is_met():
    assert score(98.0, 5000, None, 8000) == 98.0
    assert score(98.0, 5000, 99.0, 8000) == 98.0
    assert score(99.5, 4000, 99.0, 8000) == pytest.approx(99.5 - 0.5 + 0.5)  # 99 + (1 - 0.5)
    assert score(99.1, 2000, 99.0, 8000) > score(99.8, 6000, 99.0, 8000)


@pytest.mark.parametrize("kw,expected", [
    ({"sampler": "cmaes"}, "unknown sampler 'cmaes'; choose from tpe, nsga2, random"),
    ({"pruner": "asha"}, "unknown pruner 'asha'; choose from sha, median, hyperband, none"),
    ({"budget": 0}, "--budget must be > 0"),
    ({"target": 120.0}, "--target is a validation accuracy in percent"),
    ({"study": "a/b"}, "--study 'a/b': use letters"),
])
def test_bad_settings(kw, expected):
    with pytest.raises(SearchError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        settings(**kw)


def test_fitted_widths_are_recorded_beside_the_sampled_ones():
    big = {**PARAMS, "s0_width": 40, "s1_width": 40}
    trial = optuna.trial.FixedTrial(big)
    Objective(settings(budget=1500), tiny_splits(), log=lambda s: None)(trial)
    attrs = trial.user_attrs
    assert attrs["width_scale"] < 1
    assert attrs["s0_width_fitted"] < 40 and attrs["s1_width_fitted"] < 40 and "s0_transition_width_fitted" in attrs
    assert f"conv_c{attrs['s0_width_fitted']}_k3" in attrs["genome"]


def test_metric_names_say_what_the_value_is(tmp_path):
    from search.settings import open_study

    study = open_study(settings(target=99.4, out=str(tmp_path), study="names"))
    assert study.metric_names == ["score: val_acc (%), above 99.4 = 99.4 + 1 - params/budget"]
