"""Search settings (one dataclass, what the CLI gives) and the study's storage, sampler and pruner."""

from __future__ import annotations

import os
import random
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna

from blocks import BudgetNASError
from budgets import Limits
from search.plan import REDUCTION
from training.shift import MAX_SHIFT_PX, is_shift
from training.parallel import available_memory_gib

__all__ = ["SearchError", "SearchSettings", "StorageFailure", "SAMPLERS", "PRUNERS", "RUNGS", "WORKER_MODULES",
           "check_storage_folder", "cpu_worker_cap", "make_sampler", "make_pruner", "open_study", "redact", "storage_failure", "study_exists"]

SAMPLERS = ("tpe", "nsga2", "random", "evolution")
PRUNERS = ("sha", "median", "hyperband", "none")
RUNGS = ("separate", "inline")  # what a rung measures: a short run with its own schedule, or epochs of the full run
# What a worker process imports before its first trial, for the fork server to import once
# (``training.parallel.process_context``): the worker loop, and the storage modules Optuna loads lazily (~0.4 s).
WORKER_MODULES = ("search.runner", "optuna.storages._rdb.models", "alembic.command", "alembic.config",
                  "alembic.migration", "alembic.script", "sqlalchemy.dialects.sqlite")
# What a lost race between workers creating the same tables / study looks like (then: try again).
_CREATION_RACE = ("already exists", "IntegrityError", "UniqueViolation", "UNIQUE constraint", "duplicate key")
# Study attributes that must match when a study is resumed.
_BEFORE_RECORDED = {"precision": "int8", "image_size": None, "translate_px": 0.0, "channels": "auto",
                    "metric": "accuracy"}  # identity fields added later, as they were before
_IDENTITY = ("dataset", "image_size", "channels", "budget", "min_rf", "max_macs", "max_ram", "max_flash", "precision", "objectives",
             "translate_px", "metric")


class SearchError(BudgetNASError):
    """Bad search input, or a storage that cannot be opened: one readable line, exit code 2."""


class StorageFailure(BudgetNASError):
    """The storage failed during a run (a full disk, a lost server): one line naming it, exit code 1."""

    exit_code = 1


