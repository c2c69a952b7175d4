import json
import re
import os
import subprocess
import sys

import pytest

import run_search
from tests.conftest import ROOT


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_search.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_describe_json_has_the_promised_fields(capsys):
    code = run_search.main(["--describe", str(ROOT / "zoo" / "mnist_8k_gap.json"), "--json", "--budget", "8000"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    for key in ("params", "receptive_field", "macs", "output_shape", "input_shape", "violations"):
        assert key in data
    assert data["params"] == 7050 and data["violations"] == [] and data["output_shape"] == [10]


def test_describe_table_shows_rf_and_macs_and_the_verdict(capsys):
    code = run_search.main(["--describe", str(ROOT / "zoo" / "lenet5.json"), "--budget", "50000", "--min-rf", "auto"])
    out = capsys.readouterr().out
    assert code == 1
    assert "RF" in out and "MACs" in out and "61,706" in out
    assert "params 61,706 > budget 50,000" in out and "receptive field 16 < required 28" in out


def test_describe_compact_string(capsys):
    assert run_search.main(["--describe", "i1x28x28n10-conv_c8_k3-gap-conv_c10_k1_oc", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 178


def test_describe_a_shared_block_counts_its_params_once_and_its_stored_weights_per_application(capsys):
    shared = "i1x28x28n10-conv_c8_k3-max_k2-dws_c16_psame-dws_c16_psame_x3-gap-conv_c10_k1_b0_oc"
    assert run_search.main(["--describe", shared, "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["params"] == 960 and described["layers"][3]["token"] == "dws_c16_psame_x3"
    assert run_search.main(["--describe", shared]) == 0
    assert "weights 1,888 B (each application of a shared block stores its own)" in capsys.readouterr().out


@pytest.mark.parametrize("args,expected", [
    (["--describe", "i1x28x28n10-conv_c8_k3-conv_c8_k31-gap"], "genome string, layer 1 (conv), field 'kernel'"),
    (["--describe", "i1x28x28n10-bogus_c8"], "unknown block type 'bogus'"),
    (["--describe", "zoo/missing.json"], "no such genome file: zoo/missing.json"),
    (["--describe", "zoo/lenet5.json", "--min-rf", "wide"], "--min-rf must be a positive integer or 'auto'"),
    (["--describe", "zoo/lenet5.json", "--budget", "0"], "must be > 0"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, expected):
    result = run_cli(*args)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("run_search.py: error:")


def test_the_command_exits_with_mains_code_and_flushed_output():
    """``cli`` leaves through ``os._exit`` (no interpreter teardown): what was printed, even to a pipe's buffer, is out."""
    code = ("import sys, run_search; print('to stdout', end=''); print('to stderr', end='', file=sys.stderr); "
            "run_search.main = lambda: 3; run_search.cli()")
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env=buffered)
    assert (result.returncode, result.stdout, result.stderr) == (3, "to stdout", "to stderr")


def test_malformed_json_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"layers": [{"type": "conv", "out": 8, "kernel": 3, "groups": "dw"}, ]}')
    assert run_search.main(["--describe", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.json: malformed JSON" in err and err.count("\n") == 1


@pytest.mark.parametrize("width", [80, 200])
def test_describe_fits_80_columns_with_whole_tokens_and_one_shape_notation(width):
    import io

    from rich.console import Console

    from blocks import load_genome
    from budgets import Limits, analyze, check
    from reports.summary import render_summary

    for name in ("mnist_5k_search", "mnist_3k6_search", "mnist_8k_gap", "cifar10_dws"):
        genome = load_genome(str(ROOT / "zoo" / f"{name}.json"))
        out = io.StringIO()
        render_summary(analyze(genome), check(genome, Limits(max_params=8000)), Limits(max_params=8000),
                       Console(file=out, width=width, color_system=None))
        text = out.getvalue()
        assert max(len(line) for line in text.splitlines()) <= width
        table_lines = text.splitlines()
        for row in analyze(genome).layers:  # every token whole, on one line with its shape
            assert any(row.token in line and "x".join(map(str, row.output_shape)) in line for line in table_lines), row
        assert "[-1" not in text and "[1, " not in text
        assert re.search(r"RAM: [\d,]+ B", text)  # a figure and its unit on one line


# --- The hand-off (issue 40 item 5): labels that say what they measure ---

def test_labels_say_what_they_measure(tmp_path, monkeypatch):
    import subprocess
    import sys

    from tests.conftest import ROOT

    narrow = subprocess.run([sys.executable, str(ROOT / "run_search.py"), "--describe", "zoo/lenet5.json"],
                            capture_output=True, text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "80"})
    assert "act. B" in narrow.stdout and "RAM B" not in narrow.stdout  # the column is activations, not the arena
    header = next(line for line in narrow.stdout.splitlines() if "act. B" in line)
    assert len(header) <= 80  # piped output follows COLUMNS (it was 200 wide whatever COLUMNS said)
    help_lines = subprocess.run([sys.executable, str(ROOT / "run_search.py"), "--help"], capture_output=True, text=True,
                                cwd=ROOT, env={**os.environ, "COLUMNS": "80"}).stdout.splitlines()
    assert max(len(line) for line in help_lines[-12:]) <= 80  # the rules at the end of --help too
    import run_search

    help_text = " ".join(run_search.build_parser().format_help().split())
    assert "maximum bytes of weights" not in help_text and "the estimated .tflite file" in help_text
    assert "Only when given as int8 are the finalists also quantized" in help_text  # not measured by default
    import pandas as pd

    from reports.html import _top

    board = pd.DataFrame([{"rank": 1, "trial": 0, "params": 100, "val_acc": 99.0, "epochs": 1, "test_acc_mean": 99.0,
                           "seeds_at_target": 1 / 3, "genome": "g"}])
    assert _top(board)["seeds at target"].iloc[0] == "33%"


def test_an_interrupt_swallowed_by_a_finalizer_prints_no_traceback():
    """A Ctrl-C landing in a weakref callback printed 'Exception ignored in ... KeyboardInterrupt' with a
    traceback (1 run in 9 of test_ctrl_c_in_the_first_seconds); it is raised again later, so the printout goes."""
    import types

    from search.interrupts import keep_signals

    previous, seen = sys.unraisablehook, []
    sys.unraisablehook = seen.append  # the hook keep_signals finds: what Python would print
    try:
        keep_signals()
        for error in (KeyboardInterrupt(), ValueError("a real problem")):
            sys.unraisablehook(types.SimpleNamespace(exc_type=type(error), exc_value=error, exc_traceback=None,
                                                     err_msg="Exception ignored in", object=None))
        assert [type(u.exc_value) for u in seen] == [ValueError]  # other problems still reach it
    finally:
        sys.unraisablehook = previous
