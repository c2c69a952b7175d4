import multiprocessing
import os
import socket
import time

import optuna
import pandas as pd
import pytest

from reports.leaderboard import LeaderboardWriter
from search.runner import run_worker, trained_count
from search.settings import SearchError, SearchSettings, open_study
from tests.search.workers import tiny_settings, tiny_worker
from tests.synthetic import tiny_splits


FIXED = {"stages": 2, "order": "cba", "dropout": 0.0, "size": 1.0, "s0_blocks": 1, "s0_width": 8,
         "s0_pad": "same", "s0_kernel": 3, "s0_down": "max", "s0_transition_width": 8, "s1_blocks": 1, "s1_width": 8,
         "s1_type": "conv", "s1_pad": "same", "dilate_last": False, "s0_repeat": 1, "s1_repeat": 1}  # one design of the space, by its parameters


def run(tmp_path, **kw):
    s = SearchSettings(**tiny_settings(tmp_path, **kw))
    run_worker(s, splits=tiny_splits(), log=lambda line: None, callbacks=[LeaderboardWriter(s)])
    return s, open_study(s)


def test_search_trains_exactly_the_requested_trials_and_writes_the_leaderboard(tmp_path):
    s, study = run(tmp_path, trials=3, budget=6000, repair=False)
    trials = study.get_trials()
    assert trained_count(trials) == 3
    rejected = [t for t in trials if t.user_attrs["status"] == "rejected"]
    assert all(t.user_attrs["reasons"].startswith("params ") for t in rejected)
    df = pd.read_csv(s.run_dir / "leaderboard.csv")
    assert len(df) == len(trials)
    for column in ("trial", "status", "genome", "params", "rf", "macs", "val_acc", "best_epoch", "epochs",
                   "seconds", "device", "seed", "reasons"):
        assert column in df.columns
    ranked = df[df["rank"].notna()]
    assert list(ranked["rank"]) == list(range(1, len(ranked) + 1))
    assert ranked["val_acc"].is_monotonic_decreasing  # no target: highest val acc first


def test_rerunning_resumes_the_study(tmp_path):
    run(tmp_path, trials=2)
    s, study = run(tmp_path, trials=4)
    assert trained_count(study.get_trials()) == 4


def test_same_genome_is_not_trained_twice(tmp_path):
    s = SearchSettings(**tiny_settings(tmp_path, trials=2))
    study = open_study(s)
    study.enqueue_trial(FIXED)
    study.enqueue_trial(FIXED)
    run_worker(s, splits=tiny_splits(), log=lambda line: None)
    first, second = study.get_trials()[:2]
    assert first.user_attrs["status"] == "complete"
    assert second.user_attrs["status"] == "reused" and second.user_attrs["reused_from"] == first.number
    assert second.value == first.value


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # study.ask/tell stand in for the workers' optimize
def test_a_genome_another_worker_is_training_is_waited_for_and_reused(tmp_path):
    import threading

    from search.runner import Objective
    from training import train

    s = SearchSettings(**tiny_settings(tmp_path, trials=2))
    study = open_study(s)
    study.enqueue_trial(FIXED)
    study.enqueue_trial(FIXED)
    trained, lines = [], []

    def slow_train(genome, splits, config, **kw):
        trained.append(genome.hash)
        time.sleep(1.0)  # the second trial starts while this one trains
        return train(genome, splits, config, **kw)

    objective = Objective(s, tiny_splits(), study, log=lines.append, train_fn=slow_train)
    first, second = study.ask(), study.ask()
    other_worker = threading.Thread(target=lambda: study.tell(first, objective(first)))
    other_worker.start()
    while not trained:
        time.sleep(0.01)
    study.tell(second, objective(second))
    other_worker.join()
    assert len(trained) == 1
    done = study.get_trials()
    assert done[1].user_attrs["status"] == "reused" and done[1].user_attrs["reused_from"] == first.number
    assert done[1].value == done[0].value
    assert "trial 1: same genome as trial 0, which another worker is training; waiting for its result" in lines


def test_a_twin_whose_worker_is_gone_or_elsewhere_is_not_waited_for():
    from search.recovery import owner_token, runs_here

    assert runs_here(owner_token())
    assert not runs_here("another-host:1:1") and not runs_here(None) and not runs_here("garbled")
    child = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    child.start()
    child.join()
    assert not runs_here(owner_token(child.pid))


