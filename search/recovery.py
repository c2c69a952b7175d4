"""Trials whose worker is gone: found by owner (host, pid and process start time), failed and retried.

Every trial records its owner as soon as it starts. A RUNNING trial whose owner is a process of this
host that no longer exists (or whose pid now belongs to a newer process) is an orphan: it is failed
and re-queued with the same parameters, at once, by the next worker or rerun on this host. Trials of
other hosts are left to the storage's heartbeat (failed after ``--grace`` seconds without one).
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from training.parallel import pid_running, pid_start_time

__all__ = ["OWNER_KEY", "fail_orphans", "is_orphan", "local_pid", "owner_token", "retry_trial", "runs_here"]

OWNER_KEY = "owner"  # user attribute: "<host>:<pid>:<start time>"
_MAX_RETRIES = 2


def owner_token(pid: int | None = None) -> str:
    """This process (or ``pid`` on this host) as ``host:pid:start``."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{pid_start_time(pid)}"


def _local_owner(owner: str | None) -> tuple[int, str] | None:
    """(pid, start time) of ``owner`` when it names a process of this host, else None."""
    host, _, rest = (owner or "").partition(":")
    pid_text, _, start = rest.partition(":")
    return (int(pid_text), start) if host == socket.gethostname() and pid_text.isdigit() else None


def local_pid(owner: str | None) -> int | None:
    """The pid that ``owner`` names when it is a process of this host, else None."""
    local = _local_owner(owner)
    return local[0] if local else None


def is_orphan(owner: str | None) -> bool:
    """True when ``owner`` names a process of this host that is gone."""
    local = _local_owner(owner)
    if local is None:
        return False
    pid, start = local
    if not pid_running(pid):
        return True
    return bool(start) and pid_start_time(pid) not in ("", start)  # the pid was reused by a newer process


def runs_here(owner: str | None) -> bool:
    """True when ``owner`` names a live process of this host."""
    return local_pid(owner) is not None and not is_orphan(owner)


def retry_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queue a failed trial again with the same parameters (at most twice), without its owner.

    Also the storage's heartbeat callback for stale trials of other hosts.
    """
    system_attrs: dict[str, Any] = {"failed_trial": trial.number, "retry_history": [], **trial.system_attrs}
    system_attrs["retry_history"] = [*system_attrs["retry_history"], trial.number]
    if len(system_attrs["retry_history"]) > _MAX_RETRIES:
        return
    user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in (OWNER_KEY, "status")}
    study.add_trial(optuna.create_trial(state=TrialState.WAITING, params=trial.params,
                                        distributions=trial.distributions, user_attrs=user_attrs,
                                        system_attrs=system_attrs))


def fail_orphans(study: optuna.Study, log: Callable[[str], None] = print) -> list[int]:
    """Fail and retry every RUNNING trial whose worker on this host is gone; returns their numbers."""
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if is_orphan(trial.user_attrs.get(OWNER_KEY)):
            try:
                study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            except RuntimeError:  # finished or failed meanwhile by another worker
                continue
            retry_trial(study, trial)
            failed.append(trial.number)
    if failed:
        log(f"retrying trial(s) {', '.join(map(str, failed))}: their worker on this host is gone")
    return failed
