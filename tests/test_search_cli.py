"""End-to-end: the CLI on real MNIST (tiny proxy search), Ctrl-C, and bad search input."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.conftest import ROOT, interruptible


def cli(*args, **kw):
    return subprocess.run([sys.executable, str(ROOT / "run_search.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, **kw)


@pytest.mark.slow
def test_real_mnist_proxy_search_then_ctrl_c(mnist_dir, tmp_path):
    args = [sys.executable, str(ROOT / "run_search.py"), "--budget", "8000", "--target", "99.4", "--trials", "50",
            "--epochs", "2", "--train-subset", "4000", "--data-dir", str(mnist_dir), "--out", str(tmp_path),
            "--study", "e2e", "--device", "cpu", "--final-top", "0", "--workers", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=interruptible)
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
    assert complete["val_acc"].max() > 30  # 2 epochs on 4,000 images: clearly learning (chance is 10%)


@pytest.mark.parametrize("args,expected", [
    (["--budget", "8000", "--sampler", "cmaes"], "unknown sampler 'cmaes'"),
    (["--budget", "8000", "--pruner", "asha"], "unknown pruner 'asha'"),
    (["--budget", "8000", "--rungs", "sometimes"], "unknown --rungs 'sometimes'"),
    (["--budget", "0"], "argument --budget: must be > 0"),
    (["--budget", "8000", "--dataset", "svhn"], "unknown dataset 'svhn'"),
    (["--trials", "3"], "give a limit to search under"),
    (["--budget", "8000", "--storage", "postgresql://u:pw@127.0.0.1:9/x"], "cannot open storage postgresql://u:***@"),
    (["--budget", "8000", "--device", "tpu"], "unknown --device 'tpu'"),
    (["--reproduce", "zoo/lenet5.json", "--device", "tpu"], "unknown --device 'tpu'"),
    (["--budget", "8000", "--final-top", "-1"], "--final-top must be >= 0"),
])
def test_bad_search_input_is_one_line_and_exit_code_2(args, expected, tmp_path):
    from tests.synthetic import write_idx

    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=6000, n_test=10)  # the data is checked first
    result = cli(*args, "--out", str(tmp_path), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_resuming_a_study_with_another_budget_is_refused(tmp_path):
    from search.settings import SearchSettings, open_study

    from tests.synthetic import write_idx

    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=6000, n_test=10)  # the data is checked first
    open_study(SearchSettings(budget=8000, out=str(tmp_path), study="s8k"))
    result = cli("--budget", "4000", "--study", "s8k", "--out", str(tmp_path), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2
    assert "study 's8k'" in result.stderr and "budget 8000 (this run: 4000)" in result.stderr


def _leaderboard(tmp_path):
    path = tmp_path / "s" / "leaderboard.csv"
    path.parent.mkdir()
    path.write_text("rank,trial,status,genome,params\n1,4,complete,i1x28x28n10-conv_c8_k3-gap-conv_c10_k1_oc,178\n"
                    ",5,rejected,,9000\n")
    return path


@pytest.mark.parametrize("extra,expected", [
    (["--rank", "3"], "no row with rank 3 (the table has 1 ranked trial(s) and 2 row(s))"),
    (["--trial", "5"], "trial 5 has no genome (status rejected)"),
])
def test_reproduce_bad_rows(tmp_path, extra, expected):
    result = cli("--reproduce", str(_leaderboard(tmp_path)), *extra)
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr


def test_reproduce_missing_or_malformed_leaderboard(tmp_path):
    result = cli("--reproduce", str(tmp_path / "none.csv"))
    assert result.returncode == 2 and "no such leaderboard" in result.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n")
    result = cli("--reproduce", str(bad))
    assert result.returncode == 2 and "not a BudgetNAS leaderboard" in result.stderr


def test_reproduce_refuses_a_checkpoint_of_another_genome(tmp_path):
    from blocks import Genome, build_model
    from reports.export import save_checkpoint

    other = Genome.from_string("i1x28x28n10-conv_c6_k3-gap-conv_c10_k1_oc")
    save_checkpoint(tmp_path / "other.pt", build_model(other), other, {}, 0, [])
    result = cli("--reproduce", str(_leaderboard(tmp_path)), "--checkpoint", str(tmp_path / "other.pt"))
    assert result.returncode == 2 and "was trained for genome" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_report_of_a_missing_run_dir(tmp_path):
    result = cli("--report", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "no such leaderboard" in result.stderr


@pytest.mark.slow
def test_reproduce_a_zoo_genome_on_real_mnist(mnist_dir, tmp_path):
    result = cli("--reproduce", "zoo/mnist_8k_gap.json", "--epochs", "1", "--seeds", "1", "--data-dir",
                 str(mnist_dir), "--out", str(tmp_path), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "Epoch  1: train loss" in result.stdout and "test accuracy" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("next: deploy it: --export tflite --checkpoint ")
    folder = tmp_path / "mnist_8k_gap"
    for name in ("checkpoint_seed0.pt", "model.pt2", "model.py", "metrics.csv"):
        assert (folder / name).is_file()
    metrics = pd.read_csv(folder / "metrics.csv")
    assert metrics["test_acc"].iloc[-1] > 90  # one epoch of the 7k net on the full training set
    again = cli("--reproduce", "zoo/mnist_8k_gap.json", "--checkpoint", str(folder / "checkpoint_seed0.pt"),
                "--data-dir", str(mnist_dir), "--device", "cpu")
    assert again.returncode == 0 and f"test accuracy {metrics['test_acc'].iloc[-1]:.2f}%" in again.stdout


def test_data_dir_that_is_a_file_and_a_genome_of_another_dataset(tmp_path):
    not_a_dir = tmp_path / "data"
    not_a_dir.write_text("x")
    result = cli("--reproduce", "zoo/mnist_8k_gap.json", "--data-dir", str(not_a_dir))
    assert result.returncode == 2 and "is a file, not a directory" in result.stderr
    result = cli("--reproduce", "zoo/cifar10_dws.json", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "genome input 3x32x32 with 10 classes does not match mnist" in result.stderr


@pytest.mark.slow
def test_full_cli_run_with_two_workers_finals_and_report(tmp_path):
    """The whole product path on fake MNIST files: 2 worker processes, final evaluation, report."""
    from tests.synthetic import write_idx

    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=6000, n_test=500)
    result = cli("--budget", "3000", "--trials", "4", "--epochs", "1", "--workers", "2", "--sampler", "random",
                 "--final-top", "1", "--final-epochs", "1", "--seeds", "2", "--data-dir", str(tmp_path / "data"),
                 "--out", str(tmp_path / "runs"), "--study", "w2", "--device", "cpu")
    assert result.returncode == 0, result.stderr[-2000:]
    run_dir = tmp_path / "runs" / "w2"
    board = pd.read_csv(run_dir / "leaderboard.csv")
    assert (board["status"] == "complete").sum() == 4
    assert sorted(board["trial"]) == list(range(len(board)))
    assert "[w0]" in result.stdout and "[w1]" in result.stdout
    assert board.loc[board["rank"] == 1, "test_acc_mean"].notna().all()
    assert (run_dir / "report.html").is_file() and (run_dir / "report.md").is_file()
    assert (run_dir / "final").is_dir() and "Top 10 of study w2" in result.stdout
    assert "plan: up to 4 trained trials x ~1.0 epochs each" in result.stdout and "2 final run(s) x 1 epochs" in result.stdout
    assert "estimate: ~" in result.stdout and "elapsed" in result.stdout


@pytest.mark.slow
def test_a_rerun_says_it_resumes_and_version(tmp_path):
    from tests.synthetic import write_idx

    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=6000, n_test=100)
    args = ["--budget", "3000", "--epochs", "1", "--sampler", "random", "--final-top", "0", "--data-dir",
            str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--study", "again", "--device", "cpu", "--workers", "1"]
    first = cli(*args, "--trials", "1")
    assert first.returncode == 0 and "resuming" not in first.stdout
    second = cli(*args, "--trials", "2")
    assert second.returncode == 0, second.stderr[-1000:]
    assert "resuming study again: 1 trained, 0 rejected, 0 failed, 0 pruned" in second.stdout
    assert "plan: up to 1 more trained trials (1 already trained) x" in second.stdout  # not 2 more
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("run_search.py ")


# --- Your own data (issue 25) ---

def _digits_files(tmp_path):
    """scikit-learn's real 8x8 digits as an image folder (with named classes) and as an .npz."""
    import numpy as np

    from tests.training.test_userdata import _digits, write_folder

    x, y = _digits()
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    write_folder(tmp_path / "digits", x, y, names=names)
    np.savez(tmp_path / "digits.npz", x_train=x, y_train=y)
    return tmp_path / "digits", tmp_path / "digits.npz", names


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["folder", "npz"])
def test_a_search_on_your_own_data_ends_with_a_report_a_finalist_and_exports(tmp_path, kind):
    import json

    folder, npz, names = _digits_files(tmp_path)
    data = folder if kind == "folder" else npz
    result = cli("--dataset", str(data), "--budget", "2000", "--target", "98", "--trials", "3", "--epochs", "2",
                 "--final-top", "1", "--seeds", "1", "--final-epochs", "2", "--workers", "1", "--device", "cpu",
                 "--out", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr[-2000:]
    run_dir = tmp_path / "runs" / "digits-b2000"
    assert "data: 1x8x8, 10 classes" in result.stdout and "359 images (20% of each class) held out" in result.stdout
    assert "augment none (auto: only you know which transformations keep your labels" in result.stdout
    assert "1 channel (auto: no image is in colour)" in result.stdout  # every automatic choice says why
    board = pd.read_csv(run_dir / "leaderboard.csv")
    assert board["genome"].str.startswith("i1x8x8n10-").all()
    settings = json.loads((run_dir / "settings.json").read_text())
    assert settings["input"] == "1x8x8" and settings["dataset"] == str(data.resolve())
    assert settings["val_images"] == 143 and settings["val_size"] == 5000  # 10% of each class of 1,438: the noise band
    assert result.stdout.rstrip().splitlines()[-1].startswith("next: ")  # the run ends by saying what to do
    final = next((run_dir / "final").glob("trial*"))
    source = (final / "model.py").read_text()
    expected = sorted(names) if kind == "folder" else [str(i) for i in range(10)]  # folders: sorted, as ImageFolder
    assert f"CLASSES = {expected!r}" in source
    assert "1x8x8" in (run_dir / "report.html").read_text()
    if (final / "model.onnx").is_file():
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(final / "model.onnx")).metadata_props}
        assert json.loads(meta["classes"]) == expected