def test_resuming_with_another_budget_is_a_clear_error(tmp_path):
    run(tmp_path, trials=1)
    with pytest.raises(SearchError, match=r"study 'tiny' .* was created with budget 3000 \(this run: 2000\)"):
        open_study(SearchSettings(**tiny_settings(tmp_path, budget=2000)))


def test_translation_reaches_every_run_and_resuming_without_it_is_a_clear_error(tmp_path):
    from training import train

    configs = []

    def recording(genome, splits, config, **kw):
        configs.append(config)
        return train(genome, splits, config, **kw)

    s = SearchSettings(**tiny_settings(tmp_path, trials=1, translate_px=2.0))
    run_worker(s, splits=tiny_splits(), log=lambda line: None, train_fn=recording)
    assert configs and all(c.translate_px == 2.0 for c in configs)
    with pytest.raises(SearchError, match=r"was created with translate_px 2.0 \(this run: 0.0\)"):
        open_study(SearchSettings(**tiny_settings(tmp_path)))


@pytest.mark.parametrize("value", [-1.0, float("nan"), 65.0])
def test_a_translation_outside_0_to_64_pixels_is_refused(tmp_path, value):
    with pytest.raises(SearchError, match=r"--translate is a shift in pixels in \[0, 64\]"):
        SearchSettings(**tiny_settings(tmp_path, translate_px=value))


def test_a_worker_opening_the_study_while_another_records_its_identity_is_not_refused(tmp_path, monkeypatch):
    s = SearchSettings(**tiny_settings(tmp_path))
    opened_meanwhile = []
    real_set = optuna.Study.set_user_attr

    def set_then_let_another_worker_open(study, key, value):
        real_set(study, key, value)
        if not opened_meanwhile:  # the second worker starts between the first worker's first and second writes
            opened_meanwhile.append(key)
            open_study(s, worker=1)

    monkeypatch.setattr(optuna.Study, "set_user_attr", set_then_let_another_worker_open)
    open_study(s, worker=0)
    monkeypatch.undo()
    assert open_study(s).user_attrs["budget"] == 3000


def test_unreachable_storage_is_a_clear_error_without_the_password(tmp_path):
    s = SearchSettings(**tiny_settings(tmp_path, storage="postgresql://nas:secret@127.0.0.1:9/nas"))
    with pytest.raises(SearchError) as info:
        open_study(s)
    assert "cannot open storage postgresql://nas:***@127.0.0.1:9/nas" in str(info.value)
    assert "secret" not in str(info.value)


def test_target_is_reported(tmp_path):
    lines = []
    s = SearchSettings(**tiny_settings(tmp_path, trials=2, target=1.0))
    run_worker(s, splits=tiny_splits(), log=lines.append)
    assert any(line.startswith("target 1.0% reached by trial") for line in lines)


def _spawn_workers(settings: dict, n: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=tiny_worker, args=(settings, i)) for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0


def _assert_exact(settings: dict, n: int) -> None:
    study = open_study(SearchSettings(**settings))
    trials = study.get_trials()
    trained = [t for t in trials if t.user_attrs.get("status") == "complete"]
    assert len(trained) == n, [(t.number, t.state.name, t.user_attrs.get("status")) for t in trials]
    assert len({t.number for t in trials}) == len(trials)
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]


@pytest.mark.slow
def test_two_local_workers_share_one_sqlite_study(tmp_path):
    settings = tiny_settings(tmp_path, trials=6, sampler="random")
    _spawn_workers(settings, 2)
    _assert_exact(settings, 6)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_on_postgresql_end_with_exactly_the_requested_trials(tmp_path):
    url = os.environ.get("BUDGETNAS_PG_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must start PostgreSQL and set BUDGETNAS_PG_URL")
        pytest.skip("BUDGETNAS_PG_URL not set")
    settings = tiny_settings(tmp_path, trials=6, storage=url, study=f"pg-{os.getpid()}-{tmp_path.name}")
    _spawn_workers(settings, 2)
    _assert_exact(settings, 6)


def _wait_for(predicate, timeout: float = 120.0, period: float = 0.05):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period)
    raise AssertionError("condition not reached in time")


