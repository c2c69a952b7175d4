"""The analytic peak activation memory equals what forward hooks see on the built model (fp32 values)."""

import random

import pytest

from blocks import Genome, build_model, load_genome
from blocks.memory import measure_peak_activation
from blocks.random_genome import random_genome
from budgets import Limits, analyze, check, totals
from tests.conftest import ZOO


def _measured(genome: Genome) -> int:
    spec = genome.input
    return measure_peak_activation(build_model(genome), (spec.channels, spec.height, spec.width))


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_zoo_peak_activation_matches_the_measurement(path):
    genome = load_genome(path)
    assert analyze(genome).peak_activation == _measured(genome)


@pytest.mark.parametrize("text", [
    "i1x12x12n4-conv_c8_k3-res_c8-gap-conv_c4_k1_oc",  # identity shortcut
    "i1x12x12n4-conv_c8_k3-res_c12_s2-gap-conv_c4_k1_oc",  # projection shortcut
    "i1x12x12n4-conv_c8_k3-res_c12_s2_obac-gap-conv_c4_k1_oc",  # pre-activation: the held input is copied
    "i1x12x12n4-conv_c8_k3-res_c8_obac-gap-conv_c4_k1_oc",
    "i1x12x12n4-conv_c8_k3-dws_c16_psame-max_k2-flat-fc_c4-lsm",
    "i1x12x12n4-res_c8_ocb-conv_c4_k1_oc-gap",  # no activation after the sum: an empty post is not a layer
    "i1x12x12n4-conv_c8_k3-res_c8_x3-dws_c8_psame_x2-gap-conv_c4_k1_oc",  # shared blocks
])
def test_block_kinds(text):
    genome = Genome.from_string(text)
    assert analyze(genome).peak_activation == _measured(genome)


def test_random_genomes():
    rng = random.Random(7)
    checked = 0
    while checked < 40:
        genome = random_genome(rng)
        try:
            analysis = analyze(genome)
        except Exception:
            continue
        assert analysis.peak_activation == _measured(genome), genome.to_string()
        checked += 1


def test_ram_and_flash_limits_by_precision():
    from budgets.tflm import arena_estimate, flatbuffer_estimate

    genome = next(load_genome(p) for p in ZOO if p.stem == "mnist_8k_gap")  # 7,050 params
    a = analyze(genome)
    t = totals(genome)
    v = check(genome, Limits(max_ram=1000, max_flash=7000, precision="int8"))
    assert v.ram == arena_estimate(t.tflm_tensors, t.operators, t.channels) > a.peak_activation
    assert v.flash == flatbuffer_estimate(7050, t.operators, t.channels) > 7050
    assert f"ram {v.ram:,} B > 1,000 B (int8)" in v.violations and f"flash {v.flash:,} B > 7,000 B (int8)" in v.violations
    v32 = check(genome, Limits(precision="fp32"))
    assert v32.ram == 4 * a.peak_activation and v32.flash == 4 * 7050 and v32.ok
    with pytest.raises(ValueError, match="--precision"):
        Limits(precision="fp16")
