"""The search loop: propose -> check analytically -> claim a slot -> train -> record.

Each trial's user attributes carry ``status`` (rejected | training | complete | pruned | diverged |
oom | reused | skipped), ``owner`` (host:pid:start of its worker), ``genome``, ``hash``, ``params``,
``rf``, ``macs`` and, once trained, ``val_acc``, ``best_epoch``, ``epochs``, ``seconds``, ``device``,
``seed``, ``history``. A rejected proposal is told to the sampler as infeasible (``constraints`` > 0)
and does not count toward ``--trials``, nor does a proposal of a genome already trained (its result
is reused). Several workers share the count through the study, so the study ends with exactly
``--trials`` distinct trained genomes; a trial whose worker died is failed and retried
(``search.recovery``).

The search knows nothing of reports: whoever runs it attaches Optuna-style callbacks
(``callbacks=[fn(study, frozen_trial)]``), e.g. the CLI's leaderboard writer.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, replace
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import TrialState

from blocks import BudgetNASError, Genome, GenomeError
from budgets import Limits, Verdict, check, totals

from search.console import make_console
from search.interrupts import HeldSignals
from search.plan import format_duration, rung_epochs
from search.descent import SizeRange, size_range
from search.ranking import score
from search.recovery import OWNER_KEY, fail_orphans, is_orphan, local_pid, owner_token, retry_trial, runs_here
from search.settings import WORKER_MODULES, SearchError, SearchSettings, StorageFailure, open_study, storage_failure
from search.space import narrow_to_limits, sample_genome, sample_hparams
from training import EpochMetrics, Splits, TrainConfig, TrainResult, load_splits, resolve_device, train
from training.parallel import EXIT_UNKNOWN, join_process, process_context, stop_process

__all__ = ["TRAINED", "Callback", "Objective", "TrainFn", "WorkerProgress", "enqueue_genomes", "run_search",
           "run_worker", "search_eta", "trained_count"]

TRAINED = ("training", "complete", "pruned", "diverged", "oom")  # statuses that use up a trial
_LIVE = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)  # not failed, not waiting for a retry
_WAIT_FOR_PEERS_S = 30.0
_TWIN_POLL_S = 0.5  # how often a trial waiting for its twin looks at the study
ENQUEUED_KEY = "enqueued"  # user attribute of a queued warm-start trial: its genome string

Callback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]
TrainFn = Callable[..., TrainResult]  # train(genome, splits, config, on_epoch=...) -> TrainResult


def trained_count(trials: list[optuna.trial.FrozenTrial], upto: int | None = None) -> int:
    """Distinct genomes trained or in training (optionally by trials numbered <= ``upto``).

    Failed trials, trials waiting for a retry, rejected and reused ones do not count.
    """
    return len({t.user_attrs.get("hash") or f"#{t.number}" for t in trials
                if t.state in _LIVE and t.user_attrs.get("status") in TRAINED and (upto is None or t.number <= upto)})


def _set_constraint(trial: Any, value: float) -> None:
    """``> 0`` marks the trial infeasible for TPE / NSGA-II. A retried trial already carries its value."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The constraint value is ignored")
        trial.set_constraint("budget", value)


