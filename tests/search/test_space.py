import optuna
import pytest

from blocks import InputSpec
from budgets import Limits, check
from search.space import fit_to_limits, sample_genome

optuna.logging.set_verbosity(optuna.logging.WARNING)
MNIST = InputSpec(1, 28, 28, 10)


def proposals(n: int, limits: Limits, repair: bool, seed: int = 0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(n):
        trial = study.ask()
        genome = sample_genome(trial, MNIST, limits, repair=repair).genome
        study.tell(trial, 0.0)
        yield genome


@pytest.mark.parametrize("budget", [8000, 4000])
def test_feasible_share_with_width_repair_is_high(budget):
    limits = Limits(max_params=budget)
    verdicts = [check(g, limits) for g in proposals(200, limits, repair=True)]
    share = sum(v.ok for v in verdicts) / len(verdicts)
    assert share > 0.5
    assert all(v.params <= budget for v in verdicts if v.ok)
    assert max(v.params for v in verdicts) > 0.8 * budget  # repair scales down to the budget, not far below


def test_without_repair_the_checker_rejects_and_says_why():
    limits = Limits(max_params=4000)
    verdicts = [check(g, limits) for g in proposals(100, limits, repair=False)]
    rejected = [v for v in verdicts if not v.ok]
    assert rejected and all(v.violations[0].startswith("params ") for v in rejected)


def test_fixed_trial_gives_the_expected_design():
    params = {"stages": 2, "order": "cba", "dropout": 0.05, "head": "gap_conv", "fill": 1.0, "s0_blocks": 2, "s0_width": 16,
              "s0_pad": "valid", "s0_kernel": 3, "s0_down": "max_1x1", "s0_transition_width": 8,
              "s1_blocks": 2, "s1_width": 16, "s1_type": "conv", "s1_pad": "valid", "dilate_last": False,
              "s0_repeat": 1, "s1_repeat": 1}
    genome, scale, _ = sample_genome(optuna.trial.FixedTrial(params), MNIST, Limits())  # no param budget: no scale-up
    assert scale == 1.0
    assert genome.to_string() == ("i1x28x28n10-conv_c16_k3_r0.05-conv_c16_k3_r0.05-max_k2-conv_c8_k1"
                                  "-conv_c16_k3_r0.05-conv_c16_k3_r0.05-gap-conv_c10_k1_b0_oc")
    shared = sample_genome(optuna.trial.FixedTrial({**params, "s1_repeat": 3}), MNIST, Limits()).genome
    assert shared.to_string() == ("i1x28x28n10-conv_c16_k3_r0.05-conv_c16_k3_r0.05-max_k2-conv_c8_k1"
                                  "-conv_c16_k3_r0.05-conv_c16_k3_psame_r0.05_x3-gap-conv_c10_k1_b0_oc")  # 10 - 3 x 2 < 5: same
    assert check(shared, Limits()).params == check(genome, Limits()).params  # deeper for no params
    assert check(shared, Limits()).receptive_field == check(genome, Limits()).receptive_field + 2 * 2 * 2


def test_the_space_proposes_shared_blocks_that_fit():
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    limits = Limits(max_params=2000)
    genomes = [sample_genome(study.ask(), MNIST, limits).genome for _ in range(60)]
    shared = [g for g in genomes if any((layer.repeat or 1) > 1 for layer in g.layers)]
    assert 10 <= len(shared) < 60
    assert sum(check(g, limits).ok for g in shared) >= 0.95 * len(shared)


def test_fit_to_limits_honours_macs_too():
    from search.space import _blueprint

    trial = optuna.trial.FixedTrial({"stages": 2, "order": "cba", "dropout": 0.0, "head": "conv_gap", "fill": 1.0,
                                     "s0_blocks": 3, "s0_width": 40, "s0_pad": "same", "s0_kernel": 5,
                                     "s0_down": "stride", "s0_transition_width": 8, "s1_blocks": 3,
                                     "s1_width": 40, "s1_type": "res", "s1_pad": "same", "dilate_last": True,
                                     "s0_repeat": 1, "s1_repeat": 1})
    limits = Limits(max_params=20_000, max_macs=1_500_000)
    genome, scale, _ = fit_to_limits(_blueprint(trial), MNIST, limits)
    verdict = check(genome, limits)
    assert verdict.ok and scale < 1.0


@pytest.mark.parametrize("fill", [0.8, 1.0])
def test_narrow_designs_are_scaled_up_to_their_share_of_the_budget(fill):
    from search.space import _blueprint

    trial = optuna.trial.FixedTrial({"stages": 2, "order": "cba", "dropout": 0.0, "head": "gap_conv", "fill": fill,
                                     "s0_blocks": 2, "s0_width": 8, "s0_pad": "valid", "s0_kernel": 3,
                                     "s0_down": "max", "s0_transition_width": 8, "s1_blocks": 2,
                                     "s1_width": 8, "s1_type": "conv", "s1_pad": "valid", "dilate_last": False,
                                     "s0_repeat": 1, "s1_repeat": 1})
    genome, scale, _ = fit_to_limits(_blueprint(trial), MNIST, Limits(max_params=20_000))
    params = check(genome, Limits()).params
    assert scale > 1.0
    assert 0.85 * fill * 20_000 < params <= fill * 20_000


@pytest.mark.parametrize("budget", [8000, 4000])
def test_every_proposal_uses_most_of_its_share_of_the_budget(budget):
    """Uniform scaling alone left designs of 4-8 channels at 60-70% of their share (one step of every width is
    a third of the params); widening single widths afterwards fills it."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(60):
        trial = study.ask()
        genome = sample_genome(trial, MNIST, Limits(max_params=budget)).genome
        params = check(genome, Limits()).params
        assert 0.75 * trial.params["fill"] * budget <= params <= trial.params["fill"] * budget
        study.tell(trial, 0.0)


def test_small_inputs_stay_valid():
    tiny = InputSpec(1, 12, 12, 4)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(100):
        trial = study.ask()
        genome = sample_genome(trial, tiny, Limits(max_params=3000)).genome
        check(genome, Limits(max_params=3000))  # raises GenomeError if the space built something invalid
        study.tell(trial, 0.0)


def test_narrow_to_limits_carries_a_design_to_a_smaller_budget():
    from blocks import Genome
    from search.space import narrow_to_limits

    big = Genome.from_string("i1x28x28n10-conv_c12_k5_ocabd_r0.02-conv_c12_k3_ocabd_r0.02-max_k2-conv_c12_k3_ocabd_r0.02"
                             "-conv_c12_k3_d2_ocabd_r0.02-conv_c10_k1_b0_oc-gap")
    assert narrow_to_limits(big, Limits(max_params=8000)) is big  # fits: untouched
    small = narrow_to_limits(big, Limits(max_params=4000))
    params = check(small, Limits(max_params=4000)).params
    assert 0.95 * 4000 < params <= 4000  # uniform scale, then single widths widened: the budget is used
    assert [layer.type for layer in small.layers] == [layer.type for layer in big.layers]
    widths = [layer.out for layer in small.layers if layer.out is not None]
    assert widths[-1] == 10 and all(10 <= w <= 12 for w in widths[:-1])  # the classifier keeps one channel per class
    macs = check(big, Limits()).macs
    assert check(narrow_to_limits(big, Limits(max_macs=macs // 2)), Limits()).macs <= macs // 2
    assert narrow_to_limits(big, Limits(max_params=100)) is None  # even 4-channel layers are over
    shared = Genome.from_string("i1x28x28n10-conv_c16_k3-conv_c16_k3_psame_x3-max_k2-conv_c24_k3-gap-conv_c10_k1_b0_oc")
    narrowed = narrow_to_limits(shared, Limits(max_params=3000))
    assert narrowed.layers[1].repeat == 3 and narrowed.layers[1].out == narrowed.layers[0].out < 16


def test_built_in_datasets_get_the_same_genomes_as_before_the_input_size_rules():
    """Issue 25: the stem that large inputs get must not change MNIST or CIFAR-10 proposals (hashes recorded on
    43f2d47, before it)."""
    import optuna

    from budgets import Limits
    from search.space import sample_genome
    from training import DATASETS

    recorded = {
        "mnist": ["cf540da9872a", "4cd940f6dd19", "d684ad4dd196", "6f52ac218fb6", "4c3a813b1222", "e9b7e0262688",
                  "42b0a658fe6d", "74f4e7dad99a", "0621cc8b811f", "172a408efaf1", "ddf8b7e924f4", "d2cce1fe234e"],
        "cifar10": ["5d7e56b95bb9", "39abd824d28c", "93523137f15e", "abd4d9bbff2f", "3ba781cb8a2a", "d9c8fd83c78e",
                    "164db7efda72", "9328c488852c", "0449ebd8d7d2", "843c0823dd78", "208e760fd436", "63ff94a3019e"],
    }
    class NoSharing:  # the later ``s*_repeat`` decisions answered 1 without a draw: the draws stay as recorded
        def __init__(self, trial):
            self.trial = trial

        def __getattr__(self, name):
            return getattr(self.trial, name)

        def suggest_categorical(self, name, choices):
            return 1 if name.endswith("_repeat") else self.trial.suggest_categorical(name, choices)

    for name, budget in (("mnist", 8000), ("cifar10", 20000)):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        hashes = [sample_genome(NoSharing(study.ask()), DATASETS[name].spec, Limits(max_params=budget)).genome.hash
                  for _ in range(12)]
        assert hashes == recorded[name]


def test_large_inputs_start_with_a_strided_stem_and_small_ones_do_not_collapse():
    import optuna

    from blocks import InputSpec
    from budgets import Limits, analyze
    from search.space import sample_genome, stem_downsamples

    assert [stem_downsamples(s) for s in (8, 28, 32, 47, 48, 64, 96, 128)] == [0, 0, 0, 0, 1, 2, 2, 3]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        big = sample_genome(study.ask(), InputSpec(3, 96, 96, 10), Limits(max_params=20000, max_ram=65536)).genome
        assert big.layers[0].stride == 2 and big.layers[1].type == "max"  # 96 -> 48 -> 24 before the first stage
        small = analyze(sample_genome(study.ask(), InputSpec(1, 8, 8, 10), Limits(max_params=2000)).genome)
        maps = [min(row.output_shape[-2:]) for row in small.layers if row.type not in ("gap", "flat", "fc", "lsm")]
        assert small.params <= 2000 and min(maps[:-1]) >= 2  # no map collapses to 1x1 before the head
