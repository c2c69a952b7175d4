"""Ctrl-C and SIGTERM in a worker, taken only where no trial can be left half-made.

Optuna creates a trial (``study.ask``) and records its result outside the objective. An interrupt that lands
there would leave the trial RUNNING with no owner, until a heartbeat's grace ran out. While ``HeldSignals`` is
active the handlers hold such a signal back; the objective takes it (``raising``), so an interrupted trial is
always one the objective fails and queues again, or none at all.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

__all__ = ["HeldSignals"]


class HeldSignals:
    """Hold SIGINT / SIGTERM while active, except inside ``raising()``; the held one is raised by its own handler
    at the next ``raising()`` or on exit. Only Python-level handlers are wrapped (an ignored signal stays ignored),
    and only in the main thread (elsewhere this does nothing)."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self.signals = signals
        self.previous: dict[int, Callable[..., Any]] = {}
        self.pending: int | None = None
        self.depth = 0  # inside raising()

    def __enter__(self) -> "HeldSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                handler = signal.getsignal(sig)
                if callable(handler):
                    self.previous[sig] = handler
                    signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}
        if exc[0] is None:
            self.take()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.depth:
            self.previous[signum](signum, frame)
        elif self.pending is None:
            self.pending = signum

    def take(self) -> None:
        """Raise a held signal now, through its own handler (KeyboardInterrupt, say)."""
        if self.pending is not None:
            signum, self.pending = self.pending, None
            handler = self.previous.get(signum) or signal.getsignal(signum)
            if callable(handler):
                handler(signum, None)

    @contextmanager
    def raising(self) -> Iterator[None]:
        """Signals raise at once in here; one held before raises on entry."""
        self.depth += 1
        try:
            self.take()
            yield
        finally:
            self.depth -= 1
