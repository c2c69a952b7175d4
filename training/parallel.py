"""Several independent training runs at once: one single-threaded process per run slot on CPU.

On a CPU, two single-threaded processes train ~1.2-1.6x the images per second of one two-threaded
process (a single-threaded run trains in channels_last, which does not scale to a second thread:
BENCHMARKS.md), so the final evaluation's runs (finalists x seeds) go through ``train_many``.
Four or more seeds of one genome train seed-batched (``training.seedbatch``), at most three to a process:
1.07-1.22x the seed-images per second of one process per seed; six to a process, or fewer seeds, did not win
(BENCHMARKS.md, "seed-batched training").
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

__all__ = ["EXIT_UNKNOWN", "TrainingProcessError", "available_memory_gib", "exit_code", "join_process", "pid_running",
           "pid_start_time", "process_context", "schedule", "start_process_server", "stop_process", "train_many",
           "waves"]

# What every worker process needs before its first step; torch.optim imports torch._dynamo (~1 s) lazily, at
# the first optimizer.
_PRELOAD = ("torch", "torch._dynamo", "training.engine")
SEEDS_PER_PROCESS = 3  # the most seeds one process trains as one model (6 lost to 3: BENCHMARKS.md)
MIN_BATCHED_SEEDS = 4  # fewer seeds of a genome train one per process (3 as 2 + 1 did not win)
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


def _seed_groups(jobs: Sequence[tuple[Genome, Any]]) -> list[list[int]]:
    """Runs of consecutive job indices with one genome and configs that differ in their seed only."""
    groups: list[list[int]] = []
    for index, (genome, config) in enumerate(jobs):
        if groups:
            first_genome, first_config = jobs[groups[-1][0]]
            if first_genome == genome and replace(first_config, seed=0) == replace(config, seed=0):
                groups[-1].append(index)
                continue
        groups.append([index])
    return groups


def schedule(jobs: Sequence[tuple[Genome, Any]], processes: int, device_type: str) -> list[list[list[int]]]:
    """How ``train_many`` runs ``jobs``: waves of units side by side, one process per unit (a wave of one unit trains
    in this process); a unit of several job indices trains seed-batched.

    On CPU with ``processes`` > 1, a genome's ``MIN_BATCHED_SEEDS`` or more seeds split into balanced units of at most
    ``SEEDS_PER_PROCESS``, a multiple of ``processes`` of them. The other runs go one per process, as many as fill
    every process, then the odd ones out, one at a time."""
    if processes <= 1 or device_type != "cpu":
        return [[[i]] for i in range(len(jobs))]
    from training.seedbatch import batchable

    plan: list[list[list[int]]] = []
    singles: list[int] = []
    for group in _seed_groups(jobs):
        if len(group) < MIN_BATCHED_SEEDS or batchable(*jobs[group[0]]) is not None:
            singles += group
            continue
        n, count = len(group), processes * -(-len(group) // (processes * SEEDS_PER_PROCESS))
        bounds = [-(-u * n // count) for u in range(count + 1)]  # balanced, the larger units first
        units = [group[bounds[u]:bounds[u + 1]] for u in range(count)]
        plan += [units[u:u + processes] for u in range(0, count, processes)]
    side = len(singles) - len(singles) % processes
    plan += [[[i] for i in singles[w:w + processes]] for w in range(0, side, processes)]
    return plan + [[[i]] for i in singles[side:]]


def waves(jobs: Sequence[tuple[Genome, Any]], processes: int, device_type: str) -> list[list[int]]:
    """The job indices that train side by side (``schedule``), wave by wave."""
    return [[i for unit in wave for i in unit] for wave in schedule(jobs, processes, device_type)]


def train_many(jobs: Sequence[tuple[Genome, Any]], splits: Any, processes: int = 1,
               on_epoch: Callable[[int, Any], None] | None = None) -> Iterator[tuple[int, Any]]:
    """Train each ``(genome, TrainConfig)`` of ``jobs`` on ``splits``; yields ``(job index, TrainResult)`` as runs end.

    ``processes`` > 1 on CPU: that many single-threaded processes (``process_context``) take the units of
    ``schedule`` in order (a run gives the same result as ``train`` with one thread; a seed-batched one, the same up
    to rounding and its dropout draws); waves of a single unit, and every job otherwise, train here one after another
    with this process's threads: a lone single-threaded run would leave cores idle. ``on_epoch(index, metrics)`` sees
    every epoch in this process. Closing the iterator, Ctrl-C included, stops the processes.
    """
    plan = schedule(jobs, processes, splits.device.type)
    side_by_side = [unit for wave in plan if len(wave) > 1 for unit in wave]
    if side_by_side:
        yield from _in_processes(jobs, side_by_side, splits, processes, on_epoch)
    for unit in (wave[0] for wave in plan if len(wave) == 1):  # these train here, with all of this process's threads
        yield from zip(unit, _train_unit(unit, jobs[unit[0]][0], splits, [jobs[i][1] for i in unit], on_epoch))


def _train_unit(unit: list[int], genome: Genome, splits: Any, configs: list[Any],
                on_epoch: Callable[[int, Any], None] | None, progress: bool | None = None) -> list[Any]:
    """One unit of ``schedule``: a lone run (``train``) or its seeds as one model (``train_seeds``); ``on_epoch`` gets
    the job index (``unit``'s) with each epoch."""
    from training.engine import train
    from training.seedbatch import train_seeds

    if len(unit) > 1:
        return train_seeds(genome, splits, configs,
                           on_epoch=(lambda k, m: on_epoch(unit[k], m)) if on_epoch else None)
    return [train(genome, splits, configs[0], progress=progress,
                  on_epoch=(lambda m: on_epoch(unit[0], m)) if on_epoch else None)]


def _in_processes(jobs: Sequence[tuple[Genome, Any]], units: list[list[int]], splits: Any, processes: int,
                  on_epoch: Callable[[int, Any], None] | None) -> Iterator[tuple[int, Any]]:
    import torch

    from blocks import build_model

    ctx = process_context()
    todo, done = ctx.Queue(), ctx.Queue()
    for unit in units:
        todo.put((unit, jobs[unit[0]][0].to_string(), [jobs[i][1] for i in unit]))
    for _ in range(processes):
        todo.put(None)
    procs = [ctx.Process(target=_run_jobs, args=(splits, todo, done), daemon=True) for _ in range(processes)]
    for p in procs:
        p.start()
    pending = {i for unit in units for i in unit}
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

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    parent = multiprocessing.parent_process()

    def report(index: int, metrics: Any) -> None:
        if parent is not None and not parent.is_alive():  # the command was killed: stop, do not train on for nobody
            os._exit(1)
        done.put(("epoch", index, metrics))

    while (job := todo.get()) is not None:
        unit, genome, configs = job
        try:
            results = _train_unit(unit, Genome.from_string(genome), splits, configs, report, progress=False)
        except Exception as e:  # the parent names the run and stops
            done.put(("error", unit[0], f"{type(e).__name__}: {e}".splitlines()[0][:300]))
            return
        for index, result in zip(unit, results):
            state = io.BytesIO()  # bytes, not shared-memory tensors: this process may be gone when they are read
            torch.save({k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}, state)
            done.put(("done", index, (replace(result, model=None), state.getvalue())))
