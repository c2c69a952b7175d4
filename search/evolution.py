"""Regularized (aging) evolution as an Optuna sampler, for define-by-run spaces such as ``search.space``.

Real et al., "Regularized Evolution for Image Classifier Architecture Search" (AAAI 2019): the population is
the ``population`` most recently trained trials; a child copies the best of ``tournament`` of them drawn at
random, with one sampled decision mutated. Old trials leave the population however good they were, which
keeps a lucky, noisy evaluation from steering the search for long.

A trial's fitness orders trials by how far they got, then by their last value: a complete trial ranks by its
objective value, a pruned one by the accuracy it reported at its last rung (so a design pruned at the 3-epoch
rung beats one pruned at the 1-epoch rung). Rejected proposals (over the limits) never join the population.
Until the population has ``startup`` members, decisions are sampled at random.

The mutation works on the sampled decisions, not on genomes: the parent's value of every decision this trial
asks for is copied, except one, drawn at trial start among the parent's decisions, which moves: a categorical
to another choice, a number by one to three steps of its range. A decision the parent never made (a third
stage when the parent had two) is sampled at random.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

__all__ = ["EvolutionSampler"]

_TRAINED = ("complete", "reused", "pruned")  # user attribute ``status`` of trials that join the population


class EvolutionSampler(optuna.samplers.BaseSampler):
    """Aging evolution over a define-by-run search space, for single-objective studies; injected like any
    Optuna sampler."""

    def __init__(self, population: int = 20, tournament: int = 5, startup: int = 10, seed: int | None = None) -> None:
        if not 1 <= tournament <= population or not 1 <= startup <= population:
            raise ValueError(f"EvolutionSampler: need 1 <= tournament ({tournament}) <= population ({population}) "
                             f"and 1 <= startup ({startup}) <= population")
        self.population, self.tournament, self.startup = population, tournament, startup
        self._rng = np.random.RandomState(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._plans: dict[int, tuple[FrozenTrial, str] | None] = {}  # trial id -> (parent, the decision to mutate)

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        parent = self.select_parent(study.get_trials(deepcopy=False))
        if parent is None or not parent.params:
            self._plans[trial._trial_id] = None
            return
        mutated = sorted(parent.params)[self._rng.randint(len(parent.params))]
        self._plans[trial._trial_id] = (parent, mutated)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._plans.pop(trial._trial_id, None)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        plan = self._plans.get(trial._trial_id)
        if plan is None:
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        parent, mutated = plan
        if param_name not in parent.params or parent.distributions[param_name] != param_distribution:
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        value = parent.params[param_name]
        return self.mutate(value, param_distribution) if param_name == mutated else value

    def select_parent(self, trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
        """The best of ``tournament`` members drawn from the population (the newest trained trials), or None
        while there are fewer than ``startup`` of them."""
        members = [t for t in trials if _fitness(t) is not None][-self.population:]
        if len(members) < self.startup:
            return None
        drawn = self._rng.choice(len(members), size=min(self.tournament, len(members)), replace=False)
        return max((members[i] for i in drawn), key=lambda t: (_fitness(t), -t.number))

    def mutate(self, value: Any, distribution: BaseDistribution) -> Any:
        """Another value of ``distribution`` near ``value``: another choice, or one to three steps away."""
        if isinstance(distribution, CategoricalDistribution):
            others = [c for c in distribution.choices if c != value]
            return others[self._rng.randint(len(others))] if others else value
        if isinstance(distribution, (IntDistribution, FloatDistribution)):
            step = distribution.step or (distribution.high - distribution.low) / 10  # (a log scale moves linearly)
            moves = [k * sign for k in (1, 2, 3) for sign in (-1, 1)
                     if distribution.low <= value + k * sign * step <= distribution.high]
            if not moves:
                return value
            moved = value + moves[self._rng.randint(len(moves))] * step
            return int(moved) if isinstance(distribution, IntDistribution) else float(round(moved, 10))
        raise TypeError(f"EvolutionSampler: no mutation for {type(distribution).__name__}")


def _fitness(trial: FrozenTrial) -> tuple[float, float] | None:
    """(how far the trial got, its value there), larger is better; None for trials outside the population."""
    status = trial.user_attrs.get("status")  # set by ``search.runner``; a plain Optuna study has none
    if status is not None and status not in _TRAINED:
        return None
    if trial.state == TrialState.COMPLETE and trial.value is not None:
        return math.inf, trial.value
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        step = max(trial.intermediate_values)
        return float(step), trial.intermediate_values[step]
    return None
