"""Issue 9's bad inputs: each is one line on stderr, the right exit code, and no side effect."""

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT, fill_disk
from tests.synthetic import write_idx

LONG_GENOME = "i1x28x28n10-" + "-".join(["conv_c4_k1"] * 30) + "-gap-conv_c10_k1_oc"  # > 255 characters


def cli(*args, cwd=ROOT, **kw):
    return subprocess.run([sys.executable, str(ROOT / "run_search.py"), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, **kw)


def one_line(result, code: int, expected: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr[-1500:])
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_long_compact_genome_is_not_taken_for_a_file_name():
    assert len(LONG_GENOME) > 255
    result = cli("--describe", LONG_GENOME, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["params"] > 0


@pytest.mark.parametrize("mode", ["--describe", "--reproduce", "--report"])
def test_an_empty_mode_argument_is_refused_and_creates_nothing(mode, tmp_path):
    one_line(cli(mode, "", cwd=tmp_path), 2, f"{mode} needs a value")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, expected", [
    (["--describe", "zoo/lenet5.json", "--reproduce", "zoo/lenet5.json"], "--describe and --reproduce are separate modes"),
    (["--describe", "zoo/lenet5.json", "--finalize"], "--describe and --finalize are separate modes"),
    (["--reproduce", "x.csv", "--rank", "1", "--trial", "2"], "--rank and --trial both pick a leaderboard row"),
    (["--budget", "8000", "--timeout", "-1"], "--timeout must be > 0"),
    (["--budget", "8000", "--timeout", "nan"], "--timeout must be > 0"),
    (["--budget", "8000", "--study", ".."], "--study '..': use letters"),
    (["--budget", "8000", "--out", ""], "--out needs a folder"),
    (["--budget", "8000", "--data-dir", " "], "--data-dir needs a folder"),
    (["--budget", "8000", "--seed", "-1"], "--seed must be in [0, 2**32)"),
    (["--reproduce", "zoo/lenet5.json", "--seeds", "auto"], "--seeds auto races a search's finalists"),
    (["--budget", "8000", "--seeds", "many"], "expected a positive integer, got 'many'"),
    (["--budget", "8000", "--seeds", "auto", "--target", "99", "--max-seeds", "2"], "--max-seeds 2 is below the 3"),
    (["--reproduce", "zoo/lenet5.json", "--seed-offset", "-1"], "--seed-offset must be in [0, 2**31)"),
    (["--budget", "8000", "--storage", "sqlite:///"], "in-memory database"),
    (["--budget", "8000", "--storage", "sqlite:///:memory:"], "in-memory database"),
    (["--budget", "8000", "--finalize", "--study", "typo"], "--finalize: no study 'typo'"),
    (["--budget", "8000", "--translate", "-2"], "--translate is a shift in pixels in [0, 64], got -2.0"),
])
def test_conflicts_and_bad_values(args, expected, tmp_path):
    out = [] if "--out" in args else ["--out", str(tmp_path / "runs")]
    one_line(cli(*args, *out, cwd=tmp_path), 2, expected)
    assert not (tmp_path / "runs" / "typo").exists()


def test_deeply_nested_and_huge_genome_files(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    one_line(cli("--describe", str(deep)), 2, "deep.json: malformed JSON: nested too deeply")
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({"layers": [{"type": "conv", "out": 4, "kernel": 1}] * 100_000}))
    one_line(cli("--describe", str(huge)), 2, "over the 1,000,000-byte limit")
    many = tmp_path / "many.json"
    many.write_text(json.dumps({"layers": [{"type": "conv", "out": 4, "kernel": 1}] * 5_000}))
    one_line(cli("--describe", str(many)), 2, "5,000 layers is over the 1,000-layer limit")


def test_labels_out_of_range(tmp_path):
    raw = tmp_path / "data" / "MNIST" / "raw"
    write_idx(raw, n_train=50, n_test=10)
    labels = bytearray((raw / "train-labels-idx1-ubyte").read_bytes())
    labels[8 + 7] = 200
    (raw / "train-labels-idx1-ubyte").write_bytes(bytes(labels))
    one_line(cli("--reproduce", "zoo/mnist_8k_gap.json", "--data-dir", str(tmp_path / "data"), "--device", "cpu",
                 "--out", str(tmp_path / "out")), 2, "label 200 at index 7 is outside 0..9")


