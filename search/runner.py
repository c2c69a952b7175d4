"""The search loop: sample -> check analytically -> (claim a slot) -> train -> record.

Each trial's user attributes carry ``status`` (rejected | training | complete | pruned | diverged |
oom | reused | skipped), ``genome``, ``hash``, ``params``, ``rf``, ``macs`` and, once trained,
``val_acc``, ``best_epoch``, ``epochs``, ``seconds``, ``device``, ``seed``, ``history``. A rejected
proposal is told to the sampler as infeasible (``constraints`` > 0) and does not count toward
``--trials``; several workers share the count through the study, so the study ends with exactly
``--trials`` trained trials.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from dataclasses import replace
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from blocks import GenomeError
from budgets import check
from search.settings import SearchSettings, open_study
from search.space import sample_genome, sample_hparams
from training import EpochMetrics, Splits, TrainConfig, load_splits, resolve_device, train

__all__ = ["COUNTED", "Objective", "finalize", "run_search", "run_worker", "score", "trained_count"]

COUNTED = ("training", "complete", "pruned", "diverged", "oom", "reused")  # statuses that use up a trial
_WAIT_FOR_PEERS_S = 30.0


def score(val_acc: float, params: int, target: float | None, budget: int | None) -> float:
    """Single-objective value: val accuracy; above ``target`` it becomes target + (1 - params/budget)
    so the sampler goes on looking for smaller models that still meet the target."""
    if target is None or val_acc < target:
        return val_acc
    return target + (1.0 - params / budget if budget else 0.0)


def trained_count(trials: list[optuna.trial.FrozenTrial], upto: int | None = None) -> int:
    """Trials that used up a slot (optionally only those numbered <= ``upto``); failed ones do not count."""
    return sum(1 for t in trials if t.state != TrialState.FAIL and t.user_attrs.get("status") in COUNTED
               and (upto is None or t.number <= upto))


def _set_constraint(trial: Any, value: float) -> None:
    """``> 0`` marks the trial infeasible for TPE / NSGA-II. A retried trial already carries its value."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The constraint value is ignored")
        trial.set_constraint("budget", value)


