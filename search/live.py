"""The search's live status on a terminal: one line per worker and an overall line, under the log lines.

    with SearchDisplay(console, workers=2, trials=50) as display:
        display.update(0, {"trial": 3, "stage": "1-epoch rung", "epoch": 1, "epochs": 1, "val": 97.1})
        display.log("[w0] trial 3 pruned: ...")

Built on rich's ``Live``: log lines print above the status lines, which are cut with an ellipsis rather than
wrapped, so nothing collides at any width. Worker processes send ``("log", line)`` and ``("state", worker, state)``
through a pipe (``forward``); this module imports neither torch nor optuna.
"""

from __future__ import annotations

import threading
import time
from multiprocessing.connection import Connection, wait
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from search.plan import format_duration

__all__ = ["SearchDisplay"]


class SearchDisplay:
    """Per-worker state (trial, stage, epoch x/y, validation accuracy so far) and the overall progress: trained / total,
    the search's ETA and the total ETA with the final evaluation (``final_seconds``, the plan's estimate)."""

    def __init__(self, console: Console, workers: int, trials: int, search_seconds: float | None = None,
                 final_seconds: float = 0.0) -> None:
        self.console, self.trials = console, trials
        self.search_seconds, self.final_seconds = search_seconds, final_seconds
        self.states: dict[int, dict[str, Any]] = {i: {} for i in range(workers)}
        self.overall: dict[str, Any] = {}
        self.finals: dict[str, Any] | None = None  # the final phase (``start_finals``), else None
        self.start = time.monotonic()
        self.lock = threading.Lock()
        self.live = Live(self, console=console, refresh_per_second=2, transient=True, redirect_stdout=False,
                         redirect_stderr=False)

    def __enter__(self) -> "SearchDisplay":
        self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.stop()

    def set_plan(self, search_seconds: float, final_seconds: float) -> None:
        """The plan's estimates, used until the first trial has finished."""
        self.search_seconds, self.final_seconds = search_seconds, final_seconds

    def start_finals(self, planned_epochs: int, processes: int) -> None:
        """The final evaluation begins: ``planned_epochs`` epochs at most (finalists x seeds x epochs), trained
        ``processes`` at a time; the status lines follow each run from now on (``final_epoch``)."""
        with self.lock:
            self.finals = {"planned": planned_epochs, "processes": max(processes, 1), "done": 0, "seconds": 0.0,
                           "runs": {}, "start": time.monotonic()}

    def final_epoch(self, trial: int, seed: int, epoch: int, epochs: int, test_acc: float | None,
                    seconds: float) -> None:
        """A final run finished an epoch: its line, and the final phase's ETA (epochs left x the mean epoch time
        so far / the processes)."""
        with self.lock:
            if self.finals is None:
                return
            self.finals["runs"][(trial, seed)] = (epoch, epochs, test_acc)
            self.finals["done"] += 1
            self.finals["seconds"] += seconds
            if epoch == epochs:
                self.finals["runs"].pop((trial, seed), None)

    def log(self, line: str) -> None:
        """A log line, printed above the status lines."""
        self.console.print(line, markup=False, highlight=False)

    def update(self, worker: int, state: dict[str, Any]) -> None:
        """Worker ``worker``'s state (keys: trial, stage, epoch, epochs, val), or with ``done``: the overall progress
        (done, eta_s: the search's ETA in seconds)."""
        with self.lock:
            if "done" in state:
                self.overall = {**state, "at": time.monotonic()}
            else:
                self.states[worker] = state

    def forward(self, readers: dict[int, Connection], stop: threading.Event) -> threading.Thread:
        """A thread that passes the worker processes' pipe messages on to ``log`` and ``update`` until ``stop``."""

        def run() -> None:
            open_readers = dict(readers)
            while open_readers and not stop.is_set():
                for conn in wait(list(open_readers.values()), timeout=0.2):
                    try:
                        message = conn.recv()
                    except (EOFError, OSError):
                        open_readers = {i: c for i, c in open_readers.items() if c is not conn}
                        continue
                    if message[0] == "log":
                        self.log(message[1])
                    else:
                        self.update(message[1], message[2])

        thread = threading.Thread(target=run, name="display", daemon=True)
        thread.start()
        return thread

    def _final_lines(self) -> list[str]:
        finals = self.finals
        out = [f"trial {trial} seed {seed}  epoch {epoch}/{epochs}" + (f"  test {acc:.2f}%" if acc is not None else "")
               for (trial, seed), (epoch, epochs, acc) in sorted(finals["runs"].items())]
        now = time.monotonic()
        left = max(finals["planned"] - finals["done"], 0)
        eta = (format_duration(left * finals["seconds"] / finals["done"] / finals["processes"]) if finals["done"]
               else "after the first epoch")
        out.append(f"final evaluation: {finals['done']}/{finals['planned']} epochs at most (fewer when a verdict "
                   f"is decided)  {format_duration(now - finals['start'])} elapsed  ETA {eta}")
        return out

    def lines(self) -> list[str]:
        """The status lines as plain text."""
        with self.lock:
            if self.finals is not None:
                return self._final_lines()
            states, overall = dict(self.states), dict(self.overall)
        out = []
        for worker, s in states.items():
            if not s:
                out.append(f"w{worker}  starting")
                continue
            epochs = f"  epoch {s.get('epoch', 0)}/{s['epochs']}" if s.get("epochs") else ""
            val = f"  val {s['val']:.2f}%" if s.get("val") is not None else ""
            trial = f"trial {s['trial']}  " if "trial" in s else ""
            out.append(f"w{worker}  {trial}{s.get('stage', '')}{epochs}{val}")
        now = time.monotonic()
        if overall:
            search_left = max(overall["eta_s"] - (now - overall["at"]), 0.0)
            done = overall["done"]
        else:
            search_left = max(self.search_seconds - (now - self.start), 0.0) if self.search_seconds else None
            done = 0
        total = (f"search ETA {format_duration(search_left)}  total ETA {format_duration(search_left + self.final_seconds)}"
                 + (" (with finals)" if self.final_seconds else "") if search_left is not None
                 else "ETA after the first trial")
        out.append(f"trained {done}/{self.trials}  {format_duration(now - self.start)} elapsed  {total}")
        return out

    def __rich__(self) -> Group:
        lines = self.lines()
        return Group(*(Text(line, no_wrap=True, overflow="ellipsis", style="dim" if i < len(lines) - 1 else "bold")
                       for i, line in enumerate(lines)))