@pytest.mark.slow
def test_sigkilled_worker_loses_no_completed_trial_and_its_trial_is_retried(tmp_path):
    import signal
    import time

    settings = tiny_settings(tmp_path, trials=3, heartbeat_s=1, grace_s=2,
                             train_overrides={"batch_size": 32, "lr": 0.05, "epochs": 6})
    study = open_study(SearchSettings(**settings))
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=tiny_worker, args=(settings, 0))
    proc.start()

    def second_trial_training():
        trials = study.get_trials()
        done = [t for t in trials if t.user_attrs.get("status") == "complete"]
        running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING
                   and t.user_attrs.get("status") == "training"]
        return (done, running[0]) if done and running else None

    done_before, killed = _wait_for(second_trial_training)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    trials = study.get_trials()
    assert all(t.user_attrs.get("status") == "complete" for t in trials if t.number in {d.number for d in done_before})

    time.sleep(3)  # past the grace period: the next worker fails the stale trial and retries it
    run_worker(SearchSettings(**settings), splits=tiny_splits(), log=lambda line: None)
    trials = study.get_trials()
    assert [t.state for t in trials if t.number == killed.number] == [optuna.trial.TrialState.FAIL]
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retried and retried[0].user_attrs["status"] == "complete"
    assert retried[0].user_attrs["genome"] == killed.user_attrs["genome"]
    assert trained_count(trials) == 3


def test_nsga2_runs_two_objectives(tmp_path):
    s, study = run(tmp_path, trials=3, sampler="nsga2", study="mo")
    complete = [t for t in study.get_trials() if t.user_attrs.get("status") == "complete"]
    assert len(complete) == 3
    assert all(len(t.values) == 2 and t.values[1] == t.user_attrs["params"] for t in complete)
    assert study.best_trials  # the Pareto front


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_pruners_see_per_epoch_reports(tmp_path, pruner):
    s, study = run(tmp_path, trials=7, pruner=pruner, epochs=3, study=f"p-{pruner}")
    trained = [t for t in study.get_trials() if t.user_attrs.get("status") in ("complete", "pruned")]
    assert len(trained) == 7
    assert all(t.intermediate_values for t in trained)
    for t in trained:
        if t.user_attrs["status"] == "pruned":
            assert t.state == optuna.trial.TrialState.PRUNED and len(t.user_attrs["history"]) < 3


def test_impossible_limits_stop_instead_of_looping(tmp_path):
    lines = []
    s = SearchSettings(**tiny_settings(tmp_path, trials=3, min_rf=500, max_rejections_in_a_row=15))
    run_worker(s, splits=tiny_splits(), log=lines.append)
    trials = open_study(s).get_trials()
    assert len(trials) == 15 and trained_count(trials) == 0
    assert all("receptive field" in t.user_attrs["reasons"] for t in trials)
    assert any("stopping: the last 15 proposals were all over the limits" in line for line in lines)


def test_stop_at_target_and_timeout(tmp_path):
    s, study = run(tmp_path, trials=5, target=1.0, stop_at_target=True, study="stop")
    assert trained_count(study.get_trials()) == 1
    s, study = run(tmp_path, trials=50, timeout=0.5, study="timeout")
    assert 1 <= trained_count(study.get_trials()) < 50


def test_tune_hparams_reaches_the_trainer(tmp_path):
    s, study = run(tmp_path, trials=2, tune_hparams=True, study="hp")
    for t in study.get_trials():
        config = t.user_attrs["train_config"]
        assert config["lr"] == t.params["lr"] and config["batch_size"] == t.params["batch_size"]
        assert config["weight_decay"] == t.params["weight_decay"]


def test_enqueued_designs_are_evaluated_first_and_never_trained_twice(tmp_path):
    from blocks import Genome
    from search.runner import enqueue_genomes

    s = SearchSettings(**tiny_settings(tmp_path, trials=2))
    study = open_study(s)
    warm = Genome.from_string("i1x12x12n4-conv_c6_k3_psame-max_k2-conv_c8_k3-gap-conv_c4_k1_oc")
    assert enqueue_genomes(study, [warm, warm], log=lambda line: None) == 1  # the duplicate is not queued
    run_worker(s, study=study, splits=tiny_splits(), log=lambda line: None)
    first = study.get_trials()[0]
    assert first.user_attrs["genome"] == warm.to_string() and first.user_attrs["status"] == "complete"
    lines = []
    assert enqueue_genomes(study, [warm], log=lines.append) == 0  # already trained: not again
    assert "already in the study (trained as trial 0)" in lines[0]