@pytest.mark.parametrize("make, expected", [
    (lambda p: (p / "d").mkdir(), "no train/ folder"),
    (lambda p: ((p / "d" / "train" / "a").mkdir(parents=True), (p / "d" / "train" / "a" / "x.png").write_bytes(b"no")),
     "x.png: cannot decode"),
    (lambda p: __import__("numpy").savez(p / "d.npz", x_train=__import__("numpy").zeros((3, 4, 4)), y_train=[0, 1]),
     "2 labels for 3 images"),
], ids=["empty-folder", "corrupt-image", "lengths"])
def test_bad_data_fails_at_once_with_one_line_and_no_study(tmp_path, make, expected):
    make(tmp_path)
    data = tmp_path / ("d.npz" if (tmp_path / "d.npz").exists() else "d")
    started = time.monotonic()
    result = cli("--dataset", str(data), "--budget", "2000", "--out", str(tmp_path / "runs"), "--device", "cpu")
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "runs").exists() and time.monotonic() - started < 30
    assert "plan:" not in result.stdout  # nothing was calibrated


def test_an_unknown_dataset_name_says_a_path_works_too(tmp_path):
    result = cli("--dataset", "svhn", "--budget", "2000", "--out", str(tmp_path / "runs"))
    assert result.returncode == 2 and "or the path of your own data" in result.stderr


