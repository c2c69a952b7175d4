"""The console every line of the command goes through (rich; no torch or optuna imported)."""

from __future__ import annotations

import os
import sys

from rich.console import Console

__all__ = ["QUIET_ENV", "is_quiet", "make_console"]

QUIET_ENV = "BUDGETNAS_QUIET"  # set by --quiet, inherited by the worker processes


def is_quiet() -> bool:
    """``--quiet``: only warnings, errors and the run's ending are printed."""
    return os.environ.get(QUIET_ENV) == "1"


def make_console(loud: bool = False) -> Console:
    """On a terminal, rich's shared console (so the training progress bar and log lines share one live
    display, and lines wrap at word boundaries); into a file or pipe (CI logs, tee), a wide console that
    wraps nothing mid-token, as wide as ``COLUMNS`` says (200 when it says nothing). Under ``--quiet`` a console
    that prints nothing, unless ``loud`` (warnings and the ending)."""
    if is_quiet() and not loud:
        return Console(quiet=True)
    if sys.stdout.isatty():
        from rich import get_console
        return get_console()
    columns = os.environ.get("COLUMNS", "")
    return Console(soft_wrap=True, width=int(columns) if columns.isdigit() and int(columns) >= 40 else 200)
