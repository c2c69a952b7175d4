import pytest

from search.plan import Plan, expected_epochs, format_duration, rung_epochs


def test_expected_epochs_under_successive_halving():
    assert expected_epochs("none", 1, 15) == 15
    assert expected_epochs("median", 1, 5) == 5
    # rungs at 1, 3, 9: everyone trains 1 epoch, a third 2 more, a ninth 6 more, a 27th the last 6
    assert expected_epochs("sha", 1, 15) == pytest.approx(1 + 2 / 3 + 6 / 9 + 6 / 27)
    assert expected_epochs("sha", 3, 3) == 3
    assert expected_epochs("sha", 2, 5) == pytest.approx(2 + 3 / 3)


def test_separate_rungs_are_short_runs_of_at_most_a_third_of_the_full_run():
    assert rung_epochs(1, 15) == [1, 3]
    assert rung_epochs(1, 27) == [1, 3, 9]
    assert rung_epochs(2, 5) == []
    assert rung_epochs(1, 3) == [1]
    # everyone runs 1 epoch, a third a 3-epoch run, a ninth the 15-epoch run from scratch
    assert expected_epochs("sha", 1, 15, rungs="separate") == pytest.approx(1 + 3 / 3 + 15 / 9)
    assert expected_epochs("median", 1, 15, rungs="separate") == pytest.approx(1 + 3 / 2 + 15 / 4)
    assert expected_epochs("sha", 2, 5, rungs="separate") == 5
    assert expected_epochs("none", 1, 15, rungs="separate") == 15


def test_plan_counts_search_and_final_epochs_and_estimates_the_time():
    plan = Plan(trials=10, epochs_per_trial=2.5, search_epoch_s=30.0, workers=2, final_runs=6, final_epochs=15,
                final_epoch_s=40.0, device="cpu, 1 thread(s) per worker")
    assert plan.search_epochs == 25 and plan.total_epochs == 25 + 90
    assert plan.seconds == 25 * 30 / 2 + 90 * 40
    lines = plan.lines()
    assert lines[0] == "device: cpu, 1 thread(s) per worker, 2 worker(s)"
    assert "up to 10 trained trials x ~2.5 epochs" in lines[1] and "6 final run(s) x 15 epochs" in lines[1]
    assert "~115 epochs in all" in lines[1]
    assert f"~{format_duration(plan.seconds)}" in lines[2] and "--final-top 0" in lines[2]
    assert format_duration(3725) == "1:02:05"


def test_timeout_caps_the_search_part_of_the_estimate_and_says_so():
    plan = Plan(trials=200, epochs_per_trial=3.7, search_epoch_s=47.0, workers=1, final_runs=3, final_epochs=15,
                final_epoch_s=50.0, device="cpu", timeout=3900)
    assert plan.search_seconds == 3900 and plan.seconds == 3900 + 3 * 15 * 50
    assert "the search cut at --timeout 1:05:00" in plan.lines()[2]
    short = Plan(trials=2, epochs_per_trial=1, search_epoch_s=10.0, workers=1, final_runs=0, final_epochs=15,
                 final_epoch_s=50.0, device="cpu", timeout=3900)
    assert short.search_seconds == 20 and "--timeout" not in short.lines()[2].split(";")[0]


def test_calibrate_times_real_training_steps_per_image():
    from blocks import InputSpec
    from search.plan import calibrate
    from tests.synthetic import TINY_GENOME

    seconds = calibrate(TINY_GENOME, InputSpec(1, 12, 12, 4), "cpu", steps=2, batch_size=16)
    assert 0 < seconds < 1