@dataclass
class SearchSettings:
    """Everything one search run needs; recorded in the study so that resumes can be checked."""

    budget: int | None = 8000  # max params
    min_rf: int | str | None = None
    max_macs: int | None = None
    max_ram: int | None = None  # bytes of peak activations, at ``precision``
    max_flash: int | None = None  # bytes of weights, at ``precision``
    precision: str = "int8"
    int8_finals: bool = False  # quantize the finalists to int8, measure them in TFLM, judge the target on that
    target: float | None = None  # validation accuracy, percent
    dataset: str = "mnist"  # a built-in name, or the path of the user's image folder / .npz file
    data_dir: str = "data"
    image_size: str | None = None  # "HxW": the user's images resized once at load
    channels: str = "auto"  # the user's images: auto (colour when any image is), gray or rgb
    metric: str = "accuracy"  # what the validation and test accuracies measure: accuracy or balanced
    augment: str = "auto"  # TrainConfig.augment
    translate_px: float = 0.0  # TrainConfig.translate_px: affine shifts beside the rotation (part of the identity)
    trials: int = 50  # trained trials (rejected proposals do not count)
    timeout: float | None = None  # seconds, per worker
    epochs: int = 15  # the full fidelity: every surviving trial trains this many epochs
    min_epochs: int = 1  # sha / hyperband: the first rung
    sampler: str = "tpe"
    pruner: str = "sha"  # successive halving over epochs: rungs at min_epochs * 3^k, survivors train all epochs
    rungs: str = "separate"  # separate: each rung is its own short run (search.plan.rung_epochs); inline: epochs of one run
    storage: str | None = None  # Optuna storage URL; default sqlite:///<out>/<study>/study.db
    study: str | None = None  # default <dataset>-b<budget>
    workers: int = 1
    device: str = "auto"
    seed: int = 0
    out: str = "runs"
    train_subset: int | None = None
    val_size: int = 5000  # the most validation images carved from the training set
    val_images: int | None = None  # how many it carved (fewer for small data): the ranking's noise band uses it
    tune_hparams: bool = False
    repair: bool = True  # scale widths down to the budget instead of rejecting
    stop_at_target: bool = False
    train_overrides: dict = field(default_factory=dict)  # TrainConfig fields (tests, benchmarks)
    retry_interrupted: bool = True  # a trial stopped by Ctrl-C / SIGTERM is queued again, as a killed one is
    sampler_salt: int = 0  # != 0 when this command joined a study another command created (``open_study``)
    max_rejections_in_a_row: int = 1000  # a worker gives up after this many infeasible proposals in a row
    heartbeat_s: int = 10  # RDB storages: a worker's heartbeat period
    grace_s: int = 30  # a RUNNING trial without heartbeat for this long is failed and retried

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise SearchError(f"unknown sampler {self.sampler!r}; choose from {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise SearchError(f"unknown pruner {self.pruner!r}; choose from {', '.join(PRUNERS)}")
        if self.rungs not in RUNGS:
            raise SearchError(f"unknown --rungs {self.rungs!r}; choose from {', '.join(RUNGS)}")
        for name in ("budget", "max_macs", "max_ram", "max_flash", "trials", "epochs", "min_epochs", "workers", "train_subset", "timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:  # NaN too
                raise SearchError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        if not is_shift(self.translate_px):
            raise SearchError(f"--translate is a shift in pixels in [0, {MAX_SHIFT_PX}], got {self.translate_px}")
        if self.seed is not None and not 0 <= self.seed < 2 ** 32:
            raise SearchError(f"--seed must be in [0, 2**32), got {self.seed}")
        if self.storage is not None and _in_memory(self.storage):
            raise SearchError(f"--storage {self.storage}: an in-memory database is lost when the run ends and worker "
                              "processes cannot share it; give a file (sqlite:///path/study.db) or a server URL")
        if self.target is not None and not 0 < self.target <= 100:
            raise SearchError(f"--target is a validation accuracy in percent (0, 100], got {self.target}")
        for name in ("out", "data_dir"):
            if not str(getattr(self, name)).strip():
                raise SearchError(f"--{name.replace('_', '-')} needs a folder, got an empty string")
        if self.study is None:
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(self.dataset).stem) or "data"  # a path's last part
            self.study = f"{name}-b{self.budget}" if self.budget else name
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.study) or not self.study.strip("."):
            raise SearchError(f"--study {self.study!r}: use letters, digits, '.', '_' and '-' only, not only dots")

    @property
    def limits(self) -> Limits:
        return Limits(max_params=self.budget, min_rf=self.min_rf, max_macs=self.max_macs, max_ram=self.max_ram,
                      max_flash=self.max_flash, precision=self.precision)

    @property
    def threads_per_worker(self) -> int | None:
        """CPU threads of each worker process when there are several (None: leave torch's default)."""
        return max(1, (os.cpu_count() or 1) // self.workers) if self.workers > 1 else None

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / self.study

    @property
    def validation_images(self) -> int:
        """The validation split's size as loaded (``val_images``), else the most it can be (``val_size``)."""
        return self.val_images or self.val_size

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.run_dir / 'study.db').resolve()}"

    @property
    def multi_objective(self) -> bool:
        return self.sampler == "nsga2"

    def identity(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "image_size": self.image_size, "channels": self.channels, "budget": self.budget, "min_rf": self.min_rf, "max_macs": self.max_macs,
                "max_ram": self.max_ram, "max_flash": self.max_flash, "precision": self.precision,
                "objectives": "val_acc,params" if self.multi_objective else "score", "translate_px": self.translate_px,
                "metric": self.metric}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    """The sampler; tpe and nsga2 learn from rejected trials through ``trial.set_constraint``.

    TPE's constant liar counts the trials other workers are running as bad, so parallel workers (the
    default ``--workers auto``) do not propose the same region at once.
    """
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, constant_liar=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
    if name == "evolution":
        from search.evolution import EvolutionSampler
        return EvolutionSampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(name: str, multi_objective: bool, min_epochs: int = 1, epochs: int | None = None
                ) -> optuna.pruners.BasePruner:
    """Epoch-level pruner. ``sha``: asynchronous successive halving, a third of the trials go on at each rung
    (``min_epochs``, x3, x9, ...), so the best trials carry the validation accuracy of the full ``epochs``."""
    if name == "none" or multi_objective:  # Optuna cannot prune multi-objective trials
        return optuna.pruners.NopPruner()
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_epochs, reduction_factor=REDUCTION)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    return optuna.pruners.HyperbandPruner(min_resource=min_epochs, max_resource=epochs or "auto")


