import os
import signal
import time

import pytest
import torch

from blocks import build_model
from tests.synthetic import TINY_GENOME, tiny_splits
from training import TrainConfig, train
from training.parallel import TrainingProcessError, train_many


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
