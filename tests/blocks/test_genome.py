import json
import random
from pathlib import Path

import pytest

from blocks import Genome, GenomeError, InputSpec, load_genome
from blocks.random_genome import random_genome
from tests.conftest import ROOT, ZOO

MNIST_8K = ("i1x28x28n10-conv_c10_k3_r0.05-conv_c16_k3_r0.05-max_k2-conv_c10_k1-conv_c14_k3_r0.05"
            "-conv_c14_k3_r0.05-conv_c16_k3_r0.05-gap-conv_c10_k1_b0_oc-lsm")


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_zoo_round_trips_through_string_and_dict(path):
    genome = load_genome(path)
    assert Genome.from_string(genome.to_string()) == genome
    assert Genome.from_dict(json.loads(genome.to_json())) == genome
    assert Genome.from_dict(genome.to_dict(explicit=False)) == genome


def test_random_genomes_round_trip_exactly():
    rng = random.Random(0)
    for _ in range(300):
        genome = random_genome(rng)
        text = genome.to_string()
        again = Genome.from_string(text)
        assert again == genome and again.to_string() == text
        assert Genome.from_dict(genome.to_dict()) == genome


def test_canonical_string_is_a_fixed_point():
    assert Genome.from_string(MNIST_8K).to_string() == MNIST_8K


def test_explicit_defaults_normalise_to_the_canonical_string():
    text = "i1x28x28n10-conv_c8_k3_s1_p0_d1_g1_b0_ocba_arelu-gap-conv_c10_k1_oc_b1"
    assert Genome.from_string(text).to_string() == "i1x28x28n10-conv_c8_k3-gap-conv_c10_k1_oc"


def test_dropout_implies_the_d_letter_and_bias_follows_the_norm():
    layer = Genome.from_string("i1x28x28n10-conv_c8_k3_r0.1-gap").layers[0]
    assert layer.order == "cbad" and layer.bias is False
    layer = Genome.from_string("i1x28x28n10-conv_c8_k3_oca-gap").layers[0]
    assert layer.bias is True


def test_hash_is_stable_and_distinguishes_genomes():
    a = Genome.from_string(MNIST_8K)
    assert a.hash == Genome.from_string(MNIST_8K).hash == load_genome(ROOT / "zoo" / "mnist_8k_gap.json").hash
    assert a.hash == "bf46589ca667"  # sha1 of the canonical string: changes only if the format changes
    assert Genome.from_string(MNIST_8K.replace("c16_k3_r0.05-gap", "c18_k3_r0.05-gap")).hash != a.hash


def test_repeat_is_a_field_that_round_trips_and_defaults_to_once():
    shared = Genome.from_string("i1x28x28n10-conv_c8_k3-dws_c8_psame_x3-gap-conv_c10_k1_b0_oc")
    assert shared.layers[1].repeat == 3 and shared.layers[0].repeat == 1
    assert Genome.from_dict(shared.to_dict()) == shared == Genome.from_dict(shared.to_dict(explicit=False))
    assert shared.to_dict(explicit=False)["layers"][1]["repeat"] == 3
    assert "repeat" not in shared.to_dict(explicit=False)["layers"][0]
    assert Genome.from_string(MNIST_8K).hash == "bf46589ca667"  # genomes without it keep their hash


def test_input_spec_is_part_of_the_genome():
    g = Genome.from_string("i3x32x32n100-conv_c8_k3-gap")
    assert g.input == InputSpec(3, 32, 32, 100)
    assert g.to_dict()["input"] == {"channels": 3, "height": 32, "width": 32, "classes": 100}