def _set_attrs(trial: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        trial.set_user_attr(key, value)


class _Infeasible(Exception):
    def __init__(self, reasons: list[str], constraint: float) -> None:
        super().__init__("; ".join(reasons))
        self.reasons, self.constraint = reasons, constraint


class Objective:
    """The Optuna objective; testable with ``optuna.trial.FixedTrial`` when ``study`` is None.

    ``train_fn`` is the trainer (``training.train`` by default), injected like Optuna's samplers so
    that benchmarks and tests can replace training with a stand-in.
    """

    def __init__(self, settings: SearchSettings, splits: Splits, study: optuna.Study | None = None,
                 log: Callable[[str], None] = print, train_fn: TrainFn = train, held: HeldSignals | None = None,
                 report: Callable[[dict], None] | None = None) -> None:
        self.settings, self.splits, self.study, self.log, self.train_fn = settings, splits, study, log, train_fn
        self.report = report  # the worker's state for a live display (search.live): trial, stage, epoch, val
        self.limits = settings.limits
        self.held = held  # the worker's held Ctrl-C / SIGTERM: taken in here, where the trial can be failed cleanly
        self.last_span: SizeRange | None = None  # the size range of the last proposal (``size_span``)

    def __call__(self, trial: Any) -> Any:
        trial.set_user_attr(OWNER_KEY, owner_token())
        with self.held.raising() if self.held is not None else nullcontext():
            try:
                return self.evaluate(trial)
            except KeyboardInterrupt:
                if self.held is not None:
                    self.held.acknowledge()
                self.requeue(trial)
                raise

    def requeue(self, trial: Any) -> None:
        """Queue an interrupted trial again with the same genome (``retry_trial``), as a killed one is, unless
        ``settings.retry_interrupted`` is off. A trial interrupted before it had a genome leaves nothing to redo."""
        if self.study is None or not self.settings.retry_interrupted or "genome" not in trial.user_attrs:
            return
        retry_trial(self.study, self.study._storage.get_trial(trial._trial_id))
        self.log(f"trial {trial.number} interrupted; queued again with the same genome for the next run")

    def evaluate(self, trial: Any) -> Any:
        """Propose, check, claim a slot, train and record one trial (``__call__`` without the interrupt handling)."""
        try:
            genome, verdict = self.propose(trial)
        except _Infeasible as e:
            return self.reject(trial, e)
        if self.study is not None:
            if not self.claim(trial):
                trial.set_user_attr("status", "skipped")
                self.study.stop()
                raise optuna.TrialPruned("trial budget already used by other workers")
            self.wait_for_twin(trial, genome.hash)
            reused = self.reuse(trial, genome.hash)
            if reused is not None:
                return reused
        return self.record(trial, verdict, self.train(trial, genome))

    def propose(self, trial: Any) -> tuple[Genome, Verdict]:
        """Sample a genome and check it; raises ``_Infeasible`` for one over the limits."""
        try:
            enqueued = trial.user_attrs.get(ENQUEUED_KEY)
            if enqueued:  # a warm start (--enqueue): taken as it is, not sampled
                genome, scale, widths = Genome.from_string(enqueued), 1.0, {}
            else:
                span = self.size_span()
                genome, scale, widths = sample_genome(trial, self.splits.spec, self.limits,
                                                      repair=self.settings.repair, span=span)
                if span is not None:
                    trial.set_user_attr("size_range", [span.low, span.high])
            verdict = check(genome, self.limits)
        except GenomeError as e:  # the space produced a structurally invalid design
            raise _Infeasible([str(e)], 1.0) from None
        _set_attrs(trial, {"genome": genome.to_string(), "hash": genome.hash, "params": verdict.params,
                           "rf": verdict.receptive_field, "macs": verdict.macs, "ram": verdict.ram,
                           "flash": verdict.flash, "width_scale": scale,
                           **{f"{name}_fitted": width for name, width in widths.items()}})
        if not verdict.ok:
            budget = self.settings.budget
            raise _Infeasible(list(verdict.violations), max(verdict.params / budget - 1 if budget else 0.0, 1e-3))
        _set_constraint(trial, 0.0)
        trial.set_user_attr("status", "training")
        return genome, verdict

    def size_span(self) -> SizeRange | None:
        """The params range of the next proposal (``search.descent.size_range``) from this study's trials trained at
        full fidelity; said once whenever it changes."""
        s = self.settings
        finished = []
        if self.study is not None and s.target is not None:
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                a = t.user_attrs
                if (a.get("status") == "complete" and a.get("epochs") == s.epochs
                        and a.get("images") == len(self.splits.train_y) and a.get("val_acc") is not None):
                    finished.append((a["params"], a["val_acc"]))
        span = size_range(s.budget, s.target, finished)
        if span is not None and span != self.last_span and self.last_span is not None:
            self.log(f"sizes: {span.why}; proposals now fitted to {span.low:,}-{span.high:,} params")
        self.last_span = span
        return span

    def reject(self, trial: Any, infeasible: _Infeasible) -> Any:
        _set_attrs(trial, {"status": "rejected", "reasons": "; ".join(infeasible.reasons)})
        _set_constraint(trial, infeasible.constraint)
        return (0.0, float(trial.user_attrs.get("params", 0))) if self.settings.multi_objective else 0.0

    def claim(self, trial: Any) -> bool:
        """True if this trial is within ``--trials``: waits until lower-numbered trials have been classified."""
        deadline = time.monotonic() + _WAIT_FOR_PEERS_S
        while True:
            trials = self.study.get_trials(deepcopy=False)
            pending = [t for t in trials if t.number < trial.number and t.state == TrialState.RUNNING
                       and "status" not in t.user_attrs]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return trained_count(trials, upto=trial.number) <= self.settings.trials

    def wait_for_twin(self, trial: Any, genome_hash: str) -> None:
        """Wait while a live worker of this host has the same genome in a lower-numbered trial.

        Its result is then reused (or its rungs replayed) instead of training the genome twice side by side.
        A twin owned by another host is not waited for: its worker's liveness is not visible from here.
        """
        waiting_for = None
        while True:
            twins = [t.number for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                     if t.number < trial.number and t.user_attrs.get("hash") == genome_hash
                     and runs_here(t.user_attrs.get(OWNER_KEY))]
            if not twins:
                return
            if waiting_for != twins[0]:
                waiting_for = twins[0]
                self.log(f"trial {trial.number}: same genome as trial {waiting_for}, which another worker is "
                         "training; waiting for its result")
            time.sleep(_TWIN_POLL_S)

    def reuse(self, trial: Any, genome_hash: str) -> Any:
        """The value of an earlier complete trial of the same genome, reused without training."""
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get("hash") == genome_hash and t.user_attrs.get("status") == "complete":
                _set_attrs(trial, {key: t.user_attrs.get(key) for key in
                                   ("val_acc", "best_epoch", "epochs", "images", "history", "device", "seed")})
                _set_attrs(trial, {"status": "reused", "reused_from": t.number, "seconds": 0.0})
                self.log(f"trial {trial.number}: same genome as trial {t.number}, result reused")
                return tuple(t.values) if self.settings.multi_objective else t.value
        return None

    def _run(self, trial: Any, genome: Genome, config: TrainConfig, stage: str,
             on_epoch: Callable[[EpochMetrics], str | None] | None = None) -> TrainResult:
        """``train_fn`` on one run of the trial. With ``report`` (a live display), the run's state after each epoch,
        and no progress bar of the engine's own. Without it (plain log lines), a run of more than one epoch says how
        its first went and how long the rest will take, so that a long first run (no pruner, inline rungs) is not
        silent for minutes."""
        report = self.report

        def each_epoch(m: EpochMetrics) -> str | None:
            if report is not None:
                report({"trial": trial.number, "stage": stage, "epoch": m.epoch, "epochs": config.epochs,
                        "val": m.val_acc})
            elif m.epoch == 1 and config.epochs > 1:
                val = f"val {m.val_acc:.2f}%" if m.val_acc is not None else f"train {m.train_acc:.2f}%"
                self.log(f"trial {trial.number}: {stage} epoch 1/{config.epochs}: {val} ({m.seconds:.0f} s; "
                         f"~{format_duration(m.seconds * (config.epochs - 1))} to the end of the run)")
            return on_epoch(m) if on_epoch is not None else None

        if report is None:
            return self.train_fn(genome, self.splits, config, on_epoch=each_epoch)
        report({"trial": trial.number, "stage": stage, "epoch": 0, "epochs": config.epochs})
        return self.train_fn(genome, self.splits, config, on_epoch=each_epoch, progress=False)

    def train(self, trial: Any, genome: Genome) -> TrainResult:
        """Train, reporting to the pruner; a trial that survives every rung trains ``epochs`` and is kept.

        ``rungs="separate"``: each rung is a short run with its own schedule (``search.plan.rung_epochs``),
        whose final validation accuracy is reported; the full run is not pruned. ``"inline"``: every epoch
        of the full run is reported (none after the last: a finished run is kept).
        """
        s = self.settings
        config = TrainConfig(**{"epochs": s.epochs, "seed": s.seed, "device": s.device, "augment": s.augment,
                                "translate_px": s.translate_px, "metric": s.metric, **s.train_overrides,
                                **(sample_hparams(trial) if s.tune_hparams else {})})
        pruning = s.pruner != "none" and not s.multi_objective and self.study is not None
        if pruning and s.rungs == "separate":
            return self._train_in_rungs(trial, genome, config)

        def on_epoch(m: EpochMetrics) -> str | None:
            if not pruning:
                return None
            trial.report(m.val_acc, m.epoch)
            return "pruned" if m.epoch < config.epochs and trial.should_prune() else None

        return self._run(trial, genome, config, "full run", on_epoch)

    def _train_in_rungs(self, trial: Any, genome: Genome, config: TrainConfig) -> TrainResult:
        spent, epochs_trained, rung_accs, histories = 0.0, 0, {}, {}
        known = self._known_rungs(trial, genome.hash, config)
        rungs = rung_epochs(self.settings.min_epochs, config.epochs)
        for epochs in rungs:
            rung_config = replace(config, epochs=epochs)
            if str(epochs) in known:  # the same genome and recipe ran this rung in an earlier (pruned) trial
                number, history = known[str(epochs)]
                short = _replayed(history, rung_config)
                self.log(f"trial {trial.number}: {epochs}-epoch rung of the same genome as trial {number} reused")
            else:
                short = self._run(trial, genome, rung_config, f"{epochs}-epoch rung")
            spent, epochs_trained = spent + short.seconds, epochs_trained + len(short.epochs)
            trial.set_user_attr("epochs_trained", epochs_trained)  # rung runs included, for the progress line
            if short.status != "complete":
                return replace(short, seconds=spent)
            rung_accs[str(epochs)] = final_acc = short.epochs[-1].val_acc
            histories[str(epochs)] = [m.val_acc for m in short.epochs]
            trial.set_user_attr("rungs", rung_accs)
            trial.set_user_attr("rung_history", histories)
            trial.report(final_acc, epochs)
            if trial.should_prune():  # (the worker's line for the trial follows)
                return replace(short, status="pruned", seconds=spent)
            later = [r for r in rungs if r > epochs]  # promoted: said now, a full run can take a while
            self.log(f"trial {trial.number}: {epochs}-epoch rung val {final_acc:.2f}% -> on to the "
                     + (f"{later[0]}-epoch rung" if later else f"full {config.epochs}-epoch run"))
        full = self._run(trial, genome, config, "full run")
        trial.set_user_attr("epochs_trained", epochs_trained + len(full.epochs))
        return replace(full, seconds=spent + full.seconds)

    def _known_rungs(self, trial: Any, genome_hash: str, config: TrainConfig) -> dict[str, tuple[int, list[float]]]:
        """Rung runs of earlier pruned trials of this genome with the same recipe and training images, by rung epochs.

        A rung run is deterministic (same genome, recipe and seed), so a re-proposed genome whose earlier trial
        was pruned replays its rungs instead of training them again; the pruner then decides afresh. A pruned
        trial's ``train_config`` and ``images`` are those of its rung runs (``record``).
        """
        if self.study is None:
            return {}
        recipe = {k: v for k, v in asdict(config).items() if k != "epochs"}
        known: dict[str, tuple[int, list[float]]] = {}
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)):
            a = t.user_attrs
            if a.get("hash") != genome_hash or not a.get("rung_history"):
                continue
            ran = {k: v for k, v in (a.get("train_config") or {}).items() if k != "epochs"}
            if ran == recipe and a.get("images") == len(self.splits.train_y):
                for epochs, history in a["rung_history"].items():
                    known.setdefault(epochs, (t.number, history))
        return known

    def record(self, trial: Any, verdict: Verdict, result: TrainResult) -> Any:
        val_acc = result.best_val_acc or 0.0
        _set_attrs(trial, {"status": result.status, "val_acc": val_acc, "best_epoch": result.best_epoch,
                           "epochs": len(result.epochs), "images": len(self.splits.train_y),
                           "seconds": round(result.seconds, 2),
                           "device": result.device, "seed": result.seed,
                           "history": [m.val_acc for m in result.epochs], "train_config": result.config})
        if result.status == "pruned":
            raise optuna.TrialPruned()
        if self.settings.multi_objective:
            return val_acc, float(verdict.params)
        return score(val_acc, verdict.params, self.settings.target, self.settings.budget)


