"""The int8 deployment model (budgets.tflm): its rules, and its estimates held to TFLM's measurements."""

import json
from pathlib import Path

import pytest

from blocks import Genome
from budgets import Limits, check, totals
from budgets.tflm import int8_problems
from tests.conftest import ROOT

MEASURED = [ROOT / "benchmarks" / "results" / "int8" / "stripped" / name for name in ("factors.jsonl", "measured.jsonl")]
BASE = "i1x28x28n10-conv_c8_k3{u}-max_k2-conv_c8_k3{u}-gap-conv_c10_k1_oc"


def test_an_unfused_norm_or_activation_holds_two_copies_of_the_conv_output():
    fused, after_relu, lrelu = (totals(Genome.from_string(BASE.format(u=u))) for u in ("", "_ocab", "_alrelu"))
    assert fused.tflm_tensors == fused.peak_activation == 8 * 26 * 26 + 8 * 13 * 13  # the pool: as analytic
    assert after_relu.tflm_tensors == lrelu.tflm_tensors == 2 * 8 * 26 * 26  # TFLM measured 10,816 for both
    assert after_relu.operators > fused.operators


def test_a_padded_strided_conv_adds_a_padded_copy_and_a_residual_block_holds_three_maps():
    strided = totals(Genome.from_string("i1x28x28n10-conv_c8_k3-conv_c8_k3_s2_psame-gap-conv_c10_k1_oc"))
    assert strided.tflm_tensors == 8 * 26 * 26 + 8 * 28 * 28  # 11,680, as measured
    res = totals(Genome.from_string("i1x28x28n10-conv_c8_k3-res_c12-gap-conv_c10_k1_oc"))
    assert res.tflm_tensors == 8 * 26 * 26 + 3 * 12 * 26 * 26  # 29,744, as measured


def test_activations_that_do_not_run_in_int8_are_named_with_their_layer():
    genome = Genome.from_string("i1x28x28n10-conv_c8_k3_agelu-conv_c8_k3_aprelu-conv_c8_k3_oc_aelu-gap-conv_c10_k1_oc")
    problems = int8_problems(genome)
    assert len(problems) == 2  # layer 2 has no 'a' in its order: its act is never applied
    assert problems[0].startswith("layer 0 (conv), field 'act': gelu") and "layer 1 (conv), field 'act': prelu" in problems[1]
    assert "falls back to float" in int8_problems(Genome.from_string(BASE.format(u="_ahswish")))[0]
    assert int8_problems(Genome.from_string(BASE.format(u="_arelu6_ocab"))) == []


@pytest.mark.parametrize("text, problem", [
    # measured in TFLM (BENCHMARKS.md, "int8 on the device"): each refused design next to its accepted neighbours
    ("res_c6_s2-gap-conv_c10_k1_oc", "layer 0 (res), field 'stride': a strided residual block on the input"),
    ("conv_c8_k3-res_c8_arelu6-res_c8_arelu6-gap-conv_c10_k1_oc", "layer 2 (res), field 'act': relu6 in a residual block right after another (layer 1"),
    ("conv_c8_k3-res_c8_arelu6-max_k2-res_c8_ocab_arelu6-gap-conv_c10_k1_oc", "layer 3 (res), field 'act': relu6"),
    ("conv_c8_k3-res_c8_arelu6-res_c12_s2_arelu6-gap-conv_c10_k1_oc", "layer 2 (res), field 'act': relu6"),
    ("conv_c8_k3-res_c8_ocab_arelu6_x2-gap-conv_c10_k1_oc", "layer 1 (res), field 'repeat': a relu6 residual block applied 2 times"),
    ("conv_c8_k3-res_c8-res_c12_s2-gap-conv_c10_k1_oc", None),
    ("conv_c8_k3-res_c8_arelu6-res_c8-gap-conv_c10_k1_oc", None),
    ("conv_c8_k3-res_c8-res_c8_arelu6-gap-conv_c10_k1_oc", None),
    ("conv_c8_k3-res_c8_ocab_arelu6-conv_c8_k3_ocab_arelu6-res_c8_ocab_arelu6-gap-conv_c10_k1_oc", None),
    ("conv_c8_k3-res_c8_ocab_x2-gap-conv_c10_k1_oc", None),
    ("conv_c8_k3_s2_psame-conv_c8_k3-gap-conv_c10_k1_oc", None),
])
def test_residual_patterns_the_converter_leaves_in_float_or_cannot_convert(text, problem):
    problems = int8_problems(Genome.from_string("i1x28x28n10-" + text))
    assert (problems[0].startswith(problem) and len(problems) == 1) if problem else problems == []


@pytest.mark.skipif(not all(p.is_file() for p in MEASURED), reason="no measurements")
def test_the_int8_estimates_are_never_below_what_tflm_measured():
    rows = [json.loads(line) for path in MEASURED for line in path.read_text().splitlines() if line.strip()]
    ran = [r for r in rows if r["converts"] and not int8_problems(Genome.from_string(r["genome"]))]
    assert len(ran) >= 70
    for r in ran:
        v = check(Genome.from_string(r["genome"]), Limits(precision="int8"))
        assert v.ram >= r["arena_bytes"] and v.flash >= r["tflite_bytes"], r["name"]
        assert v.ram <= 3 * r["arena_bytes"] and v.flash <= 3 * r["tflite_bytes"], r["name"]  # and not far above
