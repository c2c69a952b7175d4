import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from blocks import Genome, build_model
from tests.synthetic import TINY_GENOME, tiny_splits
from training import TrainConfig, train
from training.parallel import (EXIT_UNKNOWN, TrainingProcessError, _stat, exit_code, join_process, process_context,
                               schedule, train_many, waves)
from training.seedbatch import train_seeds


def _jobs(seeds):
    return [(TINY_GENOME, TrainConfig(device="cpu", epochs=2, batch_size=32, seed=seed)) for seed in seeds]


@pytest.mark.slow
def test_runs_in_processes_equal_single_threaded_runs_here():
    splits = tiny_splits()
    epochs = []
    results = dict(train_many(_jobs([0, 1, 2]), splits, processes=2, on_epoch=lambda i, m: epochs.append((i, m.epoch))))
    assert sorted(results) == [0, 1, 2] and sorted(epochs) == [(i, e) for i in range(3) for e in (1, 2)]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        here = train(TINY_GENOME, splits, _jobs([1])[0][1], progress=False)
    finally:
        torch.set_num_threads(threads)
    assert [m.test_acc for m in results[1].epochs] == [m.test_acc for m in here.epochs]
    assert [m.train_loss for m in results[1].epochs] == [m.train_loss for m in here.epochs]
    x = splits.test_x[:16].float()
    reference = build_model(TINY_GENOME)
    reference.load_state_dict(here.model.state_dict())
    assert torch.allclose(results[1].model(x), reference.eval()(x), atol=1e-6)


def test_schedule_batches_four_or_more_seeds_of_a_genome_at_most_three_to_a_process():
    assert schedule(_jobs(range(5)), 2, "cpu") == [[[0, 1, 2], [3, 4]]]
    assert schedule(_jobs(range(7)), 2, "cpu") == [[[0, 1], [2, 3]], [[4, 5], [6]]]
    assert schedule(_jobs(range(3)), 2, "cpu") == [[[0], [1]], [[2]]]  # too few seeds: one process each
    assert schedule(_jobs(range(5)), 1, "cpu") == [[[i]] for i in range(5)]
    assert schedule(_jobs(range(5)), 2, "cuda") == [[[i]] for i in range(5)]
    other = (Genome.from_string("i1x12x12n4-conv_c4_k3-gap-conv_c4_k1"), TrainConfig(device="cpu", epochs=2))
    prelu = (Genome.from_string("i1x12x12n4-conv_c8_k3_aprelu-flat-fc_c4"), TrainConfig(device="cpu", epochs=2))
    jobs = _jobs(range(4)) + [other] + [prelu] * 4
    assert schedule(jobs, 2, "cpu") == [[[0, 1], [2, 3]], [[4], [5]], [[6], [7]], [[8]]]
    assert waves(jobs, 2, "cpu")[0] == [0, 1, 2, 3]
    averaged = [(g, replace(c, ema_decay=0.99)) for g, c in _jobs(range(4))]  # train_seeds has no EMA
    assert schedule(averaged, 2, "cpu") == [[[0], [1]], [[2], [3]]]


@pytest.mark.slow
def test_batched_seeds_in_processes_equal_a_seed_batch_here():
    splits = tiny_splits()
    results = dict(train_many(_jobs(range(4)), splits, processes=2))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        here = train_seeds(TINY_GENOME, splits, [config for _, config in _jobs([2, 3])])
    finally:
        torch.set_num_threads(threads)
    assert sorted(results) == [0, 1, 2, 3] and [results[i].seed for i in range(4)] == [0, 1, 2, 3]
    assert [m.train_loss for m in results[3].epochs] == [m.train_loss for m in here[1].epochs]
    x = splits.test_x[:16].float()
    assert torch.allclose(results[3].model(x), here[1].model(x), atol=1e-6)


def test_one_process_trains_here_in_order():
    results = list(train_many(_jobs([0, 1]), tiny_splits(), processes=1))
    assert [i for i, _ in results] == [0, 1] and [r.seed for _, r in results] == [0, 1]