class Objective:
    """The Optuna objective; testable with ``optuna.trial.FixedTrial`` when ``study`` is None."""

    def __init__(self, settings: SearchSettings, splits: Splits, study: optuna.Study | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.settings, self.splits, self.study, self.log = settings, splits, study, log
        self.limits = settings.limits

    def _infeasible(self, trial: Any, reasons: list[str], constraint: float) -> Any:
        trial.set_user_attr("status", "rejected")
        trial.set_user_attr("reasons", "; ".join(reasons))
        _set_constraint(trial, constraint)
        return (0.0, float(trial.user_attrs.get("params", 0))) if self.settings.multi_objective else 0.0

    def __call__(self, trial: Any) -> Any:
        s = self.settings
        try:
            genome, scale = sample_genome(trial, self.splits.spec, self.limits, repair=s.repair)
            verdict = check(genome, self.limits)
        except GenomeError as e:  # the space produced a structurally invalid design
            return self._infeasible(trial, [str(e)], 1.0)
        for key, value in (("genome", genome.to_string()), ("hash", genome.hash), ("params", verdict.params),
                           ("rf", verdict.receptive_field), ("macs", verdict.macs), ("width_scale", scale)):
            trial.set_user_attr(key, value)
        if not verdict.ok:
            overshoot = max(verdict.params / s.budget - 1 if s.budget else 0.0, 1e-3)
            return self._infeasible(trial, list(verdict.violations), overshoot)
        _set_constraint(trial, 0.0)
        trial.set_user_attr("status", "training")
        if self.study is not None:
            if not self._claim_slot(trial):
                trial.set_user_attr("status", "skipped")
                self.study.stop()
                raise optuna.TrialPruned("trial budget already used by other workers")
            reused = self._previous_result(trial, genome.hash)
            if reused is not None:
                return reused
        config = TrainConfig(**{"epochs": s.epochs, "seed": s.seed, "device": s.device, **s.train_overrides,
                                **(sample_hparams(trial) if s.tune_hparams else {})})

        def on_epoch(m: EpochMetrics) -> str | None:
            if s.multi_objective or self.study is None:
                return None
            trial.report(m.val_acc, m.epoch)
            last = m.epoch >= config.epochs  # a finished run is kept, whatever the pruner thinks
            return "pruned" if not last and trial.should_prune() else None

        result = train(genome, self.splits, config, on_epoch=on_epoch)
        val_acc = result.best_val_acc or 0.0
        for key, value in (("status", result.status), ("val_acc", val_acc), ("best_epoch", result.best_epoch),
                           ("epochs", len(result.epochs)), ("seconds", round(result.seconds, 2)),
                           ("device", result.device), ("seed", result.seed),
                           ("history", [m.val_acc for m in result.epochs]), ("train_config", result.config)):
            trial.set_user_attr(key, value)
        if result.status == "pruned":
            raise optuna.TrialPruned()
        if s.multi_objective:
            return val_acc, float(verdict.params)
        return score(val_acc, verdict.params, s.target, s.budget)

    def _claim_slot(self, trial: Any) -> bool:
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

    def _previous_result(self, trial: Any, genome_hash: str) -> Any:
        """The value of an earlier complete trial of the same genome, reused without training."""
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get("hash") == genome_hash and t.user_attrs.get("status") == "complete":
                for key in ("val_acc", "best_epoch", "epochs", "history", "device", "seed"):
                    trial.set_user_attr(key, t.user_attrs.get(key))
                trial.set_user_attr("status", "reused")
                trial.set_user_attr("reused_from", t.number)
                trial.set_user_attr("seconds", 0.0)
                self.log(f"trial {trial.number}: same genome as trial {t.number}, result reused")
                return tuple(t.values) if self.settings.multi_objective else t.value
        return None


def _load_data(settings: SearchSettings, worker: int) -> Splits:
    device = resolve_device(settings.device)
    if device.type == "cuda" and settings.workers > 1:
        import torch
        device = torch.device("cuda", worker % torch.cuda.device_count())
    splits = load_splits(settings.dataset, settings.data_dir, device=device, val_size=settings.val_size)
    return splits.subset(settings.train_subset, seed=settings.seed)


def run_worker(settings: SearchSettings, worker: int = 0, splits: Splits | None = None,
               log: Callable[[str], None] | None = None) -> int:
    """One worker process: optimise until the study has ``settings.trials`` trained trials or time runs out.

    Returns the number of trials this worker trained. Ctrl-C propagates after the current trial is failed.
    """
    from reports.leaderboard import write_leaderboard

    log = log or (lambda line: print(line, flush=True))
    if settings.workers > 1:
        import torch
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // settings.workers))
    study = open_study(settings, worker)
    splits = splits if splits is not None else _load_data(settings, worker)
    objective = Objective(settings, splits, study, log)
    mine = rejected_in_a_row = 0
    start = time.monotonic()
    target_seen = False

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal mine, target_seen, rejected_in_a_row
        trials = study.get_trials(deepcopy=False)
        attrs = trial.user_attrs
        status = attrs.get("status", "failed")
        if status in COUNTED and status != "reused":
            mine += 1
        rejected_in_a_row = rejected_in_a_row + 1 if status == "rejected" else 0
        if rejected_in_a_row >= settings.max_rejections_in_a_row:
            log(f"[w{worker}] stopping: the last {rejected_in_a_row} proposals were all over the limits "
                f"({attrs.get('reasons')}); loosen --budget / --min-rf / --max-macs")
            study.stop()
        done = trained_count(trials)
        rejected = sum(1 for t in trials if t.user_attrs.get("status") == "rejected")
        best = max((t.user_attrs.get("val_acc") or 0.0 for t in trials), default=0.0)
        val = attrs.get("val_acc")
        detail = attrs.get("reasons") if status == "rejected" else (f"val {val:.2f}%" if val is not None else "")
        log(f"[w{worker}] trial {trial.number} {status}: {attrs.get('params', 0):,} params {detail} | "
            f"trained {done}/{settings.trials}, rejected {rejected}, best val {best:.2f}%")
        if settings.target is not None and val is not None and val >= settings.target and not target_seen:
            target_seen = True
            log(f"target {settings.target}% reached by trial {trial.number} with {attrs['params']:,} params")
            if settings.stop_at_target:
                study.stop()
        write_leaderboard(study, settings)
        if done >= settings.trials:
            study.stop()

    if trained_count(study.get_trials(deepcopy=False)) < settings.trials:
        study.optimize(objective, n_trials=None, timeout=settings.timeout, callbacks=[after_trial],
                       gc_after_trial=False, catch=())
    log(f"[w{worker}] done: trained {mine} trial(s) in {time.monotonic() - start:.0f} s")
    return mine


def _worker_entry(settings: SearchSettings, worker: int) -> None:
    try:
        run_worker(settings, worker)
    except KeyboardInterrupt:
        pass


def run_search(settings: SearchSettings) -> optuna.Study:
    """Run ``settings.workers`` local workers on one study (processes when > 1) and return the study."""
    from reports.leaderboard import write_leaderboard

    study = open_study(settings)  # creates it and checks a resumed one before any worker starts
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    (settings.run_dir / "settings.json").write_text(json.dumps(settings.to_dict(), indent=1))
    try:
        if settings.workers == 1:
            run_worker(settings, 0)
        else:
            ctx = multiprocessing.get_context("spawn")
            procs = [ctx.Process(target=_worker_entry, args=(replace(settings), i), daemon=False)
                     for i in range(settings.workers)]
            for p in procs:
                p.start()
            try:
                for p in procs:
                    p.join()
            except KeyboardInterrupt:
                for p in procs:
                    p.join(timeout=60)
                raise
    finally:
        write_leaderboard(study, settings)
    return study


def finalize(settings: SearchSettings, top_k: int, epochs: int, seeds: list[int],
             log: Callable[[str], None] = print, splits: Splits | None = None) -> dict:
    """Retrain the top ``top_k`` ranked trials on the full training set over ``seeds``; test-set results go
    to ``finals.json`` (merged into the leaderboard) and artifacts to ``<run_dir>/final/trial<N>/``."""
    from blocks import Genome
    from reports.final import final_evaluation, write_artifacts
    from reports.leaderboard import load_finals, save_finals, trials_frame, write_leaderboard

    study = open_study(settings)
    df = trials_frame(study, settings.target)
    top = df[df["rank"].notna()].head(top_k)
    if top.empty:
        log("final evaluation: no trained trial to evaluate")
        return {}
    full = splits if splits is not None else load_splits(settings.dataset, settings.data_dir,
                                                         device=resolve_device(settings.device), val_size=0)
    finals = load_finals(settings.run_dir)
    base = TrainConfig(device=settings.device, **settings.train_overrides)
    for _, row in top.iterrows():
        trial = int(row["trial"])
        genome = Genome.from_string(row["genome"])
        log(f"final evaluation of rank {int(row['rank'])} (trial {trial}, {int(row['params']):,} params): "
            f"{epochs} epochs x {len(seeds)} seed(s) on the full training set")
        results: list = []
        final = final_evaluation(genome, full, epochs, seeds, base, log=log, keep_models=results)
        write_artifacts(settings.run_dir / "final" / f"trial{trial}", genome, final, results, full)
        finals[str(trial)] = final.summary(settings.target)
        save_finals(settings.run_dir, finals)
        write_leaderboard(study, settings)
    return finals