def test_enqueue_narrows_a_design_over_the_budget_and_skips_one_that_cannot_fit(tmp_path):
    from blocks import Genome
    from budgets import Limits, totals
    from search.runner import enqueue_genomes

    s = SearchSettings(**tiny_settings(tmp_path, trials=1))
    study = open_study(s)
    wide = Genome.from_string("i1x12x12n4-conv_c16_k3_psame-max_k2-conv_c16_k3-gap-conv_c4_k1_oc")
    budget = totals(wide).params // 2
    lines = []
    assert enqueue_genomes(study, [wide], log=lines.append, limits=Limits(max_params=budget)) == 1
    queued = Genome.from_string(study.get_trials()[0].user_attrs["enqueued"])
    assert totals(queued).params <= budget and queued.layers[-1].out == 4
    assert "narrowed to fit" in lines[0] and f"{totals(queued).params:,} params" in lines[0]
    assert enqueue_genomes(study, [wide], log=lines.append, limits=Limits(max_params=budget)) == 0  # same narrowed design
    assert enqueue_genomes(study, [wide], log=lines.append, limits=Limits(max_params=30)) == 0
    assert "cannot fit" in lines[-1]


def test_sqlite_transactions_take_the_write_lock_when_they_begin(tmp_path):
    """Two workers must not both pop one queued trial (optuna#4002): SQLite ignores FOR UPDATE."""
    import sqlite3

    from sqlalchemy import text

    s = SearchSettings(**tiny_settings(tmp_path))
    storage = open_study(s)._storage
    storage = getattr(storage, "_backend", storage)  # under the heartbeat/cached wrappers, if any
    with storage.engine.connect() as connection:
        with connection.begin():
            connection.execute(text("SELECT 1"))  # a read only: a deferred transaction would hold no lock yet
            other = sqlite3.connect(s.run_dir / "study.db", timeout=0.1, isolation_level=None)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()
    assert open_study(s).get_trials() == []  # and the storage still works


def test_a_pruned_genome_proposed_again_replays_its_rungs_instead_of_training_them(tmp_path):
    from blocks import Genome
    from search.runner import ENQUEUED_KEY
    from training import train

    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    s = SearchSettings(**tiny_settings(tmp_path, trials=3, epochs=3, pruner="sha"))
    study = open_study(s)
    study.pruner = AlwaysPrune()
    genome = Genome.from_string("i1x12x12n4-conv_c6_k3_psame-max_k2-conv_c8_k3-gap-conv_c4_k1_oc")
    for _ in range(2):  # the same genome twice, as TPE re-proposes one (enqueue_genomes would not queue it twice)
        study.enqueue_trial({}, user_attrs={ENQUEUED_KEY: genome.to_string()})
    runs, lines = [], []

    def counting_train(*args, **kwargs):
        runs.append(args[2].epochs)
        return train(*args, **kwargs)

    run_worker(s, study=study, splits=tiny_splits(), log=lines.append, train_fn=counting_train)
    first, second = study.get_trials()[:2]
    assert [t.user_attrs["status"] for t in (first, second)] == ["pruned", "pruned"]
    assert runs == [1] * (len(study.get_trials()) - 1)  # one 1-epoch rung run per trial, none for trial 1
    assert second.user_attrs["rungs"] == first.user_attrs["rungs"]
    assert second.user_attrs["val_acc"] == first.user_attrs["val_acc"] and second.user_attrs["seconds"] == 0.0
    assert any("1-epoch rung of the same genome as trial 0 reused" in line for line in lines)


def test_sha_pruner_promotes_a_third_and_survivors_train_all_epochs(tmp_path):
    s, study = run(tmp_path, trials=9, epochs=3, pruner="sha", study="sha")
    trained = [t for t in study.get_trials() if t.user_attrs.get("status") in ("complete", "pruned")]
    assert len(trained) == 9
    complete = [t for t in trained if t.user_attrs["status"] == "complete"]
    assert complete and all(t.user_attrs["epochs"] == 3 for t in complete)
    assert any(t.user_attrs["status"] == "pruned" and t.user_attrs["epochs"] == 1 for t in trained)
    board = pd.read_csv(s.run_dir / "leaderboard.csv")
    assert (board.loc[board["rank"].notna(), "epochs"] == 3).all() and board["images"].notna().any()