@pytest.mark.slow
def test_a_killed_training_process_is_an_error_and_the_others_stop():
    jobs = [(TINY_GENOME, TrainConfig(device="cpu", epochs=50, batch_size=8, seed=seed)) for seed in (0, 1)]
    runs = train_many(jobs, tiny_splits(), processes=2,
                      on_epoch=lambda i, m: m.epoch == 1 and os.kill(_training_pids()[0], signal.SIGKILL))
    with pytest.raises(TrainingProcessError, match="a training process died"):
        list(runs)
    deadline = time.monotonic() + 30
    while _training_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _training_pids()


def _training_pids() -> list[int]:
    import multiprocessing

    return [p.pid for p in multiprocessing.active_children() if p.is_alive()]


_ORPHAN_SCRIPT = """
import multiprocessing
from tests.synthetic import TINY_GENOME, tiny_splits
from training import TrainConfig
from training.parallel import train_many

def show_pids(index, metrics):
    print("pids", *[p.pid for p in multiprocessing.active_children()], flush=True)

jobs = [(TINY_GENOME, TrainConfig(device="cpu", epochs=5000, batch_size=8, seed=0)) for _ in range(2)]
for _ in train_many(jobs, tiny_splits(), processes=2, on_epoch=show_pids):
    pass
"""


@pytest.mark.slow
def test_training_processes_stop_when_the_command_is_killed():
    """SIGKILL leaves the parent no chance to clean up: the processes notice at their next epoch and exit."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    parent = subprocess.Popen([sys.executable, "-c", _ORPHAN_SCRIPT], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = parent.stdout.readline()
    while line and len(line.split()) < 3:  # until both processes run
        line = parent.stdout.readline()
    children = [int(pid) for pid in line.split()[1:]]
    assert len(children) == 2, line
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 60
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in children)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _imported_in_child(names, queue):
    import sys

    queue.put({name: name in sys.modules for name in names})


@pytest.mark.slow
def test_worker_processes_fork_from_a_server_that_has_imported_torch():
    """A worker process starts with torch and torch._dynamo (the first optimizer's ~1 s import) already loaded,
    from a server that will exit without unloading them (``training._server_exit``)."""
    ctx = process_context()
    if ctx.get_start_method() != "forkserver":
        pytest.skip("no fork server on this platform (spawn)")
    queue = ctx.Queue()
    names = ("torch", "torch._dynamo", "training.engine", "training._server_exit")
    p = ctx.Process(target=_imported_in_child, args=(names, queue))
    p.start()
    try:
        assert queue.get(timeout=120) == dict.fromkeys(names, True)
    finally:
        p.join(timeout=60)
    assert p.exitcode == 0


def test_the_process_helpers_do_not_import_torch():
    """The CLI starts the fork server before it imports torch itself (the two imports then overlap)."""
    code = "import sys, training.parallel; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def _kill_fork_server_then_sleep() -> None:
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(1.0)


def _parent_pid(pid: int) -> int:
    return int(_stat(pid)[1])


def test_a_process_whose_fork_server_died_is_waited_for_by_its_pid():
    ctx = process_context()
    if ctx.get_start_method() != "forkserver":
        pytest.skip("no fork server on this platform")
    p = ctx.Process(target=_kill_fork_server_then_sleep)
    p.start()
    p.join(timeout=30)  # returns when the server dies: multiprocessing reads exit code 255 at once
    assert p.exitcode == EXIT_UNKNOWN and exit_code(p) is None  # ... while the process still sleeps
    assert join_process(p) == EXIT_UNKNOWN
    assert _stat(p.pid)[:1] in ([], ["Z"])  # ended: gone, or a zombie that the new parent has not reaped (yet)


@pytest.mark.slow
def test_training_runs_whose_fork_server_died_still_return_their_results():
    if process_context().get_start_method() != "forkserver":
        pytest.skip("no fork server on this platform")
    killed = []

    def kill_server(index, metrics):
        if not killed:
            killed.append(_parent_pid(_training_pids()[0]))
            os.kill(killed[0], signal.SIGKILL)

    results = dict(train_many(_jobs([0, 1]), tiny_splits(), processes=2, on_epoch=kill_server))
    assert killed and sorted(results) == [0, 1] and all(len(r.epochs) == 2 for r in results.values())