def _leaderboard(tmp_path, genome="i1x28x28n10-conv_c8_k3-gap-conv_c10_k1_oc"):
    path = tmp_path / "s" / "leaderboard.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"rank,trial,status,genome,params\n1,4,complete,{genome},178\n")
    return path


def test_checkpoint_whose_weights_do_not_fit_or_are_not_a_dict(tmp_path):
    from blocks import Genome, build_model
    from reports.export import save_checkpoint

    genome = Genome.from_string("i1x28x28n10-conv_c8_k3-gap-conv_c10_k1_oc")
    model = build_model(genome)
    save_checkpoint(tmp_path / "c.pt", model, genome, {}, 0, [])
    data = torch.load(tmp_path / "c.pt", weights_only=True)
    data["state_dict"]["0.0.weight"] = torch.zeros(3, 1, 3, 3)
    torch.save(data, tmp_path / "wrong.pt")
    args = ["--reproduce", str(_leaderboard(tmp_path)), "--data-dir", str(tmp_path / "none"), "--device", "cpu"]
    one_line(cli(*args, "--checkpoint", str(tmp_path / "wrong.pt")), 2, "its weights do not fit genome")
    data["state_dict"] = [1, 2]
    torch.save(data, tmp_path / "list.pt")
    one_line(cli(*args, "--checkpoint", str(tmp_path / "list.pt")), 2, "'state_dict' must be a dict")


