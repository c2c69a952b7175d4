"""Fault injection: SIGKILL then an immediate or a late rerun, SIGTERM, Ctrl-C, and two workers with one killed.

Each test checks the exact set of distinct trained genomes and that no completed trial is lost.
"""

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest

from search.runner import run_worker, trained_count
from search.settings import SearchSettings, open_study
from tests.conftest import ROOT
from tests.search.workers import tiny_settings, tiny_worker
from tests.synthetic import tiny_splits, write_idx

pytestmark = pytest.mark.slow
SLOW_TRIALS = {"batch_size": 32, "lr": 0.05, "epochs": 6}  # a trial lasts long enough to be killed in


def _wait_for(predicate, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _training_after(study, done: int):
    """(complete trials, a RUNNING training trial) once ``done`` trials are complete and another is training."""
    trials = study.get_trials()
    complete = [t for t in trials if t.user_attrs.get("status") == "complete"]
    running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING
               and t.user_attrs.get("status") == "training"]
    return (complete, running[0]) if len(complete) >= done and running else None


def _check_outcome(study, trials_wanted: int, kept: list, killed) -> None:
    trials = study.get_trials()
    complete = [t for t in trials if t.user_attrs.get("status") == "complete"]
    hashes = {t.user_attrs["hash"] for t in complete}
    assert len(hashes) == trials_wanted == trained_count(trials), [(t.number, t.state.name, t.user_attrs.get("status"))
                                                                  for t in trials]
    assert {t.user_attrs["hash"] for t in kept} <= hashes  # nothing completed was lost
    assert killed.user_attrs["hash"] in hashes  # the killed trial's genome was trained in the end
    assert [t.state for t in trials if t.number == killed.number] == [optuna.trial.TrialState.FAIL]
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert not [t for t in trials if t.user_attrs.get("status") == "reused"]  # no slot spent on repeats


@pytest.mark.parametrize("wait_s", [0.0, 3.0], ids=["immediate-rerun", "late-rerun"])
def test_sigkill_then_rerun_trains_exactly_the_requested_distinct_genomes(tmp_path, wait_s):
    settings = tiny_settings(tmp_path, trials=4, heartbeat_s=1, grace_s=2, train_overrides=SLOW_TRIALS)
    study = open_study(SearchSettings(**settings))
    proc = multiprocessing.get_context("spawn").Process(target=tiny_worker, args=(settings, 0))
    proc.start()
    kept, killed = _wait_for(lambda: _training_after(study, 2))
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    time.sleep(wait_s)
    run_worker(SearchSettings(**settings), splits=tiny_splits(), log=lambda line: None)
    _check_outcome(study, 4, kept, killed)
    retried = [t for t in study.get_trials() if t.system_attrs.get("failed_trial") == killed.number]
    assert retried and retried[0].user_attrs["genome"] == killed.user_attrs["genome"]


def test_two_workers_with_one_killed(tmp_path):
    settings = tiny_settings(tmp_path, trials=6, heartbeat_s=1, grace_s=2, train_overrides=SLOW_TRIALS)
    study = open_study(SearchSettings(**settings))
    ctx = multiprocessing.get_context("spawn")
    victim, survivor = (ctx.Process(target=tiny_worker, args=(settings, i)) for i in range(2))
    victim.start()
    kept, killed = _wait_for(lambda: _training_after(study, 1))
    survivor.start()
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    survivor.join(timeout=300)
    assert survivor.exitcode == 0
    _check_outcome(study, 6, kept, killed)


def _cli_search(tmp_path, study: str) -> subprocess.Popen:
    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=6000, n_test=500)
    args = [sys.executable, str(ROOT / "run_search.py"), "--budget", "3000", "--trials", "20", "--epochs", "3",
            "--sampler", "random", "--final-top", "0", "--data-dir", str(tmp_path / "data"), "--out",
            str(tmp_path / "runs"), "--study", study, "--device", "cpu", "--workers", "1"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["sigterm", "ctrl-c"])
def test_signal_fails_the_running_trial_writes_results_and_exits_cleanly(tmp_path, sig, code):
    proc = _cli_search(tmp_path, "sig")
    settings = SearchSettings(**tiny_settings(tmp_path / "runs", study="sig", budget=3000))  # the CLI's study
    _wait_for(lambda: (settings.run_dir / "study.db").is_file(), timeout=120)
    study = open_study(settings)
    kept, running = _wait_for(lambda: _training_after(study, 1), timeout=300)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err and "Traceback" not in out
    assert len(err.strip().splitlines()) <= 1
    trials = study.get_trials()
    assert [t.state for t in trials if t.number == running.number] == [optuna.trial.TrialState.FAIL]
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    board = pd.read_csv(settings.run_dir / "leaderboard.csv")
    assert set(board.loc[board["status"] == "complete", "trial"]) >= {t.number for t in kept}
    assert (settings.run_dir / "report.html").is_file()