def _in_memory(url: str) -> bool:
    return url.startswith("sqlite") and url.split("://", 1)[-1] in ("", "/", "/:memory:")


def study_exists(settings: SearchSettings) -> bool:
    """Whether the study is already in its storage (without creating either)."""
    url = settings.storage_url
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        return False
    try:
        return settings.study in optuna.study.get_all_study_names(storage=url)
    except Exception as e:
        raise SearchError(f"cannot open storage {redact(url)}: {type(e).__name__}: {e}".splitlines()[0][:300]) from None


def cpu_worker_cap() -> tuple[int, str]:
    """How many local worker processes this machine can run well, and why: one per core, ~1 GiB each."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    available = available_memory_gib()
    by_memory = max(1, int(available)) if available is not None else cores
    if by_memory < cores:
        return by_memory, f"{available:.1f} GiB free memory, ~1 GiB per worker"
    return cores, f"{cores} CPU core(s)"


def redact(url: str) -> str:
    """A storage URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _root_cause(error: BaseException) -> BaseException:
    """The driver's own error under SQLAlchemy's and Optuna's wrappers (``orig``, causes, contexts)."""
    from optuna.exceptions import StorageInternalError

    cause = error
    for _ in range(10):
        inner = getattr(cause, "orig", None) or (
            (cause.__cause__ or cause.__context__) if isinstance(cause, StorageInternalError) else None)
        if inner is None:
            break
        cause = inner
    return cause


def _reason(error: BaseException) -> str:
    cause = _root_cause(error)
    return f"{type(cause).__name__}: {(str(cause).splitlines() or [''])[0][:200]}"