def test_checkpoint_with_nan_weights_is_evaluated_with_a_warning(tmp_path):
    from blocks import Genome, build_model
    from reports.export import save_checkpoint

    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=50, n_test=10)
    genome = Genome.from_string("i1x28x28n10-conv_c8_k3-gap-conv_c10_k1_oc")
    model = build_model(genome)
    with torch.no_grad():
        model[0][0].weight.fill_(float("nan"))
    save_checkpoint(tmp_path / "nan.pt", model, genome, {}, 0, [])
    result = cli("--reproduce", str(_leaderboard(tmp_path)), "--checkpoint", str(tmp_path / "nan.pt"), "--data-dir",
                 str(tmp_path / "data"), "--device", "cpu", env={"COLUMNS": "200", "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert "holds NaN or inf" in result.stdout


def test_corrupt_settings_json_beside_a_leaderboard(tmp_path):
    board = _leaderboard(tmp_path)
    (board.parent / "settings.json").write_text("{not json")
    one_line(cli("--reproduce", str(board), "--device", "cpu"), 2, "settings.json: not readable JSON")


@pytest.mark.slow
def test_missing_data_fails_once_before_any_worker_or_study(tmp_path):
    """Issue 28: the data is checked in the command, before the study, the calibration and the workers: one line,
    not one per worker (it used to be "2 of 2 workers failed: ..." after 15-35 s of calibration)."""
    result = cli("--budget", "3000", "--trials", "2", "--workers", "2", "--data-dir", str(tmp_path / "missing"),
                 "--out", str(tmp_path / "runs"), "--device", "cpu", env={"PATH": "", "HOME": str(tmp_path)})
    assert result.returncode == 2, result.stderr[-2000:]
    assert "MNIST not found" in result.stderr and "workers failed" not in result.stderr
    assert "Traceback" not in result.stderr + result.stdout and len(result.stderr.strip().splitlines()) == 1
    assert "plan:" not in result.stdout and not (tmp_path / "runs").exists()


def test_workers_are_capped_to_the_machine(capsys):
    import run_search

    lines = []
    assert run_search._worker_count("1000", "cpu", lines.append) <= 1000
    assert lines and lines[0].startswith("--workers 1000 capped to ")
    assert run_search._worker_count("auto", "cpu", lines.append) >= 1 and len(lines) == 1


def test_workers_default_to_auto_one_per_core():
    import run_search
    from search.settings import cpu_worker_cap

    args = run_search.build_parser().parse_args(["--budget", "8000"])
    assert args.workers == "auto"
    assert run_search._worker_count(args.workers, "cpu", print) == cpu_worker_cap()[0]


@pytest.mark.slow
def test_a_full_disk_is_one_line_naming_the_file_and_keeps_completed_trials(tmp_path):
    """RLIMIT_FSIZE stands in for a full disk: writes past the limit fail with EFBIG, as ENOSPC would."""
    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=6000, n_test=100)
    args = ["--budget", "3000", "--epochs", "1", "--sampler", "random", "--final-top", "0", "--data-dir",
            str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--study", "full", "--device", "cpu", "--workers", "1"]
    assert cli(*args, "--trials", "2").returncode == 0
    db = tmp_path / "runs" / "full" / "study.db"
    limit = db.stat().st_size + 4096

    def limit_file_size():
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run([sys.executable, str(ROOT / "run_search.py"), *args, "--trials", "200"],
                            capture_output=True, text=True, cwd=ROOT, timeout=600, preexec_fn=limit_file_size)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "study.db" in result.stderr or "leaderboard.csv" in result.stderr
    from search.settings import SearchSettings, open_study

    study = open_study(SearchSettings(budget=3000, out=str(tmp_path / "runs"), study="full"))
    assert sum(t.user_attrs.get("status") == "complete" for t in study.get_trials()) >= 2


def test_reproduce_checkpoint_with_export_onnx(tmp_path):
    if not os.environ.get("CI"):  # CI installs the [onnx] extra and must run this
        pytest.importorskip("onnx")
    from blocks import Genome, build_model
    from reports.export import save_checkpoint

    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=50, n_test=10)
    genome = Genome.from_string("i1x28x28n10-conv_c8_k3-gap-conv_c10_k1_oc")
    save_checkpoint(tmp_path / "c.pt", build_model(genome), genome,
                    {"normalize": {"mean": [0.1307], "std": [0.3081]}}, 0, [])
    result = cli("--reproduce", str(_leaderboard(tmp_path)), "--checkpoint", str(tmp_path / "c.pt"), "--export", "onnx",
                 "--data-dir", str(tmp_path / "data"), "--device", "cpu", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-1500:]
    import onnx

    written = tmp_path / "out" / "s-rank1" / "model.onnx"
    meta = {p.key: p.value for p in onnx.load(str(written)).metadata_props}
    assert meta["normalize_mean"] == "0.130700" and meta["input"] == "images"
    one_line(cli("--describe", "zoo/lenet5.json", "--export", "onnx"), 2, "--export only applies with --reproduce")


# --- Reliability, round three (issue 24) ---

def _run_dir(tmp_path):
    """A run directory as a search leaves it: leaderboard, settings, finals."""
    run = tmp_path / "runs" / "s"
    run.mkdir(parents=True)
    genome = "i1x28x28n10-conv_c8_k3-gap-conv_c10_k1_oc"
    (run / "leaderboard.csv").write_text(
        "rank,trial,status,genome,params,rf,macs,ram,flash,val_acc,best_epoch,epochs,images\n"
        f"1,0,complete,{genome},178,3,52000,6272,178,91.5,1,1,1000\n")
    (run / "settings.json").write_text(json.dumps({"study": "s", "dataset": "mnist", "budget": 3000}))
    (run / "finals.json").write_text(json.dumps({"0": {"test_acc_mean": 91.0, "test_acc_std": 0.1, "test_acc_min": 90.9,
                                                       "meets_target": None, "seeds": [0], "statuses": ["complete"],
                                                       "per_epoch_test_acc": [[91.0]]}}))
    return run


def test_a_whole_run_directory_reports(tmp_path):
    run = _run_dir(tmp_path)
    result = cli("--report", str(run))
    assert result.returncode == 0, result.stderr
    assert (run / "report.html").read_text().endswith("</html>")


@pytest.mark.parametrize("content", ["[1,2]", '{"0": {"test_acc_mean": "high"}}', None],
                         ids=["a-list", "a-string-accuracy", "cut-to-60-bytes"])
def test_a_damaged_finals_json_is_one_line_in_every_command(tmp_path, content):
    run = _run_dir(tmp_path)
    finals = run / "finals.json"
    finals.write_text(content if content is not None else finals.read_text()[:60])
    search = ["--budget", "3000", "--study", "s", "--out", str(run.parent), "--device", "cpu", "--data-dir",
              str(tmp_path / "none")]
    for args in (["--report", str(run)], search, [*search, "--finalize"]):
        one_line(cli(*args), 2, f"{finals}: ")
        assert "--finalize" in cli(*args).stderr  # says what to do
    assert not (run / "study.db").exists()  # refused before anything started


@pytest.mark.parametrize("content, expected", [
    ("[1,2]", "expected a JSON object, got list"), ('{"study": "s", "bud', "not readable JSON"), ("", "empty"),
    (b"\x00\xff\xfe\x01", "not readable JSON"), ('{"budget": "abc"}', "field 'budget' must be an integer, got 'abc'"),
    ('{"target": [99]}', "field 'target' must be a number"),
], ids=["list", "truncated", "empty", "binary", "budget-abc", "target-list"])
def test_a_damaged_settings_json_is_one_line_naming_it(tmp_path, content, expected):
    run = _run_dir(tmp_path)
    path = run / "settings.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    one_line(cli("--report", str(run)), 2, f"{path}: {expected}")
    one_line(cli("--reproduce", str(run / "leaderboard.csv"), "--device", "cpu"), 2, f"{path}: {expected}")


def test_a_genome_file_with_a_utf8_byte_order_mark(tmp_path):
    path = tmp_path / "bom.json"
    path.write_text(json.dumps({"input": {"channels": 1, "height": 28, "width": 28, "classes": 10},
                                "layers": [{"type": "conv", "out": 8, "kernel": 3}, {"type": "gap"},
                                           {"type": "conv", "out": 10, "kernel": 1, "order": "c"}]}),
                    encoding="utf-8-sig")
    result = cli("--describe", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["params"] > 0


def test_a_full_disk_while_writing_the_report_names_the_file_and_keeps_the_old_one(tmp_path, small_disk):
    run = _run_dir(small_disk)
    assert cli("--report", str(run)).returncode == 0
    before = (run / "report.html").read_bytes()
    fill_disk(small_disk)
    one_line(cli("--report", str(run)), 1, f"cannot write {run / 'report.html'}: No space left on device")
    assert (run / "report.html").read_bytes() == before  # whole, not cut off
    assert not list(run.glob(".*.tmp"))


def test_resuming_on_a_read_only_mount_says_read_only(tmp_path, small_disk):
    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=6000, n_test=10)
    run = small_disk / "s"
    run.mkdir()
    (run / "study.db").write_bytes(b"")
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_disk)]).returncode == 0
    one_line(cli("--budget", "3000", "--study", "s", "--out", str(small_disk), "--device", "cpu", "--data-dir",
                 str(tmp_path / "data")), 2, "read-only file system")