BAD_STRINGS = [
    ("", "empty genome string"),
    ("conv_c8_k3", "first token must be the input spec"),
    ("i1x28x28n10", "no layers"),
    ("i1x28x28n10-foo_c8", "layer 0, field 'type': unknown block type 'foo'; known: conv"),
    ("i1x28x28n10-conv_k3", "layer 0 (conv), field 'out': missing required field"),
    ("i1x28x28n10-conv_c0_k3", "layer 0 (conv), field 'out': expected a positive integer"),
    ("i1x28x28n10-conv_c8_k3-max_kx", "layer 1 (max), field 'kernel': expected an integer"),
    ("i1x28x28n10-conv_c8_k3_z4", "layer 0 (conv): cannot read 'z4'"),
    ("i1x28x28n10-conv_c8_k3_c8", "field 'out': given twice"),
    ("i1x28x28n10-conv_c8_k3_oxyz", "field 'order': expected a string of distinct letters"),
    ("i1x28x28n10-conv_c8_k3_ocbad", "field 'order': order has 'd' (dropout) but 'dropout' is 0"),
    ("i1x28x28n10-conv_c8_k3_afoo", "field 'act': expected one of relu"),
    ("i1x28x28n10-conv_c8_k4_psame", "field 'padding': padding 'same' needs an odd kernel"),
    ("i1x28x28n10-conv_c8_k3_r1.5", "field 'dropout': expected a dropout rate in [0, 1)"),
    ("i1x28x28n10-lsm-gap", "layer 0 (lsm): lsm (log-softmax) must be the last layer"),
    ("i1x28x28n10-gap_c3", "layer 0 (gap), field 'out': unknown field for gap (allowed: none)"),
    ("i1x28x28n10-conv_c8_k3_x0", "layer 0 (conv), field 'repeat': expected a positive integer"),
    ("i1x28x28n10-conv_c8_k3_x1000000000", "layer 0 (conv), field 'repeat': repeat 1000000000 is over the 64 limit"),
    ("i1x28x28n10-max_k2_x2", "layer 0 (max), field 'repeat': unknown field for max"),
    ("__import__('os').system('true')", "first token must be the input spec"),
]


@pytest.mark.parametrize("text,expected", BAD_STRINGS)
def test_bad_strings_give_one_line_errors_naming_the_place(text, expected):
    with pytest.raises(GenomeError) as info:
        Genome.from_string(text)
    message = str(info.value)
    assert expected in message and "\n" not in message


BAD_DICTS = [
    ([], "must be a JSON object"),
    ({"input": {}, "layers": []}, "'layers' must be a non-empty list"),
    ({"layers": [{"type": "conv", "out": 8, "kernel": 3}], "extra": 1}, "unknown top-level key(s) ['extra']"),
    ({"input": {"channels": 0}, "layers": [{"type": "gap"}]}, "input field 'channels' must be a positive"),
    ({"layers": [{"out": 8}]}, "layer 0, field 'type': missing block 'type'"),
    ({"layers": [{"type": "conv", "out": "8", "kernel": 3}]}, "layer 0 (conv), field 'out': expected a positive integer, got '8'"),
    ({"layers": [{"type": "conv", "out": 8, "kernel": 3, "bias": 1}]}, "field 'bias': expected true or false"),
    ({"layers": [{"type": "conv", "out": 8, "kernel": 3}, {"type": "conv", "out": -4, "kernel": 1}]},
     "layer 1 (conv), field 'out'"),
    ({"layers": ["conv"]}, "layer 0: expected a layer object"),
]


@pytest.mark.parametrize("data,expected", BAD_DICTS)
def test_bad_dicts_give_one_line_errors_naming_the_place(data, expected):
    with pytest.raises(GenomeError) as info:
        Genome.from_dict(data)
    assert expected in str(info.value)


def test_load_genome_names_the_file(tmp_path: Path):
    path = tmp_path / "net.json"
    path.write_text('{"layers": [{"type": "conv", "out": 8, "kernel": 3}, {"type": "nope"}]}')
    with pytest.raises(GenomeError, match=r"net\.json, layer 1, field 'type': unknown block type 'nope'"):
        load_genome(path)
    path.write_text('{"layers": [')
    with pytest.raises(GenomeError, match=r"net\.json: malformed JSON"):
        load_genome(path)
    with pytest.raises(GenomeError, match="no such genome file"):
        load_genome(tmp_path / "missing.json")


def test_parsing_never_uses_eval_exec_or_pickle():
    source = (ROOT / "blocks" / "genome.py").read_text()
    for forbidden in ("eval(", "exec(", "pickle", "literal_eval"):
        assert forbidden not in source


@pytest.mark.parametrize("token, pad", [("conv_c4_k3_psame", 1), ("conv_c4_k5_d2_psame", 4), ("conv_c4_k3_p2", 2),
                                        ("conv_c4_k3", 0), ("res_c4_k5", 2), ("res_c4_d2", 2), ("max_k3_psame", 1), ("max_k2_p1", 1),
                                        ("avg_k3_psame", 1), ("dws_c4_k3_psame", 1)])
def test_padding_is_resolved_once_on_the_layer(token, pad):
    assert Genome.from_string(f"i1x12x12n4-{token}-gap-conv_c4_k1_oc").layers[0].pad == pad