def test_ram_limit_is_repaired_by_width_and_rejections_name_it(tmp_path):
    s, study = run(tmp_path, trials=3, budget=6000, max_ram=9000, study="ram")
    complete = [t for t in study.get_trials() if t.user_attrs.get("status") == "complete"]
    assert len(complete) == 3 and all(0 < t.user_attrs["ram"] <= 9000 for t in complete)
    assert all(t.user_attrs["flash"] > t.user_attrs["params"] for t in complete)  # int8: the .tflite file's estimate
    board = pd.read_csv(s.run_dir / "leaderboard.csv")
    assert board["ram"].notna().all() and board["flash"].notna().all()
    s, study = run(tmp_path, trials=2, budget=6000, max_ram=9000, repair=False, study="ram-norepair")
    reasons = [t.user_attrs.get("reasons", "") for t in study.get_trials() if t.user_attrs["status"] == "rejected"]
    assert any(r.startswith("ram ") and "B > 9,000 B (int8)" in r for r in reasons)


class _ScriptedTrainer:
    """A stand-in for ``training.train``: calls ``on_epoch`` after each epoch as ``train`` does, and records each run's
    epochs and whether it was cut short; the accuracy depends on the design and the run's length only, so rung values
    are known."""

    def __init__(self):
        self.runs = []  # (genome hash, epochs, cut short by on_epoch)

    def __call__(self, genome, splits, config, on_epoch=None):
        from training import EpochMetrics, TrainResult

        quality = int(genome.hash[:4], 16) / 0xFFFF
        epochs, status = [], "complete"
        for e in range(1, config.epochs + 1):
            epochs.append(EpochMetrics(e, 1.0, 50.0, 1.0, 50 + 40 * quality + e, seconds=0.1))
            stop = on_epoch(epochs[-1]) if on_epoch is not None else None
            if stop:
                status = stop
                break
        self.runs.append((genome.hash, config.epochs, status != "complete"))
        return TrainResult(status, epochs, 2.0, "cpu", config.seed, 0, {"epochs": config.epochs})


def test_separate_rungs_are_short_runs_and_survivors_train_the_full_run_unpruned(tmp_path):
    s = SearchSettings(**tiny_settings(tmp_path, trials=9, epochs=9, pruner="sha", study="rungs"))
    trainer = _ScriptedTrainer()
    run_worker(s, splits=tiny_splits(), log=lambda line: None, train_fn=trainer)
    trials = [t for t in open_study(s).get_trials() if t.user_attrs.get("status") in ("complete", "pruned")]
    assert len(trials) == 9
    runs = {}
    for genome_hash, epochs, cut in trainer.runs:
        assert not cut  # the rungs are whole runs; the full run is never cut short
        runs.setdefault(genome_hash, []).append(epochs)
    for t in trials:
        lengths = runs[t.user_attrs["hash"]]
        assert lengths in ([1], [1, 3], [1, 3, 9])  # rungs of 1 and 3 epochs (at most a third of 9), then 9
        assert set(t.intermediate_values) == {e for e in lengths if e < 9}
        for e in t.intermediate_values:  # each rung reports its own run's final accuracy
            expected = 50 + 40 * (int(t.user_attrs["hash"][:4], 16) / 0xFFFF) + e  # as the trainer rounds it
            assert t.intermediate_values[e] == t.user_attrs["rungs"][str(e)] == pytest.approx(expected, abs=1e-9)
        assert t.user_attrs["seconds"] == 2.0 * len(lengths)  # all its runs
        assert t.user_attrs["epochs_trained"] == sum(lengths)
        if t.user_attrs["status"] == "complete":
            assert lengths == [1, 3, 9] and t.user_attrs["epochs"] == 9
        else:
            assert t.user_attrs["epochs"] == lengths[-1] < 9
    assert any(t.user_attrs["status"] == "pruned" for t in trials)
    assert any(t.user_attrs["status"] == "complete" for t in trials)
    from reports.leaderboard import trials_frame

    board = trials_frame(open_study(s)).set_index("trial")
    for t in trials:  # the leaderboard names each rung run's fidelity and accuracy
        assert board.loc[t.number, "rung_val"] == " / ".join(f"{e}ep {v:.2f}" for e, v in t.user_attrs["rungs"].items())