def storage_failure(error: BaseException, url: str) -> StorageFailure | None:
    """The one line for an error caused by the storage anywhere in its chain, or None for any other error.

    Optuna sometimes replaces a storage error with its own (a full disk while it records a trial's result ends
    in ``AssertionError: Should not reach.``), so the chain's causes and contexts are searched.
    """
    from optuna.exceptions import StorageInternalError

    seen, todo = set(), [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or isinstance(e, BudgetNASError):  # ours already say what failed
            continue
        seen.add(id(e))
        if type(e).__module__.startswith(("sqlalchemy", "sqlite3", "psycopg")) or isinstance(e, StorageInternalError):
            return StorageFailure(f"storage {redact(url)} failed ({_reason(e)}); completed trials are kept")
        todo += [e.__cause__, e.__context__]
    return None


class _Storage(optuna.storages.RDBStorage):
    """Optuna's RDB storage whose heartbeat thread stays quiet when the storage fails: a missed heartbeat harms
    nothing, and the worker's own next write meets the same error and reports it once (``storage_failure``)."""

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except Exception:
            pass


def _writable_folder(folder: Path) -> None:
    """Refuse a study folder on a read-only file system, by name, before SQLite says something vaguer."""
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return
    if read_only:
        raise SearchError(f"{folder}: the study's folder is on a read-only file system; give --out (or --storage) "
                          "on a writable disk")


def check_storage_folder(settings: SearchSettings) -> None:
    """Refuse an SQLite ``--storage`` whose folder is missing or read-only (SQLite creates no folder), as the real run
    would, so that ``--dry-run`` says it too."""
    url = settings.storage_url
    if not url.startswith("sqlite:///") or _in_memory(url):
        return
    folder = Path(url[len("sqlite:///"):]).parent
    if settings.storage is not None and not folder.is_dir():
        raise SearchError(f"--storage {redact(url)}: the folder {folder} does not exist; create it, or give a path "
                          "in an existing folder")
    _writable_folder(folder if folder.is_dir() else settings.run_dir.parent)


def _storage(settings: SearchSettings) -> optuna.storages.BaseStorage:
    url = settings.storage_url
    if url.startswith("sqlite:///"):
        check_storage_folder(settings)
        try:
            settings.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SearchError(f"cannot create the study's folder {settings.run_dir}: {e.strerror or e}") from None
        _writable_folder(Path(url[len("sqlite:///"):]).parent)
        # isolation_level None: pysqlite issues no BEGIN of its own; _begin_immediate issues every BEGIN
        engine_kwargs: dict = {"connect_args": {"timeout": 60, "isolation_level": None}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    if url.startswith(("sqlite", "postgresql", "mysql")):
        from search.recovery import retry_trial

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # heartbeat options are marked experimental
            storage = _Storage(url, engine_kwargs=engine_kwargs, heartbeat_interval=settings.heartbeat_s,
                                 grace_period=settings.grace_s,
                                 heartbeat_stale_trial_callback=retry_trial)
        if url.startswith("sqlite"):
            _begin_immediate(storage.engine)
        return storage
    return optuna.storages.get_storage(url)


def _begin_immediate(engine: Any) -> None:
    """Make every SQLite transaction take the write lock when it begins (``BEGIN IMMEDIATE``).

    SQLite ignores Optuna's ``SELECT ... FOR UPDATE``, so with deferred transactions two workers can both
    read a queued (``--enqueue``) trial as WAITING and both run it; the second one's result then fails
    with "Cannot tell a COMPLETE trial" (optuna/optuna#4002). Serialising the transactions closes that race.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "begin")
    def begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def open_study(settings: SearchSettings, worker: int = 0) -> optuna.Study:
    """Create or resume the study; a resumed study must have the same dataset, budget and limits."""
    directions = ["maximize", "minimize"] if settings.multi_objective else ["maximize"]
    pruner = make_pruner(settings.pruner, settings.multi_objective, settings.min_epochs, settings.epochs)
    attempts = 6
    for attempt in range(attempts):  # workers starting together race to create the tables / the study
        try:
            storage = _storage(settings)
            try:
                study = optuna.create_study(storage=storage, study_name=settings.study, directions=directions,
                                            pruner=pruner)
                created = True
            except optuna.exceptions.DuplicatedStudyError:
                study = optuna.load_study(storage=storage, study_name=settings.study, pruner=pruner)
                created = False
            break
        except (SearchError, KeyboardInterrupt):
            raise
        except Exception as e:  # sqlalchemy / driver errors: unreachable server, bad URL, missing driver
            reason = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            if any(mark in reason for mark in _CREATION_RACE) and attempt < attempts - 1:
                time.sleep(0.2 + random.random())
                continue
            raise SearchError(f"cannot open storage {redact(settings.storage_url)}: {_reason(e)}") from None
    if not created and worker == 0 and not settings.sampler_salt:
        # Another command's study (or this one's, resumed): a sampler seeded like that command's would propose the
        # same genomes in lockstep with it. The workers this command starts inherit the salt.
        settings.sampler_salt = 1 + int.from_bytes(os.urandom(3), "little")
    done = len(study.get_trials(deepcopy=False))
    seed = None
    if settings.seed is not None:  # a resumed sampler must not replay the proposals it made before
        seed = (settings.seed + worker + 7919 * done + 104729 * settings.sampler_salt) % 2 ** 32
    study.sampler = make_sampler(settings.sampler, seed)
    known = study.user_attrs
    wanted = settings.identity()
    if "dataset" in known:
        recorded = {k: known.get(k, _BEFORE_RECORDED.get(k)) for k in _IDENTITY}  # studies of older versions
        conflicts = [f"{k} {recorded[k]!r} (this run: {wanted[k]!r})" for k in _IDENTITY if recorded[k] != wanted[k]]
        if conflicts:
            raise SearchError(f"study {settings.study!r} in {redact(settings.storage_url)} was created with "
                              f"{'; '.join(conflicts)}; use another --study name")
    else:
        # "dataset" is written last: a worker that sees it sees the whole identity, not a half-written one.
        for key, value in wanted.items():
            if key != "dataset":
                study.set_user_attr(key, value)
        study.set_user_attr("target", settings.target)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental in Optuna, but what optuna-dashboard reads
            study.set_metric_names(metric_names(settings))
        study.set_user_attr("dataset", wanted["dataset"])
    return study


def metric_names(settings: SearchSettings) -> list[str]:
    """What the study's values mean, for optuna-dashboard."""
    if settings.multi_objective:
        return ["val_acc (%)", "params"]
    if settings.target is None:
        return ["val_acc (%)"]
    return [f"score: val_acc (%), above {settings.target} = {settings.target} + 1 - params/budget"]

