import random

import pytest
import torch
from fvcore.nn import FlopCountAnalysis

from blocks import Genome, GenomeError, build_model, load_genome
from blocks.random_genome import random_genome
from budgets import analyze, totals
from tests.conftest import ROOT

# Totals computed by hand (torchsummary agrees for LeNet-5: 61,706).
ZOO_TOTALS = {
    "lenet5": 61_706,  # 156 + 2,416 + 48,120 + 10,164 + 850
    "mnist_8k_gap": 7_050,  # 110 + 1,472 + 180 + 1,288 + 1,792 + 2,048 + 160
}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fvcore_macs(genome: Genome) -> int:
    """fvcore's count restricted to conv and linear ops (our MAC convention)."""
    model = build_model(genome).eval()
    x = torch.zeros(1, genome.input.channels, genome.input.height, genome.input.width)
    counter = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = counter.by_operator()
    return sum(v for k, v in by_op.items() if k in ("conv", "linear", "addmm", "matmul"))


@pytest.mark.parametrize("name", ["lenet5", "mnist_8k_gap", "cifar10_dws"])
def test_zoo_params_equal_the_built_model(name):
    genome = load_genome(ROOT / "zoo" / f"{name}.json")
    analysis = analyze(genome)
    assert analysis.params == n_params(build_model(genome))
    if name in ZOO_TOTALS:
        assert analysis.params == ZOO_TOTALS[name]


def test_random_genomes_params_equal_the_built_model():
    rng = random.Random(1)
    for _ in range(300):
        genome = random_genome(rng)
        assert analyze(genome).params == n_params(build_model(genome)), genome.to_string()


@pytest.mark.parametrize("text,params", [
    ("i1x28x28n10-conv_c8_k3-gap-conv_c10_k1_oc", 8 * 9 + 16 + 8 * 10 + 10),
    ("i1x28x28n10-conv_c8_k3_oca-gap-conv_c10_k1_oc_b0", 8 * 9 + 8 + 80),
    ("i1x28x28n10-conv_c8_k3_oca_aprelu-gap-conv_c10_k1_oc", 72 + 8 + 1 + 90),
    ("i1x28x28n10-conv_c8_k3-conv_c16_k3_gdw-gap-conv_c10_k1_oc", 88 + (16 * 9 + 32) + 170),
    ("i1x28x28n10-conv_c8_k3-conv_c16_k3_g4-gap-conv_c10_k1_oc", 88 + (16 * 2 * 9 + 32) + 170),
    # dws: depthwise 8*9 + BN 16, pointwise 8*16 + BN 32
    ("i1x28x28n10-conv_c8_k3-dws_c16-gap-conv_c10_k1_oc", 88 + 72 + 16 + 128 + 32 + 170),
    # res with projection: 8->16: 16*8*9+32, 16*16*9+32, shortcut 8*16+32
    ("i1x28x28n10-conv_c8_k3-res_c16_s2-gap-conv_c10_k1_oc", 88 + 1184 + 2336 + 160 + 170),
    # pre-activation res with identity shortcut: BN(8) before each conv
    ("i1x28x28n10-conv_c8_k3-res_c8_obac-gap-conv_c10_k1_oc", 88 + (16 + 576) * 2 + 90),
    ("i1x8x8n10-conv_c4_k3_oca-flat-fc_c16_ocba-fc_c10", 40 + (144 * 16 + 32) + 170),
])
def test_params_against_hand_counts(text, params):
    genome = Genome.from_string(text)
    assert analyze(genome).params == params == n_params(build_model(genome))


def test_macs_equal_fvcore_on_zoo_and_random_genomes():
    rng = random.Random(2)
    genomes = [load_genome(p) for p in sorted((ROOT / "zoo").glob("*.json"))]
    genomes += [random_genome(rng) for _ in range(40)]
    for genome in genomes:
        assert analyze(genome).macs == fvcore_macs(genome), genome.to_string()


def test_macs_closed_form():
    # conv 1->8 k3 on 28x28: 26*26*8*9; 1x1 head on 1x1: 80
    assert analyze(Genome.from_string("i1x28x28n10-conv_c8_k3-gap-conv_c10_k1_oc")).macs == 26 * 26 * 72 + 80


@pytest.mark.parametrize("text,rf", [
    ("i1x28x28n10-conv_c8_k3-conv_c10_k3_oc-gap", 5),
    ("i1x28x28n10-conv_c8_k3-max_k2-conv_c10_k3_oc-gap", 8),  # 3, 4 (jump 2), 4 + 2*2
    ("i1x28x28n10-conv_c10_k3_d2_oc-gap", 5),
    ("i1x28x28n10-conv_c8_k5_s2-conv_c10_k3_oc-gap", 9),  # 5, jump 2, 5 + 2*2
    ("i1x28x28n10-res_c8-conv_c10_k1_oc-gap", 5),
    ("i1x28x28n10-res_c8_s2-conv_c10_k3_oc-gap", 11),  # 3, jump 2, 3+4=7, then 7+4
    ("i1x28x28n10-dws_c8_d2-conv_c10_k3_oc-gap", 7),
    ("i1x28x28n10-conv_c8_k3-gap-conv_c10_k3_p1_oc", 3),  # global pooling ends it
    ("i1x28x28n10-conv_c8_k3-avg_k3_s1-conv_c10_k1_oc-gap", 5),
    ("i1x28x28n10-conv_c8_k3-conv_c8_k3_psame_x3-conv_c10_k1_oc-gap", 9),  # 3, then three shared 3x3: +2 each
    ("i1x28x28n10-conv_c8_k3-dws_c8_s2_psame_x2-conv_c10_k1_oc-gap", 9),  # 3, +2 (jump 2), +4 (jump 4)
])
def test_receptive_field_against_hand_values(text, rf):
    assert analyze(Genome.from_string(text)).receptive_field == rf


