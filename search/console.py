"""The console every line of the command goes through (rich; no torch or optuna imported)."""

from __future__ import annotations

import os
import sys

from rich.console import Console

__all__ = ["make_console"]


def make_console() -> Console:
    """On a terminal, rich's shared console (so the training progress bar and log lines share one live
    display, and lines wrap at word boundaries); into a file or pipe (CI logs, tee), a wide console that
    wraps nothing mid-token, as wide as ``COLUMNS`` says (200 when it says nothing)."""
    if sys.stdout.isatty():
        from rich import get_console
        return get_console()
    columns = os.environ.get("COLUMNS", "")
    return Console(soft_wrap=True, width=int(columns) if columns.isdigit() and int(columns) >= 40 else 200)
