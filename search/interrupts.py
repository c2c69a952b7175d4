"""Ctrl-C and SIGTERM in a worker, taken only where no trial can be left half-made.

Optuna creates a trial (``study.ask``) and records its result outside the objective. An interrupt that lands
there would leave the trial RUNNING with no owner, until a heartbeat's grace ran out. While ``HeldSignals`` is
active the handlers hold such a signal back; the objective takes it (``raising``), so an interrupted trial is
always one the objective fails and queues again, or none at all.

A signal is also kept until its exception is acknowledged: Python discards an exception raised inside a weakref
callback or ``__del__`` ("Exception ignored in ..."), and a Ctrl-C whose handler ran there would be lost. Such a
signal is raised again at the next ``raising()`` or on exit. ``raise_if_lost`` does the same for the command.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

__all__ = ["HeldSignals", "acknowledge_lost", "keep_signals", "raise_if_lost"]


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
        self.pending = signum  # kept until acknowledged: a KeyboardInterrupt raised inside a finalizer is lost
        if self.depth:
            self.previous[signum](signum, frame)

    def acknowledge(self) -> None:
        """The held signal's exception was caught (and is being handled): it need not be raised again."""
        self.pending = None

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


_received: list[tuple[int, Callable[..., Any]]] = []  # (signal, its handler) whose exception may have been lost


def keep_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
    """Wrap this process's Python-level handlers of ``signals`` so that a signal is remembered until
    ``acknowledge_lost``; main thread only (elsewhere, and for ignored signals, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        return
    _quiet_lost_interrupts()
    for sig in signals:
        handler = signal.getsignal(sig)
        if callable(handler) and not getattr(handler, "keeps_signal", False):
            def remembered(signum: int, frame: Any, handler: Callable[..., Any] = handler) -> None:
                _received.append((signum, handler))
                handler(signum, frame)
            remembered.keeps_signal = True  # type: ignore[attr-defined]
            signal.signal(sig, remembered)


def _quiet_lost_interrupts() -> None:
    """A Ctrl-C or SIGTERM that lands inside a finalizer or weakref callback is swallowed there, and Python prints
    "Exception ignored in: ..." with a traceback. It is remembered (``keep_signals``) and raised again at the next
    safe point (``raise_if_lost``), so that printout is noise: this hook drops it, and passes any other unraisable
    exception to the hook it replaces."""
    import sys

    previous = sys.unraisablehook
    if getattr(previous, "quiets_interrupts", False):
        return

    def hook(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            previous(unraisable)
    hook.quiets_interrupts = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def acknowledge_lost() -> None:
    """Every signal received so far has been handled (its exception was caught)."""
    _received.clear()


def raise_if_lost() -> None:
    """Raise, through its own handler, a signal whose exception was swallowed where it was raised (a finalizer);
    called at points the command reaches only when no interrupt propagated."""
    if _received:
        signum, handler = _received[-1]
        _received.clear()
        handler(signum, None)