def _replayed(history: list[float], config: TrainConfig) -> TrainResult:
    """A rung run rebuilt from its recorded validation accuracies (no training, no time spent)."""
    nan = float("nan")
    epochs = [EpochMetrics(epoch=i, train_loss=nan, train_acc=nan, val_loss=None, val_acc=acc)
              for i, acc in enumerate(history, start=1)]
    return TrainResult(status="complete", epochs=epochs, seconds=0.0, device=config.device, seed=config.seed,
                       params=0, config=asdict(config))


def search_eta(elapsed: float, finished: int, left: int, timeout: float | None = None) -> float:
    """Seconds until the search ends: the pace so far times the trials left, but no later than ``timeout``."""
    eta = elapsed / finished * max(left, 0)
    return min(eta, max(timeout - elapsed, 0.0)) if timeout is not None else eta


class WorkerProgress:
    """The worker's own after-trial callback: counts, one log line per trial, and the stop conditions."""

    # Statuses that, repeated this many times in a row, mean the worker can make no progress: why, what to do.
    _FRUITLESS = {"rejected": "over the limits ({reasons}); loosen --budget / --min-rf / --max-macs",
                  "reused": "genomes trained before; the sampler has converged (raise --budget or start a new --study)"}

    def __init__(self, settings: SearchSettings, worker: int, log: Callable[[str], None], trained_at_start: int,
                 report: Callable[[dict], None] | None = None) -> None:
        self.settings, self.worker, self.log, self.report = settings, worker, log, report
        self.mine = 0  # trials this worker trained
        self.last_status, self.in_a_row = "", 0
        self.target_seen = False
        self.start = time.monotonic()
        self.trained_at_start = trained_at_start  # for the ETA: trials finished before this worker started

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        fail_orphans(study, self.log)  # a sibling worker on this host that died: retry its trial now
        trials = study.get_trials(deepcopy=False)
        status = trial.user_attrs.get("status", "failed")
        if status in TRAINED:
            self.mine += 1
        self.log_trial(trials, trial, status)
        if self.fruitless(status, trial) or self.target_stop(trial) or trained_count(trials) >= self.settings.trials:
            study.stop()

    def log_trial(self, trials: list, trial: optuna.trial.FrozenTrial, status: str) -> None:
        """One line: this trial, then the study's progress (trials, epochs, elapsed, ETA, best so far)."""
        attrs = trial.user_attrs
        rejected = sum(1 for t in trials if t.user_attrs.get("status") == "rejected")
        best = max((t.user_attrs.get("val_acc") or 0.0 for t in trials
                    if t.user_attrs.get("epochs") == self.settings.epochs), default=None)
        val = attrs.get("val_acc")
        detail = attrs.get("reasons") if status == "rejected" else (
            f"val {val:.2f}% after {attrs.get('epochs')} epoch(s)" if val is not None else "")
        done = trained_count(trials)
        epochs = sum(t.user_attrs.get("epochs_trained") or t.user_attrs.get("epochs") or 0 for t in trials
                     if t.user_attrs.get("status") in TRAINED)  # rung runs included
        elapsed = time.monotonic() - self.start
        new = done - self.trained_at_start
        eta_s = search_eta(elapsed, new, self.settings.trials - done, self.settings.timeout) if new > 0 else None
        eta = f", search ETA {format_duration(eta_s)}" if eta_s is not None else ""
        if self.report is not None:
            self.report({"trial": trial.number, "stage": f"{status}, next trial"})
            if eta_s is not None:
                self.report({"done": done, "eta_s": eta_s})
        self.log(f"[w{self.worker}] trial {trial.number} {status}: {attrs.get('params', 0):,} params {detail} | "
                 f"trained {done}/{self.settings.trials} ({epochs} epochs), rejected {rejected}, "
                 + (f"best val at {self.settings.epochs} epochs {best:.2f}%" if best is not None else "no full run yet")
                 + f" | {format_duration(elapsed)} elapsed{eta}")

    def fruitless(self, status: str, trial: optuna.trial.FrozenTrial) -> bool:
        """True after ``max_rejections_in_a_row`` rejected (or reused) proposals in a row; says why."""
        self.in_a_row = self.in_a_row + 1 if status == self.last_status else 1
        self.last_status = status
        if status not in self._FRUITLESS or self.in_a_row < self.settings.max_rejections_in_a_row:
            return False
        why = self._FRUITLESS[status].format(reasons=trial.user_attrs.get("reasons"))
        self.log(f"[w{self.worker}] stopping: the last {self.in_a_row} proposals were all {why}")
        return True

    def target_stop(self, trial: optuna.trial.FrozenTrial) -> bool:
        target, val = self.settings.target, trial.user_attrs.get("val_acc")
        if target is None or val is None or val < target or self.target_seen:
            return False
        self.target_seen = True
        self.log(f"target {target}% reached by trial {trial.number} with {trial.user_attrs['params']:,} params")
        return self.settings.stop_at_target


