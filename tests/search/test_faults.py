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
from tests.conftest import ROOT, fill_disk, interruptible
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


def _cli_search(tmp_path, study: str, *extra: str) -> subprocess.Popen:
    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=6000, n_test=500)
    args = [sys.executable, str(ROOT / "run_search.py"), "--budget", "3000", "--trials", "20", "--epochs", "3",
            "--sampler", "random", "--final-top", "0", "--data-dir", str(tmp_path / "data"), "--out",
            str(tmp_path / "runs"), "--study", study, "--device", "cpu", "--workers", "1", *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=interruptible)


@pytest.mark.parametrize("sig, code, extra", [(signal.SIGTERM, 143, ()), (signal.SIGINT, 130, ()),
                                             (signal.SIGTERM, 143, ("--no-retry-interrupted",))],
                         ids=["sigterm", "ctrl-c", "sigterm-no-retry"])
def test_signal_fails_the_running_trial_writes_results_and_exits_cleanly(tmp_path, sig, code, extra):
    proc = _cli_search(tmp_path, "sig", *extra)
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
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == running.number]
    if extra:  # the user asked for interrupted trials to stay failed
        assert not retried
    else:  # queued again with the same genome, as a killed worker's trial is
        assert [t.state for t in retried] == [optuna.trial.TrialState.WAITING]
        assert retried[0].user_attrs["genome"] == running.user_attrs["genome"]


# --- Reliability, round three (issue 24) ---

def _trials_of(run_dir):
    from search.settings import SearchSettings, open_study

    return open_study(SearchSettings(budget=3000, out=str(run_dir.parent), study=run_dir.name)).get_trials()


def _search_args(tmp_path, out, study, *extra):
    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=6000, n_test=500)
    return [sys.executable, str(ROOT / "run_search.py"), "--budget", "3000", "--epochs", "2", "--sampler", "random",
            "--pruner", "none", "--final-top", "0", "--data-dir", str(tmp_path / "data"), "--out", str(out),
            "--study", study, "--device", "cpu", *extra]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_disk_that_fills_up_mid_search_is_one_line_naming_the_study(tmp_path, small_disk, workers):
    disk = small_disk
    proc = subprocess.Popen(_search_args(tmp_path, disk, "full", "--trials", "40", "--workers", workers),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        if " complete: " in line:
            fill_disk(disk)
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in err + out and len(err.strip().splitlines()) == 1, err[-3000:]
    assert "study.db" in err or "leaderboard.csv" in err, err
    subprocess.run(["rm", "-f", str(disk / "filler")])
    assert any(t.user_attrs.get("status") == "complete" for t in _trials_of(disk / "full"))  # kept


def test_a_killed_command_leaves_no_worker_searching_and_the_rerun_counts_right(tmp_path):
    run_dir = tmp_path / "runs" / "orphan"
    proc = subprocess.Popen(_search_args(tmp_path, run_dir.parent, "orphan", "--trials", "12", "--workers", "2"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    from search.settings import SearchSettings, open_study

    study = _wait_for(lambda: (run_dir / "study.db").is_file() and open_study(
        SearchSettings(budget=3000, out=str(run_dir.parent), study="orphan")), timeout=120)

    def worker_training():
        trials = study.get_trials()
        pids = {int(t.user_attrs["owner"].split(":")[1]) for t in trials
                if t.state == optuna.trial.TrialState.RUNNING and t.user_attrs.get("status") == "training"}
        done = [t for t in trials if t.user_attrs.get("status") == "complete"]
        return done and (pids - {proc.pid})

    worker_pid = next(iter(_wait_for(worker_training, timeout=300)))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _wait_for(lambda: not os.path.exists(f"/proc/{worker_pid}") or open(f"/proc/{worker_pid}/stat").read().split(")")[1].split()[0] == "Z", timeout=30)
    err = proc.stderr.read()  # complete once every process that held the pipe has gone
    assert "leaked semaphore" not in err, err
    trials = study.get_trials()
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and t.user_attrs.get("status")
                and int(t.user_attrs["owner"].split(":")[1]) == worker_pid]  # its trial was failed ...
    left = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    trained = len({t.user_attrs["hash"] for t in trials if t.user_attrs.get("status") == "complete"})
    rerun = subprocess.run(_search_args(tmp_path, run_dir.parent, "orphan", "--trials", str(trained), "--workers", "1"),
                           capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resuming study orphan: {trained} trained" in rerun.stdout, (left, rerun.stdout[:2000])
    retried = [t for t in study.get_trials() if t.system_attrs.get("failed_trial") is not None]
    assert retried  # ... and queued again


@pytest.mark.parametrize("delay", [1.0, 3.0, 8.0])
def test_ctrl_c_in_the_first_seconds_is_one_line_and_leaves_no_trial_running(tmp_path, delay):
    run_dir = tmp_path / "runs" / "early"
    proc = subprocess.Popen(_search_args(tmp_path, run_dir.parent, "early", "--trials", "6", "--workers", "2"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
                            preexec_fn=interruptible)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C does: the whole process group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err + out and len(err.strip().splitlines()) <= 1, err[-3000:]
    if (run_dir / "study.db").is_file():
        trials = _trials_of(run_dir)
        assert not [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING]
        for t in trials:
            if t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("genome"):  # interrupted: queued again
                assert [r for r in trials if r.system_attrs.get("failed_trial") == t.number]


def test_two_commands_started_at_once_on_one_study_propose_different_genomes(tmp_path):
    from search.space import sample_genome
    from tests.synthetic import SPEC

    first, second = (SearchSettings(**tiny_settings(tmp_path, study="twin")) for _ in range(2))
    studies = [open_study(first), open_study(second)]  # the second command finds the study the first created
    assert first.sampler_salt == 0 and second.sampler_salt != 0
    proposals = [[sample_genome(study.ask(), SPEC, first.limits).genome.hash for _ in range(3)] for study in studies]
    assert proposals[0] != proposals[1]
    again = SearchSettings(**tiny_settings(tmp_path / "again", study="twin"))
    assert [sample_genome(open_study(again).ask(), SPEC, again.limits).genome.hash] == proposals[0][:1]  # seeded as before


def test_a_ctrl_c_swallowed_by_a_finalizer_is_raised_at_the_next_safe_point():
    """Python discards an exception raised in a weakref callback ("Exception ignored in ..."): a Ctrl-C whose handler
    ran there was lost (seen: sqlalchemy's registry cleanup during the first seconds of a search)."""
    import gc
    import weakref

    from search.interrupts import HeldSignals, acknowledge_lost, keep_signals, raise_if_lost

    class Thing:
        pass

    def ctrl_c_inside_a_finalizer() -> None:
        thing = Thing()
        keep = weakref.ref(thing, lambda ref: signal.getsignal(signal.SIGINT)(signal.SIGINT, None))  # noqa: F841
        del thing
        gc.collect()

    old = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        keep_signals()
        ctrl_c_inside_a_finalizer()  # the KeyboardInterrupt is printed as ignored, and would be lost
        with pytest.raises(KeyboardInterrupt):
            raise_if_lost()
        raise_if_lost()  # raised once only
        with HeldSignals() as held:
            with pytest.raises(KeyboardInterrupt):
                with held.raising():
                    ctrl_c_inside_a_finalizer()  # swallowed inside the objective ...
                    with held.raising():  # ... and raised at the next safe point
                        pass
    finally:
        signal.signal(signal.SIGINT, old)
        acknowledge_lost()