def test_dry_run_prints_the_plan_and_proposals_and_creates_nothing(tmp_path):
    from tests.synthetic import write_idx

    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=6000, n_test=100)
    result = cli("--budget", "4000", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--device",
                 "cpu", "--dry-run", "--enqueue", "zoo/mnist_5k_search.json", env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "plan: up to 50 trained trials" in out and "estimate: ~" in out
    assert out.count("  sampled: ") == 5 and "  queued: 3,9" in out  # the 4,404-param design narrowed to 4,000
    assert "i1x28x28n10-" in out and "dry run: no study was created" in out
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("extra, races", [(["--target", "99.4"], True), ([], False),
                                          (["--target", "99.4", "--seeds", "3"], False),
                                          (["--target", "99.4", "--quick"], False)])
def test_seeds_default_to_racing_when_there_is_a_target(tmp_path, extra, races):
    """Issue 26: --seeds auto is the default with --target (replayed on recorded seeds, racing's verdicts agreed with
    every recorded seed's where 3 fixed seeds said 'likely' for a 'certain' design: BENCHMARKS.md); the plan states
    the longest it can take."""
    from tests.synthetic import write_idx

    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=6000, n_test=100)
    result = cli("--budget", "4000", *extra, "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "runs"),
                 "--device", "cpu", "--dry-run")
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("(up to 30 while verdicts are open: --seeds auto)" in result.stdout) == races
    assert ("if every finalist's verdict stayed open to --max-seeds" in result.stdout) == races


def test_quiet_prints_only_warnings_and_the_ending(tmp_path):
    """Issue 40 item 5: --quiet (warnings, errors and the ending only)."""
    from tests.synthetic import write_idx

    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=6000, n_test=100)
    result = cli("--budget", "3000", "--epochs", "1", "--trials", "1", "--final-top", "1", "--seeds", "1",
                 "--final-epochs", "1", "--sampler", "random", "--workers", "1", "--device", "cpu", "--quiet",
                 "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("Best design, trial") and lines[-1].startswith("next: "), result.stdout[:2000]
    assert not any(line.startswith(("data:", "study ", "plan:", "trial ", "[w0]", "  Epoch")) for line in lines)