def enqueue_genomes(study: optuna.Study, genomes: Sequence[Genome], log: Callable[[str], None] = print,
                    limits: Limits | None = None) -> int:
    """Queue known designs to be evaluated first (warm starts); returns how many were queued.

    With ``limits``, a design over them is narrowed to fit (``search.space.narrow_to_limits``: a larger
    budget's winner seeds a smaller budget), or left out, said in the log, when no width fits it. A genome
    already trained in the study, or already waiting in its queue, is not queued again.
    """
    known: dict[str, str] = {}
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING and t.user_attrs.get(ENQUEUED_KEY):
            known[Genome.from_string(t.user_attrs[ENQUEUED_KEY]).hash] = f"queued as trial {t.number}"
        elif t.state != TrialState.FAIL and t.user_attrs.get("status") in (*TRAINED, "reused"):
            known.setdefault(t.user_attrs.get("hash"), f"trained as trial {t.number}")
    queued = 0
    for genome in genomes:
        if limits is not None:
            fitted = narrow_to_limits(genome, limits)
            if fitted is None:
                log(f"--enqueue: {genome.hash} cannot fit {limits.describe()} at any width; not queued")
                continue
            if fitted != genome:
                log(f"--enqueue: {genome.hash} narrowed to fit {limits.describe()}: {totals(genome).params:,} -> "
                    f"{totals(fitted).params:,} params, {fitted.to_string()}")
            genome = fitted
        if genome.hash in known:
            log(f"--enqueue: {genome.hash} is already in the study ({known[genome.hash]}); not queued again")
            continue
        study.enqueue_trial({}, user_attrs={ENQUEUED_KEY: genome.to_string()})
        known[genome.hash] = "queued"
        queued += 1
    return queued