def test_inline_rungs_report_every_epoch_of_the_one_full_run(tmp_path):
    s = SearchSettings(**tiny_settings(tmp_path, trials=3, epochs=9, pruner="sha", rungs="inline", study="inline"))
    trainer = _ScriptedTrainer()
    run_worker(s, splits=tiny_splits(), log=lambda line: None, train_fn=trainer)
    assert trainer.runs and all(epochs == 9 for _, epochs, _ in trainer.runs)  # one full-length run per trial
    trials = open_study(s).get_trials()
    assert any(t.user_attrs.get("status") == "pruned" for t in trials)  # ...cut short by the pruner's epoch reports
    assert [cut for _, _, cut in trainer.runs] == [t.user_attrs.get("status") == "pruned" for t in trials
                                                   if t.user_attrs.get("status") in ("complete", "pruned")]


def test_unknown_rungs_mode_is_a_clear_error(tmp_path):
    with pytest.raises(SearchError, match="unknown --rungs 'sometimes'"):
        SearchSettings(**tiny_settings(tmp_path, rungs="sometimes"))


def test_tpe_keeps_parallel_workers_apart_with_the_constant_liar():
    from search.settings import make_sampler

    assert make_sampler("tpe", 0)._constant_liar  # running trials count as bad: no twin proposals from two workers


def test_search_eta_follows_the_pace_and_stops_at_the_timeout():
    from search.runner import search_eta

    assert search_eta(elapsed=100, finished=4, left=8) == 200  # 25 s a trial
    assert search_eta(elapsed=100, finished=4, left=8, timeout=3900) == 200
    assert search_eta(elapsed=700, finished=1, left=199, timeout=3900) == 3200  # not 39 hours: the timeout ends it
    assert search_eta(elapsed=4000, finished=20, left=180, timeout=3900) == 0


def test_run_search_refuses_callbacks_that_cannot_reach_the_worker_processes(tmp_path):
    """Checked before any trial: the processes start from a thread, so a failed start would surface only at the end."""
    from search.runner import run_search

    settings = SearchSettings(**tiny_settings(tmp_path, trials=2, workers=2))
    with pytest.raises(TypeError, match="callbacks travel to the worker processes and must be picklable"):
        run_search(settings, callbacks=[lambda study, trial: None])
    assert not multiprocessing.active_children()


@pytest.mark.slow
def test_run_search_starts_worker_processes_first_and_runs_worker_0_here(tmp_path):
    """Workers 1.. start while ``on_started`` (the CLI's plan) runs, not after it; worker 0 trains in this
    process, whose thread count comes back afterwards (the final evaluation runs with every core)."""
    import torch

    from search.recovery import owner_token
    from search.runner import run_search
    from tests.synthetic import write_idx

    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=3000, n_test=50)
    config = tiny_settings(tmp_path, trials=4, workers=2, data_dir=str(tmp_path / "data"), val_size=500)
    settings = SearchSettings(**config)
    threads = torch.get_num_threads()
    children_at_start = []

    def on_started():  # a worker process appears while this runs (started from a thread: nothing waits for it)
        deadline = time.monotonic() + 60
        while not multiprocessing.active_children() and time.monotonic() < deadline:
            time.sleep(0.05)
        children_at_start.append(len(multiprocessing.active_children()))

    study = run_search(settings, on_started=on_started)
    assert children_at_start == [1]
    assert torch.get_num_threads() == threads
    _assert_exact(config, 4)
    owners = {t.user_attrs.get("owner") for t in study.get_trials() if t.user_attrs.get("status") == "complete"}
    assert owner_token() in owners


@pytest.mark.slow
def test_a_dead_fork_server_neither_fails_the_search_nor_leaves_its_workers_behind(tmp_path):
    """multiprocessing reads a child's exit code as 255 the moment its fork server dies, though the child runs on."""
    from search.runner import run_search
    from tests.search.workers import KillForkServerOnce
    from tests.synthetic import write_idx
    from training.parallel import process_context

    if process_context().get_start_method() != "forkserver":
        pytest.skip("no fork server on this platform")
    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=3000, n_test=50)
    config = tiny_settings(tmp_path, trials=6, workers=2, data_dir=str(tmp_path / "data"), val_size=500)
    study = run_search(SearchSettings(**config), callbacks=[KillForkServerOnce()])
    trials = study.get_trials()
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]  # every worker had ended
    assert trained_count(trials) == 6
    assert any(not t.user_attrs["owner"].startswith(f"{socket.gethostname()}:{os.getpid()}:")  # worker 1 trained
               for t in trials if t.user_attrs.get("status") == "complete")