def test_a_storage_that_cannot_be_opened_is_one_line_exit_2_and_leaves_no_files(tmp_path):
    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=6000, n_test=10)
    one_line(cli("--budget", "8000", "--storage", "postgresql://nobody@127.0.0.1:1/none", "--data-dir",
                 str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--device", "cpu"), 2, "cannot open storage")
    assert not (tmp_path / "runs").exists()


# flash: below the estimate's constant (~1.05 KB) plus three operators, so no design can fit
@pytest.mark.parametrize("limit, expected", [(("--max-ram", "2000"), "closest still has ram"),
                                             (("--max-flash", "1500"), "closest still has flash")])
def test_limits_no_design_can_meet_are_refused_before_the_study(limit, expected, tmp_path):
    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=6000, n_test=20)
    result = cli("--budget", "8000", *limit, "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "runs"))
    one_line(result, 2, "no design of the search space fits")
    assert expected in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("mode", [["--budget", "3000", "--dry-run"], ["--reproduce", "i1x8x8n3-conv_c4_k3-gap-conv_c3_k1_oc"]])
def test_translation_without_the_affine_augmentation_is_refused(mode, tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "own.npz", x_train=rng.integers(0, 255, (60, 8, 8), dtype=np.uint8),
             y_train=np.arange(60) % 3)
    result = cli(*mode, "--dataset", str(tmp_path / "own.npz"), "--translate", "2", "--out", str(tmp_path / "runs"),
                 cwd=tmp_path)
    one_line(result, 2, "--translate 2: shifts belong to the affine augmentation, and this run's is none")
    assert not (tmp_path / "runs").exists()


def test_a_genome_files_recipe_is_used_by_reproduce_and_checked(tmp_path):
    import numpy as np

    from reports.reproduce import ReproduceError, resolve_source

    genome = {"input": {"channels": 1, "height": 8, "width": 8, "classes": 3},
              "layers": [{"type": "conv", "out": 4, "kernel": 3}, {"type": "gap"},
                         {"type": "conv", "out": 3, "kernel": 1, "order": "c"}]}
    path = tmp_path / "g.json"
    path.write_text(json.dumps({**genome, "recipe": {"translate_px": 2}}))
    assert resolve_source(str(path)).translate_px == 2
    assert resolve_source(str(tmp_path / "g.json")).genome.to_string().startswith("i1x8x8n3-conv_c4_k3")
    for recipe, expected in [({"translate_px": -1}, "recipe field 'translate_px' must be a shift in pixels"),
                             ({"rotation": 5}, "unknown recipe field 'rotation'"), ([2], "'recipe' must be an object")]:
        path.write_text(json.dumps({**genome, "recipe": recipe}))
        with pytest.raises(ReproduceError, match=expected):
            resolve_source(str(path))
    path.write_text(json.dumps({**genome, "recipe": {"translate_px": 2}}))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "own.npz", x_train=rng.integers(0, 255, (60, 8, 8), dtype=np.uint8), y_train=np.arange(60) % 3)
    one_line(cli("--reproduce", str(path), "--dataset", str(tmp_path / "own.npz"), "--out", str(tmp_path / "runs"),
                 cwd=tmp_path), 2, "g.json's recipe: translate_px 2: shifts belong to the affine augmentation")
    done = cli("--reproduce", str(path), "--dataset", str(tmp_path / "own.npz"), "--augment", "affine", "--epochs", "1",
               "--seeds", "1", "--out", str(tmp_path / "runs"), "--device", "cpu", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"shifts of up to 2 px beside the rotation (the recipe of {path})" in done.stdout
    assert json.loads((tmp_path / "runs" / "g" / "summary.json").read_text())["translate_px"] == 2
    saved = torch.load(tmp_path / "runs" / "g" / "checkpoint_seed0.pt", weights_only=False)
    assert saved["train_config"]["translate_px"] == 2


# --- Reliability, round four (issue 38) ---

def test_image_size_beside_a_built_in_dataset_is_refused(tmp_path):
    """It was ignored (even 0x0) and yet recorded in the study's identity."""
    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=50, n_test=10)
    for args in (["--budget", "3000", "--out", str(tmp_path / "runs")],
                 ["--reproduce", "zoo/lenet5.json", "--seeds", "1", "--out", str(tmp_path / "out")]):
        one_line(cli(*args, "--image-size", "0x0", "--data-dir", str(tmp_path / "data"), "--device", "cpu"), 2,
                 "--image-size 0x0: applies to your own images (--dataset PATH); mnist is a built-in dataset")
        one_line(cli(*args, "--channels", "gray", "--data-dir", str(tmp_path / "data"), "--device", "cpu"), 2,
                 "--channels gray: applies to your own images (--dataset PATH); mnist is a built-in dataset")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_quick_keeps_the_flags_the_user_gives_even_at_their_default_value(tmp_path):
    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=6000, n_test=20)
    common = ["--budget", "8000", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--device",
              "cpu", "--dry-run", "--workers", "1"]
    given = cli("--quick", "--trials", "50", "--final-top", "3", "--final-epochs", "15", *common)
    assert given.returncode == 0, given.stderr[-1500:]
    assert "50 trials x 5 epochs" in given.stdout and "then 9 final run(s) x 15 epochs" in given.stdout
    preset = cli("--quick", *common)
    assert "16 trials x 5 epochs" in preset.stdout and "then 3 final run(s) x 6 epochs" in preset.stdout