def _load_data(settings: SearchSettings, worker: int) -> Splits:
    device = resolve_device(settings.device)
    if device.type == "cuda" and settings.workers > 1:
        import torch
        device = torch.device("cuda", worker % torch.cuda.device_count())
    splits = load_splits(settings.dataset, settings.data_dir, device=device, val_size=settings.val_size,
                         image_size=settings.image_size,
                         channels=settings.channels)
    return splits.subset(settings.train_subset, seed=settings.seed)


def run_worker(settings: SearchSettings, worker: int = 0, *, study: optuna.Study | None = None,
               splits: Splits | None = None, log: Callable[[str], None] | None = None,
               callbacks: Sequence[Callback] = (), train_fn: TrainFn = train,
               report: Callable[[dict], None] | None = None) -> int:
    """One worker: optimise until the study has ``settings.trials`` trained trials or time runs out.

    ``callbacks`` run after every trial, after the worker's own bookkeeping. ``report`` receives the worker's state
    for a live display (``search.live.SearchDisplay.update``). Returns the number of trials this worker trained.
    Ctrl-C propagates after the current trial is failed.
    """
    log = log or _console_log()
    if settings.threads_per_worker:
        import torch
        torch.set_num_threads(settings.threads_per_worker)
    try:
        study = study or open_study(settings, worker)
        fail_orphans(study, log)
        splits = splits if splits is not None else _load_data(settings, worker)
        held = HeldSignals()
        objective = Objective(settings, splits, study, log, train_fn, held, report)
        trained_before = trained_count(study.get_trials(deepcopy=False))
        progress = WorkerProgress(settings, worker, log, trained_before, report)
        start = time.monotonic()
        if trained_before < settings.trials:
            with held:
                study.optimize(objective, n_trials=None, timeout=settings.timeout, callbacks=[progress, *callbacks],
                               gc_after_trial=False, catch=())
    except Exception as e:
        failure = storage_failure(e, settings.storage_url)
        if failure is None:
            raise
        raise failure from None
    log(f"[w{worker}] done: trained {progress.mine} trial(s) in {time.monotonic() - start:.0f} s")
    if report is not None:
        report({"stage": f"done: trained {progress.mine} trial(s)"})
    return progress.mine


