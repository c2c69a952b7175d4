"""Several independent training runs at once: one single-threaded process per run slot on CPU.

On a CPU, two single-threaded processes train ~1.2-1.6x the images per second of one two-threaded
process (a single-threaded run trains in channels_last, which does not scale to a second thread:
BENCHMARKS.md), so the final evaluation's runs (finalists x seeds) go through ``train_many``.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import queue
import signal
import sys
import time
from dataclasses import replace
from typing import Any, Callable, Iterator, Sequence

from blocks import BudgetNASError, Genome

__all__ = ["EXIT_UNKNOWN", "TrainingProcessError", "available_memory_gib", "exit_code", "waves", "join_process", "pid_running", "pid_start_time",
           "process_context", "start_process_server", "stop_process", "train_many"]

# What every worker process needs before its first step; torch.optim imports torch._dynamo (~1 s) lazily, at
# the first optimizer.
_PRELOAD = ("torch", "torch._dynamo", "training.engine")
EXIT_UNKNOWN = 255  # multiprocessing's exit code for a process whose fork server died before it could tell
_POLL_S = 0.2


class TrainingProcessError(BudgetNASError):
    """A training process died or failed (its run's result is lost; finished runs were already returned)."""


def process_context(preload: Sequence[str] = ()) -> Any:
    """The multiprocessing context for worker processes: a fork server on Linux, spawn elsewhere.

    The server imports torch, ``training.engine`` and ``preload`` once; each process then forks from it with
    those imports done (about 0.1 s to start instead of ~3 s for a spawned interpreter). The server never
    computes, so a child inherits no thread pool, CUDA context or open storage. Not on macOS, where forking a
    process that has loaded Apple's frameworks is unsafe (Python's own default there is spawn).
    """
    if sys.platform != "linux":
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    # Applies when the server starts; a running server keeps its own list.
    ctx.set_forkserver_preload(["training._server_signals", *_PRELOAD, *preload, "training._server_exit"])
    return ctx


def start_process_server(preload: Sequence[str] = ()) -> None:
    """Start the fork server now (``process_context``), so that its imports run beside this process's own start-up."""
    ctx = process_context(preload)
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), [] where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def available_memory_gib() -> float | None:
    """MemAvailable of /proc/meminfo in GiB, None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return None


def pid_start_time(pid: int) -> str:
    """Process ``pid``'s start time in clock ticks since boot (Linux), '' where /proc is not available."""
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 else ""