def test_dry_run_refuses_an_sqlite_storage_in_a_missing_folder_as_the_run_does(tmp_path):
    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=6000, n_test=20)
    url = f"sqlite:///{tmp_path / 'missing' / 's.db'}"
    args = ["--budget", "3000", "--storage", url, "--data-dir", str(tmp_path / "data"), "--device", "cpu",
            "--workers", "1", "--trials", "1", "--final-top", "0"]
    for extra in (["--dry-run"], []):
        one_line(cli(*args, *extra), 2, f"--storage {url}: the folder {tmp_path / 'missing'} does not exist")
    assert not (tmp_path / "missing").exists()


def test_export_onnx_without_its_packages_is_refused_before_training(tmp_path):
    """It was refused after the whole training (247 s of a 1-epoch run)."""
    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=50, n_test=10)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text("import sys\nsys.modules['onnx'] = None  # as if not installed\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    result = cli("--reproduce", "zoo/lenet5.json", "--seeds", "1", "--epochs", "1", "--export", "onnx", "--data-dir",
                 str(tmp_path / "data"), "--device", "cpu", "--out", str(tmp_path / "out"), env=env)
    one_line(result, 2, "ONNX export needs the optional packages: pip install -e '.[onnx]'")
    assert "Epoch" not in result.stdout and not (tmp_path / "out").exists()