def test_zoo_receptive_fields():
    assert analyze(load_genome(ROOT / "zoo" / "lenet5.json")).receptive_field == 16
    assert analyze(load_genome(ROOT / "zoo" / "mnist_8k_gap.json")).receptive_field == 18


def test_per_layer_rows_sum_to_totals_and_match_fast_path():
    genome = load_genome(ROOT / "zoo" / "cifar10_dws.json")
    analysis = analyze(genome)
    assert sum(r.params for r in analysis.layers) == analysis.params
    assert sum(r.macs for r in analysis.layers) == analysis.macs
    assert totals(genome)[:4] == (analysis.params, analysis.macs, analysis.receptive_field, analysis.peak_activation)
    assert analysis.output_shape == (10,) and analysis.input_shape == (3, 32, 32)


def test_a_shared_block_counts_params_once_and_macs_per_application():
    once = analyze(Genome.from_string("i1x28x28n10-conv_c8_k3-conv_c8_k3_psame-gap-conv_c10_k1_oc"))
    shared = analyze(Genome.from_string("i1x28x28n10-conv_c8_k3-conv_c8_k3_psame_x3-gap-conv_c10_k1_oc"))
    row = once.layers[1]
    assert shared.params == once.params
    assert shared.macs == once.macs + 2 * row.macs
    assert shared.layers[1].params == row.params and shared.layers[1].macs == 3 * row.macs
    plain, repeated = (totals(Genome.from_string(t)) for t in (
        "i1x28x28n10-conv_c8_k3-conv_c8_k3_psame-gap-conv_c10_k1_oc",
        "i1x28x28n10-conv_c8_k3-conv_c8_k3_psame_x3-gap-conv_c10_k1_oc"))
    assert plain.stored_params == plain.params
    assert repeated.stored_params == repeated.params + 2 * row.params  # a deployed file folds each application
    assert repeated.operators > plain.operators


@pytest.mark.parametrize("text,expected", [
    ("i1x28x28n10-conv_c8_k3-conv_c12_k3_x2-gap-conv_c10_k1",
     "layer 1 (conv), field 'repeat': a block applied 2 times with the same weights must keep its channels, "
     "but it turns 8 into 12"),
    ("i1x28x28n10-conv_c8_k3-conv_c8_k5_x9-gap-conv_c10_k1", "layer 1 (conv), field 'kernel': shrinks"),
    ("i1x28x28n10-conv_c8_k3-conv_c8_k31-gap", "layer 1 (conv), field 'kernel': shrinks the 26x26 map below 1x1"),
    ("i1x28x28n10-conv_c6_k3-conv_c8_k3_g4-gap", "layer 1 (conv), field 'groups': in channels 6 and out channels 8"),
    ("i1x28x28n10-conv_c8_k3-conv_c10_k3_oc", "output shape (10, 24, 24) does not give 10 class scores"),
    ("i1x28x28n10-conv_c8_k3-fc_c10", "layer 1 (fc): fc needs flat features"),
    ("i1x28x28n10-flat-conv_c10_k1", "layer 1 (conv): needs a (C, H, W) feature map"),
    ("i1x4x4n10-max_k2-max_k2-max_k2-gap", "layer 2 (max), field 'kernel': shrinks the 1x1 map"),
])
def test_structural_errors_name_layer_and_field(text, expected):
    with pytest.raises(GenomeError) as info:
        analyze(Genome.from_string(text))
    assert expected in str(info.value)


def test_the_receptive_field_of_a_very_deep_strided_stack_is_capped_for_json_readers():
    """64 shared stride-2 convs gave an RF of about 3.7e19, past int64."""
    from budgets.costs import RF_CAP

    genome = Genome.from_string("i1x28x28n10-conv_c16_k3-conv_c16_k3_s2_psame_x64-gap-conv_c10_k1_oc")
    analysis = analyze(genome)
    assert analysis.receptive_field == RF_CAP < 2 ** 63 and totals(genome).receptive_field == RF_CAP
    assert all(row.receptive_field <= RF_CAP for row in analysis.layers)
    assert analyze(Genome.from_string("i1x28x28n10-conv_c8_k3-conv_c8_k3_x3-gap-conv_c10_k1_oc")).receptive_field == 9
