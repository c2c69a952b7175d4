"""Entry points for worker subprocesses in tests (importable under the spawn start method)."""

import os
import signal

from search.runner import run_worker
from search.settings import SearchSettings
from tests.synthetic import tiny_splits


def tiny_worker(settings: dict, worker: int) -> None:
    run_worker(SearchSettings(**settings), worker, splits=tiny_splits(), log=lambda line: None)


def tiny_settings(tmp_path, **overrides) -> dict:
    base = dict(budget=3000, dataset="mnist", trials=3, epochs=1, out=str(tmp_path), study="tiny", pruner="none",
                sampler="random", device="cpu", train_overrides={"batch_size": 64, "lr": 0.05})
    base.update(overrides)
    return base


class KillForkServerOnce:
    """A search callback: in a worker process, after its first trial, SIGKILLs the process's parent (the fork server)."""

    def __init__(self) -> None:
        self.command_pid = os.getpid()
        self.done = False

    def __call__(self, study, trial) -> None:
        if os.getpid() != self.command_pid and not self.done:
            self.done = True
            os.kill(os.getppid(), signal.SIGKILL)