def _console_log() -> Callable[[str], None]:
    """Log lines as plain text (no markup) through the command's console."""
    console = make_console()
    return lambda line: console.print(line, markup=False, highlight=False)


_ORPHAN_POLL_S = 1.0  # how often a worker process looks whether its command is still there


def _worker_entry(settings: SearchSettings, worker: int, callbacks: Sequence[Callback], errors: Any,
                  command: str, events: Any = None) -> None:
    """A worker process: its failure reaches the parent as ``(line, exit code)`` through the pipe ``errors``, and
    a non-zero exit. When the ``command`` (an owner token) is gone, killed say, the worker stops as on SIGTERM:
    its trial is failed and queued again, and no search goes on unseen beside the next run. ``events`` (a pipe to
    the command's live display): its log lines and states go there instead of to stdout."""
    import signal
    import sys

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    threading.Thread(target=_stop_when_gone, args=(command,), name="command watch", daemon=True).start()
    log = report = None
    if events is not None:
        lock = threading.Lock()  # the objective's log and the worker's callback may both send

        def send(message: tuple) -> None:
            with lock:
                try:
                    events.send(message)
                except OSError:  # the command is gone; the command watch stops this worker
                    pass

        log, report = (lambda line: send(("log", line))), (lambda state: send(("state", worker, state)))
    try:
        run_worker(settings, worker, callbacks=callbacks, log=log, report=report)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        errors.send((_failure_line(worker, e), _failure_code(e)))
        sys.exit(1)
    finally:
        errors.close()
        if events is not None:
            events.close()


