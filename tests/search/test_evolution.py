import optuna
import pytest
from optuna.trial import TrialState

from blocks import InputSpec
from budgets import Limits
from search.evolution import EvolutionSampler
from search.settings import make_sampler
from search.space import sample_genome

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _onemax(trial: optuna.Trial) -> float:
    """Ten decisions; the score counts the right ones (a separable problem local search must climb)."""
    return float(sum(trial.suggest_categorical(f"x{i}", list(range(5))) == 3 for i in range(8))
                 + (trial.suggest_int("w", 8, 40, step=2) == 30) + (trial.suggest_float("f", 0.8, 1.0, step=0.05) == 0.9))


def _best(sampler: optuna.samplers.BaseSampler, trials: int = 80) -> float:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(_onemax, n_trials=trials)
    return study.best_value


def test_evolution_climbs_where_random_sampling_does_not():
    evolved = [_best(EvolutionSampler(seed=s)) for s in range(4)]
    drawn = [_best(optuna.samplers.RandomSampler(seed=s)) for s in range(4)]
    assert sum(evolved) / 4 >= sum(drawn) / 4 + 1, (evolved, drawn)


def test_a_child_is_its_parent_with_one_decision_moved():
    sampler = EvolutionSampler(population=10, tournament=3, startup=5, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(_onemax, n_trials=5)
    trial = study.ask()
    parent, mutated = sampler._plans[trial._trial_id]
    assert parent.number < 5
    _onemax(trial)
    changed = [name for name in parent.params if trial.params[name] != parent.params[name]]
    assert changed == [mutated]
    assert sorted(parent.params) == sorted(trial.params)


def test_startup_is_random_and_the_population_is_the_newest_trained_trials():
    sampler = EvolutionSampler(population=3, tournament=3, startup=2, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    assert sampler.select_parent(study.get_trials()) is None
    for value, status in [(9.0, "complete"), (1.0, "rejected"), (2.0, "complete"), (3.0, "complete"), (4.0, "reused")]:
        trial = study.ask()
        trial.set_user_attr("status", status)
        study.tell(trial, value)
    # trial 0 (9.0) has aged out, trial 1 was rejected: the best of the newest three trained is trial 4
    assert sampler.select_parent(study.get_trials()).number == 4


def test_a_pruned_trial_ranks_by_the_rung_it_reached():
    sampler = EvolutionSampler(population=5, tournament=2, startup=1, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for rungs in ({1: 99.0}, {1: 90.0, 3: 95.0}):
        trial = study.ask()
        trial.set_user_attr("status", "pruned")
        for step, value in rungs.items():
            trial.report(value, step)
        study.tell(trial, state=TrialState.PRUNED)
    assert sampler.select_parent(study.get_trials()).number == 1  # got to the 3-epoch rung


def test_the_search_space_evolves_into_valid_genomes():
    study = optuna.create_study(direction="maximize", sampler=make_sampler("evolution", 1))
    spec, limits = InputSpec(1, 28, 28, 10), Limits(max_params=3000)
    genomes = []

    def objective(trial: optuna.Trial) -> float:
        fitted = sample_genome(trial, spec, limits)
        trial.set_user_attr("status", "complete")
        genomes.append(fitted.genome)
        return -abs(sum(layer.out or 0 for layer in fitted.genome.layers) - 60)

    study.optimize(objective, n_trials=30)
    assert len({g.hash for g in genomes}) > 10
    assert all(g.layers for g in genomes)


def test_bad_tournament_is_refused():
    with pytest.raises(ValueError, match="tournament"):
        EvolutionSampler(population=4, tournament=5)