def test_a_worker_that_is_a_zombie_nobody_reaps_is_an_orphan():
    """Its parent (the fork server) died and a container's PID 1 need not reap it: its trial must still be retried."""
    from search.recovery import is_orphan, owner_token
    from training.parallel import _stat

    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while _stat(pid)[:1] != ["Z"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert is_orphan(owner_token(pid))
    finally:
        os.waitpid(pid, 0)


def test_a_worker_whose_fork_server_died_is_a_failure_only_if_it_left_a_trial_running():
    from search.runner import _cut_short

    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    trial.set_user_attr("owner", f"{socket.gethostname()}:4242:17")
    assert _cut_short(study, {1: 4242}) == {1: "worker 1 ended inside trial 0 (exit code unknown: its fork server "
                                                "died first); the next run retries it"}
    assert _cut_short(study, {1: 4243}) == {}


def test_a_long_run_says_how_its_first_epoch_went_in_the_plain_log(tmp_path):
    """Issue 28: with no pruner a first trial trains its whole run; its first line must not wait for the end."""
    s = SearchSettings(**tiny_settings(tmp_path, trials=1, epochs=9, pruner="none", study="first-line"))
    lines = []
    run_worker(s, splits=tiny_splits(), log=lines.append, train_fn=_ScriptedTrainer())
    first = [line for line in lines if "epoch 1/9" in line]
    assert first and first[0].startswith("trial 0: full run epoch 1/9: val ") and "to the end of the run" in first[0]
    assert lines.index(first[0]) < next(i for i, line in enumerate(lines) if "trial 0 complete" in line)


def test_the_evolution_sampler_runs_the_search_and_mutates_its_trained_trials(tmp_path):
    s = SearchSettings(**tiny_settings(tmp_path, trials=16, epochs=9, pruner="sha", sampler="evolution",
                                       study="evolved"))
    run_worker(s, splits=tiny_splits(), log=lambda line: None, train_fn=_ScriptedTrainer())
    study = open_study(s)
    trained = [t for t in study.get_trials() if t.user_attrs.get("status") in ("complete", "pruned", "reused")]
    assert len({t.user_attrs["hash"] for t in trained if t.user_attrs["status"] != "reused"}) == 16
    later = [t for t in study.get_trials() if t.number >= 12 and t.params]
    # after the 10 start-up trials each proposal is some earlier trial with one decision moved
    for t in later:
        earlier = [e for e in study.get_trials() if e.number < t.number and e.params]
        assert min(sum(e.params.get(k) != v for k, v in t.params.items() if k in e.params) for e in earlier) <= 1


def test_with_a_target_met_the_search_descends_below_the_smallest_design_that_met_it(tmp_path):
    """Issue 36: every proposal filled 80-100% of the budget however easy the target. Here every design meets it
    (the scripted accuracies are all above 50%), so each proposal after the first is sized below the smallest
    design trained so far, and the search ends far below the budget."""
    s = SearchSettings(**tiny_settings(tmp_path, trials=8, epochs=2, pruner="none", target=50.0, budget=8000,
                                       study="descend", sampler="tpe"))
    lines = []
    run_worker(s, splits=tiny_splits(), log=lines.append, train_fn=_ScriptedTrainer())
    trials = sorted((t for t in open_study(s).get_trials() if t.user_attrs.get("status") == "complete"),
                    key=lambda t: t.number)
    assert len(trials) == 8
    assert trials[0].user_attrs["size_range"] == [6400, 8000]  # nothing met yet: near the budget
    smallest = trials[0].user_attrs["params"]
    for t in trials[1:]:
        low, high = t.user_attrs["size_range"]
        assert high == smallest and low == max(250, smallest // 4)
        smallest = min(smallest, t.user_attrs["params"])
    assert smallest < 0.5 * 8000
    assert any(line.startswith("sizes: target met by") for line in lines)


def test_without_a_target_the_search_spans_the_whole_range(tmp_path):
    s = SearchSettings(**tiny_settings(tmp_path, trials=12, epochs=1, pruner="none", budget=8000, study="front",
                                       sampler="random"))
    run_worker(s, splits=tiny_splits(), log=lambda line: None, train_fn=_ScriptedTrainer())
    trials = [t for t in open_study(s).get_trials() if t.user_attrs.get("status") == "complete"]
    assert all(t.user_attrs["size_range"] == [250, 8000] for t in trials)
    params = sorted(t.user_attrs["params"] for t in trials)
    assert params[0] < 0.3 * 8000 and params[-1] > 0.5 * 8000