def _stop_when_gone(command: str) -> None:
    import signal

    while not is_orphan(command):
        time.sleep(_ORPHAN_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)


def _failure_line(worker: int, error: Exception) -> str:
    if isinstance(error, BudgetNASError):
        return f"worker {worker}: {error}"
    if isinstance(error, OSError) and error.filename:  # a full disk writing the leaderboard, say
        return f"worker {worker}: cannot write {error.filename}: {error.strerror or error}"
    return f"worker {worker}: {type(error).__name__}: {error}".splitlines()[0][:300]


def _failure_code(error: Exception) -> int:
    """The exit code a worker's failure asks for: the environment's (1: a full disk, a failed storage) or bad input (2)."""
    return 1 if isinstance(error, OSError) else getattr(error, "exit_code", 2)


def _run_worker_here(settings: SearchSettings, study: optuna.Study, callbacks: Sequence[Callback],
                     splits: Splits | None, display: Any = None) -> None:
    """Worker 0 in this process; the process's CPU thread count is restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    try:
        run_worker(settings, 0, study=study, callbacks=callbacks, splits=splits,
                   **({"log": display.log, "report": lambda state: display.update(0, state)} if display else {}))
    finally:
        torch.set_num_threads(threads)


def _start_processes(procs: Sequence[Any], started: list[tuple[int, Any]], reasons: dict[int, str]) -> None:
    """Start each worker process (numbered from 1) into ``started``; one that cannot start is named in
    ``reasons`` (the others run on)."""
    for i, p in enumerate(procs, start=1):
        try:
            p.start()
        except Exception as e:
            reasons[i] = _failure_line(i, RuntimeError(f"could not start: {type(e).__name__}: {e}"))
        else:
            started.append((i, p))


def _cut_short(study: optuna.Study, pids: dict[int, int]) -> dict[int, str]:
    """Of the workers whose exit code is unknown (their fork server died first), those that left a trial RUNNING:
    they were killed inside it (the next run retries it). One that ended cleanly left none and succeeded."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if pids else []
    lines = {}
    for worker, pid in pids.items():
        left = [t.number for t in running if local_pid(t.user_attrs.get(OWNER_KEY)) == pid]
        if left:
            lines[worker] = (f"worker {worker} ended inside trial {left[0]} (exit code unknown: its fork server "
                             "died first); the next run retries it")
    return lines


