"""End-to-end: the CLI on real MNIST (tiny proxy search), Ctrl-C, and bad search input."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.conftest import ROOT


def cli(*args, **kw):
    return subprocess.run([sys.executable, str(ROOT / "run_search.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, **kw)


@pytest.mark.slow
def test_real_mnist_proxy_search_then_ctrl_c(mnist_dir, tmp_path):
    args = [sys.executable, str(ROOT / "run_search.py"), "--budget", "8000", "--target", "99.4", "--trials", "50",
            "--epochs", "1", "--train-subset", "1000", "--data-dir", str(mnist_dir), "--out", str(tmp_path),
            "--study", "e2e", "--device", "cpu", "--final-top", "0"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        lines.append(line)
        if "trained 2/50" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    lines.append(out)
    text = "".join(lines)
    assert proc.returncode == 130, text
    assert "interrupted" in text and "Top 10 of study e2e" in text
    board = pd.read_csv(tmp_path / "e2e" / "leaderboard.csv")
    complete = board[board["status"] == "complete"]
    assert len(complete) >= 2 and (complete["params"] <= 8000).all()
    assert complete["val_acc"].max() > 20  # 1 epoch on 1,000 images: clearly learning, far from 99.4


@pytest.mark.parametrize("args,expected", [
    (["--budget", "8000", "--sampler", "cmaes"], "unknown sampler 'cmaes'"),
    (["--budget", "8000", "--pruner", "asha"], "unknown pruner 'asha'"),
    (["--budget", "0"], "argument --budget: must be > 0"),
    (["--budget", "8000", "--dataset", "svhn"], "unknown dataset 'svhn'"),
    (["--trials", "3"], "give a limit to search under"),
    (["--budget", "8000", "--storage", "postgresql://u:pw@127.0.0.1:9/x"], "cannot open storage postgresql://u:***@"),
])
def test_bad_search_input_is_one_line_and_exit_code_2(args, expected, tmp_path):
    result = cli(*args, "--out", str(tmp_path), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_resuming_a_study_with_another_budget_is_refused(tmp_path):
    from search.settings import SearchSettings, open_study

    open_study(SearchSettings(budget=8000, out=str(tmp_path), study="s8k"))
    result = cli("--budget", "4000", "--study", "s8k", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "study 's8k'" in result.stderr and "budget 8000 (this run: 4000)" in result.stderr
