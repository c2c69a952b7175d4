import pytest

from blocks import Genome, load_genome
from budgets import Limits, check, parse_min_rf
from tests.conftest import ROOT

NET = load_genome(ROOT / "zoo" / "mnist_8k_gap.json")  # 7,050 params, RF 18, 1,224,952 MACs


def test_within_budget():
    verdict = check(NET, Limits(max_params=8000))
    assert verdict.ok and verdict.violations == () and verdict.params == 7050
    assert str(verdict) == "OK: within budget"


def test_every_violation_is_listed_with_a_readable_reason():
    verdict = check(NET, Limits(max_params=5000, min_rf="auto", max_macs=1_000_000))
    assert not verdict.ok
    assert verdict.violations == (
        "params 7,050 > budget 5,000",
        "receptive field 18 < required 28",
        "MACs 1,224,952 > limit 1,000,000",
    )


def test_budget_is_inclusive_and_rf_defaults_to_no_limit():
    assert check(NET, Limits(max_params=7050)).ok
    assert not check(NET, Limits(max_params=7049)).ok
    assert check(NET, Limits()).ok


def test_min_rf_auto_is_the_input_size():
    wide = Genome.from_string("i3x32x40n10-conv_c8_k3-gap-conv_c10_k1_oc")
    assert Limits(min_rf="auto").required_rf(wide) == 40
    assert check(NET, Limits(min_rf=18)).ok


@pytest.mark.parametrize("text,value", [(None, None), ("auto", "auto"), ("22", 22)])
def test_parse_min_rf(text, value):
    assert parse_min_rf(text) == value


@pytest.mark.parametrize("text", ["0", "-3", "big", "2.5"])
def test_parse_min_rf_rejects(text):
    with pytest.raises(ValueError, match="--min-rf must be a positive integer or 'auto'"):
        parse_min_rf(text)


def test_budget_math_and_describe_do_not_import_torch():
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = ("import sys, budgets, blocks; from blocks import load_genome; "
            "budgets.check(load_genome('zoo/mnist_8k_gap.json'), budgets.Limits(8000)); "
            "import run_search; run_search.main(['--describe', 'zoo/mnist_8k_gap.json', '--json']); "
            "print('torch' in sys.modules, 'optuna' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False"
