"""The run directory's own files (``settings.json``, ``finals.json``, reports): written atomically, read with checks.

A file cut short by a full disk, or edited by hand into something else, gives one ``RunFileError`` line that
names the file and says what to do, instead of a traceback in whichever command reads it next.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from blocks import BudgetNASError

__all__ = ["RunFileError", "atomic_write", "load_finals", "load_settings", "save_finals"]


class RunFileError(BudgetNASError):
    """A run file that cannot be used: one line naming it and what to do, exit code 2."""


def atomic_write(path: str | Path, text: str | bytes) -> None:
    """Write ``text`` (or bytes) to ``path`` all or nothing: a temporary file beside it, then a rename. A failed write
    (a full disk) leaves the old file as it was, removes the temporary one and raises ``OSError`` naming ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None


def _read_json(path: Path, fix: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        reason = "empty" if path.stat().st_size == 0 else f"not readable JSON ({type(e).__name__})"
        raise RunFileError(f"{path}: {reason}; {fix}") from None
    except OSError as e:
        raise RunFileError(f"{path}: cannot read ({e.strerror or e}); {fix}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)  # NaN: every run of a finalist diverged


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# settings.json fields the reports and --reproduce read, and what each must be (None is always allowed).
_SETTINGS_TYPES = {
    "study": (str, "a string"), "dataset": (str, "a string"), "budget": (_is_count, "an integer"),
    "min_rf": (lambda v: _is_count(v) or v == "auto", "an integer or 'auto'"),
    "max_macs": (_is_count, "an integer"), "max_ram": (_is_count, "an integer"), "max_flash": (_is_count, "an integer"),
    "target": (_is_number, "a number"), "trials": (_is_count, "an integer"), "epochs": (_is_count, "an integer"),
    "min_epochs": (_is_count, "an integer"), "sampler": (str, "a string"), "pruner": (str, "a string"),
    "workers": (_is_count, "an integer"), "train_subset": (_is_count, "an integer"), "seed": (_is_count, "an integer"),
    "image_size": (str, "a string"), "channels": (lambda v: v in ("auto", "gray", "rgb"), "auto, gray or rgb"),
    "metric": (lambda v: v in ("accuracy", "balanced"), "accuracy or balanced"), "input": (str, "a string"), "translate_px": (_is_number, "a number"),
    "classes": (lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v), "a list of strings"),
}
_SETTINGS_FIX = "fix or delete it (a search or --finalize on the study writes it again)"


def load_settings(run_dir: str | Path) -> dict:
    """``settings.json`` of a run directory ({} when there is none), its fields checked."""
    path = Path(run_dir) / "settings.json"
    if not path.is_file():
        return {}
    settings = _read_json(path, _SETTINGS_FIX)
    if not isinstance(settings, dict):
        raise RunFileError(f"{path}: expected a JSON object, got {type(settings).__name__}; {_SETTINGS_FIX}")
    for name, (kind, what) in _SETTINGS_TYPES.items():
        value = settings.get(name)
        ok = isinstance(value, kind) if isinstance(kind, type) else kind(value)
        if value is not None and not ok:
            raise RunFileError(f"{path}: field '{name}' must be {what}, got {value!r}; {_SETTINGS_FIX}")
    return settings


_FINALS_FIX = "move or delete it, then run --finalize to evaluate the finalists again"


def _finals_problem(finals: Any) -> str | None:
    """What is wrong with a finals mapping, or None."""
    if not isinstance(finals, dict):
        return f"expected a JSON object of trials, got {type(finals).__name__}"
    for trial, entry in finals.items():
        where = f"trial {trial!r}"
        if not trial.isdigit():
            return f"{where}: the key must be a trial number"
        if not isinstance(entry, dict):
            return f"{where}: expected an object, got {type(entry).__name__}"
        if entry.get("meets_target") not in (None, True, False, "certain", "likely", "no"):
            return f"{where}: field 'meets_target' must be certain, likely, no or null, got {entry.get('meets_target')!r}"
        for name in ("test_acc_low", "seeds_at_target"):
            if entry.get(name) is not None and not _is_number(entry.get(name)):
                return f"{where}: field '{name}' must be a number or null, got {entry.get(name)!r}"
        for name in ("test_acc_mean", "test_acc_std", "test_acc_min"):
            if not _is_number(entry.get(name)) and not (name != "test_acc_mean" and entry.get(name) is None):
                return f"{where}: field '{name}' must be a number, got {entry.get(name)!r}"
        seeds, statuses = entry.get("seeds"), entry.get("statuses", [])
        if not isinstance(seeds, list) or not all(_is_count(s) for s in seeds):
            return f"{where}: field 'seeds' must be a list of integers, got {seeds!r}"
        if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses):
            return f"{where}: field 'statuses' must be a list of strings, got {statuses!r}"
        per_epoch = entry.get("per_epoch_test_acc", [])
        if not isinstance(per_epoch, list) or not all(
                isinstance(run, list) and all(a is None or _is_number(a) for a in run) for run in per_epoch):
            return f"{where}: field 'per_epoch_test_acc' must be a list of lists of numbers"
    return None


def load_finals(run_dir: str | Path) -> dict:
    """``finals.json`` of a run directory: {trial number: final evaluation summary}; {} when there is none."""
    path = Path(run_dir) / "finals.json"
    if not path.is_file():
        return {}
    finals = _read_json(path, _FINALS_FIX)
    problem = _finals_problem(finals)
    if problem:
        raise RunFileError(f"{path}: {problem}; {_FINALS_FIX}")
    return finals


def save_finals(run_dir: str | Path, finals: dict) -> None:
    atomic_write(Path(run_dir) / "finals.json", json.dumps(finals, indent=1))