def pid_running(pid: int) -> bool:
    """True while process ``pid`` of this host runs (a zombie, which a container without an init may never reap,
    has ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _stat(pid)[:1] != ["Z"]


def exit_code(process: Any) -> int | None:
    """``process.exitcode``, but None while a process whose fork server has died still runs.

    When the server dies, multiprocessing reads every child's exit code as ``EXIT_UNKNOWN`` at once although the
    children run on (they are reparented); such a child is followed by its pid here, and ``EXIT_UNKNOWN`` is its
    exit code once it has ended.
    """
    code = process.exitcode
    if code == EXIT_UNKNOWN and process.pid is not None and pid_running(process.pid):
        return None
    return code


def join_process(process: Any) -> int:
    """Wait for ``process`` to end, even when its fork server dies first; returns ``exit_code``."""
    process.join()
    while (code := exit_code(process)) is None:
        time.sleep(_POLL_S)
    return code


def stop_process(process: Any) -> None:
    """SIGTERM ``process`` if it still runs, also when its fork server has died (multiprocessing then thinks it ended)."""
    if process.exitcode is None:
        process.terminate()
    elif exit_code(process) is None:
        os.kill(process.pid, signal.SIGTERM)


def waves(count: int, processes: int, device_type: str) -> list[list[int]]:
    """How ``train_many`` runs ``count`` jobs: the job indices that train side by side, wave by wave (as many as fill
    every process), then the odd ones out, one at a time."""
    side = count - count % processes if processes > 1 and device_type == "cpu" else 0
    return [list(range(i, i + processes)) for i in range(0, side, processes)] + [[i] for i in range(side, count)]


def train_many(jobs: Sequence[tuple[Genome, Any]], splits: Any, processes: int = 1,
               on_epoch: Callable[[int, Any], None] | None = None) -> Iterator[tuple[int, Any]]:
    """Train each ``(genome, TrainConfig)`` of ``jobs`` on ``splits``; yields ``(job index, TrainResult)`` as runs end.

    ``processes`` > 1 on CPU: that many single-threaded processes (``process_context``) take the jobs in order,
    as many as fill every process to the end (a run gives the same result as ``train`` with one thread); the rest, and
    every job otherwise, train here one after another with this process's threads: a lone single-threaded run
    would leave cores idle. ``on_epoch(index, metrics)`` sees every epoch in this process. Closing the iterator,
    Ctrl-C included, stops the processes.
    """
    from training.engine import train

    side_by_side = sum(len(wave) for wave in waves(len(jobs), processes, splits.device.type) if len(wave) > 1)
    if side_by_side:
        yield from _in_processes(jobs[:side_by_side], splits, processes, on_epoch)
    for index in range(side_by_side, len(jobs)):  # the odd ones out train here, with all of this process's threads
        genome, config = jobs[index]
        yield index, train(genome, splits, config, on_epoch=(lambda m, i=index: on_epoch(i, m)) if on_epoch else None)


def _in_processes(jobs: Sequence[tuple[Genome, Any]], splits: Any, processes: int,
                  on_epoch: Callable[[int, Any], None] | None) -> Iterator[tuple[int, Any]]:
    import torch

    from blocks import build_model

    ctx = process_context()
    todo, done = ctx.Queue(), ctx.Queue()
    for index, (genome, config) in enumerate(jobs):
        todo.put((index, genome.to_string(), config))
    for _ in range(processes):
        todo.put(None)
    procs = [ctx.Process(target=_run_jobs, args=(splits, todo, done), daemon=True) for _ in range(processes)]
    for p in procs:
        p.start()
    pending = set(range(len(jobs)))
    try:
        while pending:
            codes = [exit_code(p) for p in procs]
            dead = [c for c in codes if c not in (None, 0, EXIT_UNKNOWN)]
            try:
                kind, index, payload = done.get(timeout=1.0 if not dead and None in codes else _POLL_S)
            except queue.Empty:
                if dead or None not in codes:  # nothing more can come
                    code = dead[0] if dead else next((c for c in codes if c), 0)
                    raise TrainingProcessError(f"a training process died (exit code {code}); "
                                               f"{len(pending)} run(s) not finished") from None
                continue
            if kind == "epoch":
                if on_epoch is not None:
                    on_epoch(index, payload)
            elif kind == "error":
                raise TrainingProcessError(f"run {index}: {payload}")
            else:
                result, state = payload
                model = build_model(jobs[index][0])
                model.load_state_dict(torch.load(io.BytesIO(state), weights_only=True))
                pending.discard(index)
                yield index, replace(result, model=model.eval())
    finally:
        for p in procs:
            stop_process(p)
        for p in procs:
            p.join(timeout=30)


def _run_jobs(splits: Any, todo: Any, done: Any) -> None:
    """A training process: one thread; Ctrl-C is the parent's to handle (it terminates this process)."""
    import torch

    from training.engine import train

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    parent = multiprocessing.parent_process()

    def report(index: int, metrics: Any) -> None:
        if parent is not None and not parent.is_alive():  # the command was killed: stop, do not train on for nobody
            os._exit(1)
        done.put(("epoch", index, metrics))

    while (job := todo.get()) is not None:
        index, genome, config = job
        try:
            result = train(Genome.from_string(genome), splits, config, progress=False,
                           on_epoch=lambda m, index=index: report(index, m))
        except Exception as e:  # the parent names the run and stops
            done.put(("error", index, f"{type(e).__name__}: {e}".splitlines()[0][:300]))
            return
        state = io.BytesIO()  # bytes, not shared-memory tensors: this process may be gone when they are read
        torch.save({k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}, state)
        done.put(("done", index, (replace(result, model=None), state.getvalue())))