def _combined_failure(lines: dict[int, str], codes: dict[int, int], workers: int) -> BudgetNASError:
    """One error for the failed workers: a storage failure (exit code 1) when that is what every one of them met,
    else a ``SearchError`` (2). The same reason from several workers is said once."""
    reasons = {i: line.split(": ", 1)[1] if line.startswith(f"worker {i}: ") else line for i, line in lines.items()}
    if len(set(reasons.values())) == 1 and len(lines) > 1:
        detail = f"workers {', '.join(map(str, sorted(lines)))}: {next(iter(reasons.values()))}"
    else:
        detail = "; ".join(lines[i] for i in sorted(lines))
    error = StorageFailure if set(codes.values()) == {1} else SearchError  # the environment failed, or the input
    return error(f"{len(lines)} of {workers} workers failed: {detail}")


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_search(settings: SearchSettings, study: optuna.Study | None = None,
               callbacks: Sequence[Callback] = (), on_started: Callable[[], None] | None = None,
               splits: Splits | None = None, display: Any = None) -> optuna.Study:
    """Run ``settings.workers`` local workers on one study and return the study.

    With several workers, workers 1.. are processes (``training.parallel.process_context``: forked from a
    server that has imported torch) started first, so that their start-up (loading the data) overlaps
    ``on_started()`` (the CLI's plan, which times a few training steps) and worker 0, which runs in this process with its CPU threads set for the search and restored after.
    The callbacks travel to the worker processes, so they must be picklable (module-level functions or
    instances of module-level classes). A worker that fails does not stop the others; once all have
    ended, ``SearchError`` names each failure. Ctrl-C or SIGTERM stops every worker. ``splits`` (the caller's,
    already loaded and checked) serve worker 0; the processes load their own. ``display`` (a
    ``search.live.SearchDisplay``): every worker's log lines and states go to it, the processes' through pipes.
    """
    study = study or open_study(settings)  # creates it and checks a resumed one before any worker starts
    if settings.workers == 1:
        if on_started is not None:
            on_started()
        _run_worker_here(settings, study, callbacks, splits, display)
        return study
    try:  # found now, not when the last trial is done: the processes are started from a thread
        pickle.dumps((settings, tuple(callbacks)))
    except Exception as e:
        raise TypeError(f"run_search: the callbacks travel to the worker processes and must be picklable "
                        f"(module-level functions or classes): {type(e).__name__}: {e}") from None
    ctx = process_context(preload=WORKER_MODULES)
    pipes = {i: ctx.Pipe(duplex=False) for i in range(1, settings.workers)}  # (read, write); no semaphores to leak
    events = {i: ctx.Pipe(duplex=False) for i in range(1, settings.workers)} if display is not None else {}
    command = owner_token()
    procs = [ctx.Process(target=_worker_entry, args=(replace(settings), i, tuple(callbacks), pipes[i][1], command,
                                                     events[i][1] if events else None),
                         daemon=False) for i in range(1, settings.workers)]
    stop_forwarding = threading.Event()
    forwarder = display.forward({i: read for i, (read, _) in events.items()}, stop_forwarding) if events else None
    reasons: dict[int, str] = {}  # why each failed worker failed, by worker number
    exit_codes: dict[int, int] = {}  # the exit code each failure asks for (a storage failure: 1)
    started: list[tuple[int, Any]] = []  # (worker number, process) of the processes that did start
    # Started from a thread: a fork server still importing torch would otherwise hold up worker 0 here.
    starter = threading.Thread(target=_start_processes, args=(procs, started, reasons), name="start workers",
                               daemon=True)
    starter.start()
    try:
        if on_started is not None:
            on_started()
        try:
            _run_worker_here(settings, study, callbacks, splits, display)
        except Exception as e:  # reported like a worker process's failure, once the others have ended
            reasons[0], exit_codes[0] = _failure_line(0, e), _failure_code(e)
        starter.join()
        codes = {i: join_process(p) for i, p in started}
    except BaseException:  # Ctrl-C reaches the workers too; SIGTERM of this process is passed on
        starter.join()
        for _, p in started:
            stop_process(p)
        for _, p in started:
            p.join(timeout=60)
        raise
    finally:
        for read, write in pipes.values():
            write.close()
        for _, write in events.values():  # the processes have ended: the forwarder reads what is left, then EOF
            write.close()
        if forwarder is not None:
            forwarder.join(timeout=5)
            stop_forwarding.set()
            forwarder.join()
        for read, _ in events.values():
            read.close()
    for i, (read, _) in pipes.items():  # the failed workers' own lines
        try:
            if read.poll():
                reasons[i], exit_codes[i] = read.recv()
        except EOFError:  # it ended without a word: a success, or its exit code says what happened
            pass
        read.close()
    if not reasons and not any(codes.values()):
        return study
    silent = {i: f"worker {i} exit code {code}" for i, code in codes.items()  # e.g. killed
              if code not in (0, EXIT_UNKNOWN) and i not in reasons}
    silent.update(_cut_short(study, {i: p.pid for i, p in started if codes[i] == EXIT_UNKNOWN and i not in reasons}))
    failures = {**reasons, **silent}
    if failures:
        raise _combined_failure(failures, {i: exit_codes.get(i, 2) for i in failures}, settings.workers)
    return study