def test_empty_classes_are_warned_about_in_the_plan(tmp_path):
    import numpy as np

    gen = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=gen.integers(0, 256, (60, 8, 8), dtype=np.uint8), y_train=np.arange(60) % 3 * 2)
    result = cli("--dataset", str(tmp_path / "d.npz"), "--budget", "3000", "--dry-run", "--device", "cpu",
                 "--workers", "1", "--out", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr[-1500:]
    assert "warning: " in result.stdout and "2 of 5 classes have no training image (1, 3)" in result.stdout


def test_reproduce_on_a_full_disk_is_one_line_and_leaves_no_truncated_checkpoint(tmp_path, small_disk):
    """It was a 33-line traceback and a cut checkpoint."""
    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=200, n_test=20)
    (small_disk / "out" / "lenet5").mkdir(parents=True)
    fill_disk(small_disk)
    result = cli("--reproduce", "zoo/lenet5.json", "--seeds", "1", "--epochs", "1", "--data-dir",
                 str(tmp_path / "data"), "--device", "cpu", "--workers", "1", "--out", str(small_disk / "out"))
    one_line(result, 1, f"cannot write {small_disk / 'out' / 'lenet5'}/")
    assert "No space left on device" in result.stderr
    assert not list((small_disk / "out" / "lenet5").iterdir())


@pytest.mark.slow
def test_a_full_disk_in_the_finals_saves_the_measured_seeds_first_and_names_the_file(tmp_path, small_disk):
    """torch.export.save aborted the process (exit 134): finals.json, the leaderboard and the report were lost."""
    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=6000, n_test=100)
    args = ["--budget", "3000", "--epochs", "1", "--sampler", "random", "--data-dir", str(tmp_path / "data"), "--out",
            str(small_disk), "--study", "s", "--device", "cpu", "--workers", "1", "--seeds", "1", "--final-epochs", "1",
            "--enqueue", "i1x28x28n10-conv_c8_k3-max_k2-conv_c16_k3-gap-conv_c10_k1_oc"]
    assert cli(*args, "--trials", "1", "--final-top", "0").returncode == 0
    fill_disk(small_disk, leave=40_000)  # the checkpoint and finals.json fit; the exports do not
    result = cli(*args, "--trials", "1", "--final-top", "1", "--finalize")
    one_line(result, 1, f"cannot write {small_disk / 's' / 'final'}/")
    assert "No space left on device" in result.stderr
    finals = json.loads((small_disk / "s" / "finals.json").read_text())
    (entry,) = finals.values()
    assert entry["seeds"] == [0] and entry["statuses"] == ["complete"] and entry["test_acc_mean"] > 0
    (trial,) = finals
    from reports.export import load_checkpoint

    load_checkpoint(small_disk / "s" / "final" / f"trial{trial}" / "checkpoint_seed0.pt")
    assert not list((small_disk / "s").rglob(".*.tmp"))


def test_channels_are_part_of_the_study_and_the_plan_says_them(tmp_path):
    import numpy as np

    gen = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=gen.integers(0, 256, (60, 8, 8, 3), dtype=np.uint8), y_train=np.arange(60) % 3)
    common = ["--dataset", str(tmp_path / "d.npz"), "--budget", "3000", "--device", "cpu", "--workers", "1", "--out",
              str(tmp_path / "runs"), "--study", "c", "--trials", "1", "--epochs", "1", "--final-top", "0"]
    gray = cli(*common, "--channels", "gray", "--dry-run")
    assert gray.returncode == 0 and "1 channel (--channels gray: 60 colour images converted to grey" in gray.stdout
    assert "warning: the validation split has 6 images: one image is 16.67 points" in gray.stdout
    assert cli(*common, "--channels", "gray").returncode == 0
    assert json.loads((tmp_path / "runs" / "c" / "settings.json").read_text())["channels"] == "gray"
    one_line(cli(*common, "--channels", "rgb"), 2, "channels")  # another --channels is another study
