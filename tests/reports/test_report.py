import base64
import html
import os
import shutil
import subprocess
import json
import re

import pandas as pd
import torch
import pytest

from reports.final import final_evaluation, finalize, write_artifacts
from reports.html import pareto_front, write_report
from reports.leaderboard import LeaderboardWriter, write_leaderboard
from reports.reproduce import ReproduceError, resolve_source
from search.runner import run_worker
from search.settings import SearchSettings, open_study
from tests.search.workers import tiny_settings
from tests.synthetic import TINY_GENOME, tiny_splits
from training import TrainConfig


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished tiny search with one finalist, on synthetic data."""
    tmp = tmp_path_factory.mktemp("run")
    settings = SearchSettings(**tiny_settings(tmp, trials=4, target=50.0, budget=4000))
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    (settings.run_dir / "settings.json").write_text(json.dumps(settings.to_dict()))
    study = open_study(settings)
    run_worker(settings, study=study, splits=tiny_splits(), log=lambda line: None,
               callbacks=[LeaderboardWriter(settings)])
    finalize(study, settings, write_leaderboard(study, settings), top_k=1, epochs=2, seeds=[0, 1],
             log=lambda line: None, splits=tiny_splits(), on_final=lambda finals: write_leaderboard(study, settings))
    return settings


def test_final_columns_reach_the_leaderboard(searched):
    df = pd.read_csv(searched.run_dir / "leaderboard.csv")
    best = df[df["rank"] == 1].iloc[0]
    assert best["test_acc_min"] <= best["test_acc_mean"]
    assert best["meets_target"] in ("certain", "likely", "no")
    assert best["test_acc_low"] <= best["test_acc_mean"] and 0 <= best["seeds_at_target"] <= 1
    finals = json.loads((searched.run_dir / "finals.json").read_text())
    summary = finals[str(int(best["trial"]))]
    assert len(summary["per_epoch_test_acc"]) == 2 and len(summary["per_epoch_test_acc"][0]) == 2
    folder = searched.run_dir / "final" / f"trial{int(best['trial'])}"
    for name in ("checkpoint_seed0.pt", "checkpoint_seed1.pt", "model.pt2", "model.py", "metrics.csv"):
        assert (folder / name).is_file()


def test_finalizing_again_reuses_finished_finalists_and_retrains_on_other_seeds(searched, monkeypatch):
    import reports.final

    study = open_study(searched)
    trained = []
    real = reports.final.train_many

    def spy(jobs, *args, **kwargs):
        if jobs:
            trained.append([config.seed for _, config in jobs])
        return real(jobs, *args, **kwargs)

    monkeypatch.setattr(reports.final, "train_many", spy)
    lines = []
    before = json.loads((searched.run_dir / "finals.json").read_text())
    finals = finalize(study, searched, write_leaderboard(study, searched), top_k=1, epochs=2, seeds=[0, 1],
                      log=lines.append, splits=tiny_splits())
    assert trained == [] and finals == before
    assert any("already done with these seeds and epochs" in line for line in lines)
    finalize(study, searched, write_leaderboard(study, searched), top_k=1, epochs=2, seeds=[2],
             log=lines.append, splits=tiny_splits())
    assert trained == [[2]]
    folder = searched.run_dir / "final" / f"trial{next(iter(before))}"
    assert sorted(p.name for p in folder.glob("checkpoint_seed*.pt")) == ["checkpoint_seed2.pt"]  # only its result
    assert sorted(p.name for p in (folder / "unused").iterdir()) == ["checkpoint_seed0.pt", "checkpoint_seed1.pt"]
    finalize(study, searched, write_leaderboard(study, searched), top_k=1, epochs=2, seeds=[0, 1],
             log=lines.append, splits=tiny_splits())  # the seed-2 summary replaced the first one; 0 and 1 are kept
    assert trained == [[2]] and sum("reused from" in line for line in lines) == 2
    assert json.loads((searched.run_dir / "finals.json").read_text()) == before


def test_report_is_self_contained_with_plots_and_tables(searched):
    html_path, md_path = write_report(searched.run_dir)
    page = html_path.read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 4  # accuracy vs params, best so far, finalists per epoch, the confusion matrix
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for data in images)
    assert "http://" not in page and "https://" not in page
    assert "Top 10" in page and "Best design" in page and "Search settings" in page
    md = md_path.read_text()
    assert "## Top 10" in md and "| rank |" in md


def test_pareto_front_is_monotone(searched):
    df = pd.read_csv(searched.run_dir / "leaderboard.csv")
    front = pareto_front(df)
    assert front["params"].is_monotonic_increasing and front["val_acc"].is_monotonic_increasing


def test_resolve_source_by_rank_and_trial(searched):
    board = str(searched.run_dir / "leaderboard.csv")
    df = pd.read_csv(board)
    source = resolve_source(board, rank=1)
    assert source.genome.to_string() == df[df["rank"] == 1].iloc[0]["genome"]
    assert source.name == "tiny-rank1" and source.target == 50.0
    trial = int(df[df["rank"] == 2].iloc[0]["trial"])
    assert resolve_source(board, trial=trial).name == f"tiny-trial{trial}"
    with pytest.raises(ReproduceError, match="no row with rank 99"):
        resolve_source(board, rank=99)


def test_reproducing_a_leaderboard_row_keeps_the_studys_translation(searched, tmp_path):
    import shutil

    from reports.runfiles import RunFileError

    assert resolve_source(str(searched.run_dir / "leaderboard.csv")).translate_px == 0.0
    shutil.copy(searched.run_dir / "leaderboard.csv", tmp_path)
    settings = {**searched.to_dict(), "translate_px": 2.0}
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    assert resolve_source(str(tmp_path / "leaderboard.csv")).translate_px == 2.0
    (tmp_path / "settings.json").write_text(json.dumps({**settings, "translate_px": "2px"}))
    with pytest.raises(RunFileError, match="field 'translate_px' must be a number, got '2px'"):
        resolve_source(str(tmp_path / "leaderboard.csv"))


def test_malformed_leaderboard(tmp_path):
    path = tmp_path / "leaderboard.csv"
    path.write_text("trial,status\n1,complete\n")
    with pytest.raises(ReproduceError, match="not a BudgetNAS leaderboard"):
        resolve_source(str(path))


def test_final_evaluation_logs_notebook_lines_and_writes_artifacts(tmp_path):
    lines = []
    final = final_evaluation(TINY_GENOME, tiny_splits(), 2, [0, 1], TrainConfig(device="cpu", batch_size=32),
                             log=lines.append)
    assert lines[0] == "seed 0:" and lines[3] == "seed 1:"  # one after the other: a notebook block per seed
    assert all("train loss" in line and "test acc" in line for line in lines[1:3] + lines[4:6])
    assert lines[-1].startswith("test accuracy over 2 seed(s)")
    side = []  # side by side, the epochs of seeds 7 and 8 interleave: one row per epoch, a column per seed
    final_evaluation(TINY_GENOME, tiny_splits(), 2, [7, 8, 9], TrainConfig(device="cpu", batch_size=32),
                     log=side.append, processes=2)
    assert side[0] == "seeds 7, 8: test accuracy after each epoch, one column per seed"
    rows = [line for line in side[1:3]]
    assert all(row.strip().startswith("Epoch") and "seed 7: " in row and "seed 8: " in row for row in rows)
    assert side[3] == "seed 9:" and "train loss" in side[4]  # the odd one out trains alone
    assert final.min <= final.mean and len(final.final_accs) == 2
    written = write_artifacts(tmp_path, TINY_GENOME, final, tiny_splits())
    assert {p.name for p in written} - {"model.onnx"} == {"checkpoint_seed0.pt", "checkpoint_seed1.pt", "model.pt2",
                                                          "model.py", "metrics.csv"}
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert list(metrics["seed"]) == [0, 0, 1, 1] and {"train_loss", "test_acc"} <= set(metrics.columns)


def _board(val_acc: float, trial: int = 3) -> pd.DataFrame:
    return pd.DataFrame([{"rank": 1, "trial": trial, "status": "complete", "params": 4900, "val_acc": val_acc,
                          "epochs": 15, "images": 55000},
                         {"rank": None, "trial": 4, "status": "pruned", "params": 4000, "val_acc": 80.0,
                          "epochs": 1, "images": 55000}])


def test_headline_when_the_target_is_missed_and_no_final_evaluation_ran():
    from reports.html import headline

    lines = headline(_board(91.1), {"target": 99.4}, {})
    assert "4,900 params, validation accuracy 91.10% after 15 epochs x 55,000 training images" in lines[0]
    assert "target 99.4% NOT met on validation" in lines[0]
    assert "Final evaluation skipped" in lines[1] and "1 trial(s) were stopped earlier" in lines[2]


def _final(accs):
    import statistics

    return {"test_acc_mean": statistics.fmean(accs), "test_acc_std": statistics.stdev(accs), "test_acc_min": min(accs),
            "seeds": list(range(len(accs))), "per_epoch_test_acc": [[98.0, a] for a in accs]}


def test_headline_when_the_target_is_met_for_certain_likely_or_not():
    from reports.html import headline

    lines = headline(_board(99.5), {"target": 99.4}, {"3": _final([99.44, 99.46, 99.45, 99.43, 99.47])})
    assert "test accuracy 99.45 ± 0.02% (min 99.43%, 95% lower bound 99.43%) over 5 seeds" in lines[0]
    one_seed = {**_final([99.44, 99.46]), "per_epoch_test_acc": [[98.0, 99.44]], "test_acc_mean": 99.44}
    one = headline(_board(99.5), {"target": 99.4}, {"3": one_seed})[0]
    assert "test accuracy 99.44% on 1 seed," in one and "±" not in one
    assert "target 99.4% MET, certain" in lines[0] and "100% of the seeds reached it" in lines[0]
    likely = headline(_board(99.5), {"target": 99.4}, {"3": _final([99.37, 99.50, 99.42])})[0]
    assert "met on the mean but not certain (LIKELY" in likely and "67% of the seeds" in likely
    missed = headline(_board(99.5), {"target": 99.4}, {"3": _final([99.28, 99.40, 99.43])})[0]
    assert "target 99.4% NOT met (the test mean is below it)" in missed


def test_report_reads_well(searched):
    html_path, md_path = write_report(searched.run_dir, run_info={"wall time": "0:01:02", "device": "cpu"})
    page = html_path.read_text()
    assert "class='headline'" in page and "wall time" in page and "exported (trial" in page
    assert "_r dropout rate" in page and "RF (px)" in page and "MACs" in page
    assert re.search(r"<td>\d{1,3},\d{3}</td>", page)  # thousands separators
    board = pd.read_csv(searched.run_dir / "leaderboard.csv", dtype=str)
    for column in ("trial", "params", "rf", "macs", "best_epoch", "epochs", "images", "seed"):
        assert not board[column].dropna().str.contains(".", regex=False).any(), column  # no 5.0 for 5


@pytest.mark.parametrize("accs, target, expected_seeds", [
    ({0: 99.9, 1: 99.8, 2: 99.85}, 99.0, [0, 1, 2]),  # clearly above: stops at 3
    ({0: 90.0, 1: 90.2, 2: 90.1}, 99.0, [0, 1, 2]),  # clearly below: stops at 3
    ({0: 99.30, 1: 99.50, 2: 99.45}, 99.4, list(range(7))),  # open: two rounds of two seeds at 99.6 decide it
    ({0: 99.30, 1: 99.50, 2: 99.45, 7: 99.3}, 99.4, list(range(8))),  # never decided: up to --max-seeds
], ids=["clear-yes", "clear-no", "borderline", "capped"])
def test_seeds_auto_races_only_open_verdicts(searched, monkeypatch, tmp_path, accs, target, expected_seeds):
    """``--seeds auto`` on tiny synthetic data: each seed's test accuracy is set, so the rule alone decides."""
    from dataclasses import replace

    import reports.final
    from blocks import build_model
    from training import EpochMetrics, TrainResult

    def fake_train_many(jobs, splits, processes=1, on_epoch=None):
        for index, (genome, config) in enumerate(jobs):
            acc = accs.get(config.seed, 99.6 if len(accs) == 3 else 99.3)
            yield index, TrainResult("complete", [EpochMetrics(1, 0.1, 99.0, None, None, 0.1, acc)], 0.0, "cpu",
                                     config.seed, 0, {}, build_model(genome))

    monkeypatch.setattr(reports.final, "train_many", fake_train_many)
    settings = replace(searched, out=str(tmp_path), target=target)
    study = open_study(searched)
    lines = []
    finals = finalize(study, settings, write_leaderboard(study, searched), top_k=1, epochs=1, seeds=[0, 1, 2],
                      log=lines.append, splits=tiny_splits(), processes=2, max_seeds=8)
    (summary,) = finals.values()
    assert summary["seeds"] == expected_seeds
    assert summary["meets_target"] in ("certain", "no", "likely")
    assert any("verdict still open" in line for line in lines) == (len(expected_seeds) > 3)


def _written_run(tmp_path, rows):
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame(rows).to_csv(run / "leaderboard.csv", index=False)
    (run / "settings.json").write_text(json.dumps({"study": "s", "target": 99.0}))
    return run


GENOME = "i1x28x28n10-conv_c8_k3-gap-conv_c10_k1_oc"


def test_report_cells_are_blank_or_yes_no_and_name_the_exported_seed(searched):
    html_path, md_path = write_report(searched.run_dir)
    page, md = html_path.read_text(), md_path.read_text()
    top = page[page.index("<h2>Top 10</h2>"):page.index("<h2>Best design</h2>")]
    for word in (">None<", ">False<", ">True<", ">nan<", ">NaN<", "<NA>"):
        assert word not in top, word
    for word in ("| None |", "| False |", "| True |", "| nan |"):
        assert word not in md, word
    assert "model.pt2 and model.onnx hold seed 0" in page


def test_report_of_a_run_where_no_trial_finished(tmp_path):
    import warnings

    run = _written_run(tmp_path, [
        {"rank": None, "trial": 0, "status": "pruned", "genome": GENOME, "params": 900, "val_acc": 97.6, "epochs": 1},
        {"rank": None, "trial": 1, "status": "rejected", "genome": GENOME, "params": 9000, "val_acc": None}])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "No artists with labels" included
        html_path, md_path = write_report(run)
    page, md = html_path.read_text(), md_path.read_text()
    assert "No trial has finished its training yet." in page and "No trial has finished its training yet." in md
    assert "1 stopped at an earlier rung or are still training (best validation accuracy there 97.60%)" in page
    assert "near chance" not in page


def test_headline_warns_when_accuracies_are_near_chance(tmp_path):
    from reports.html import headline

    board = pd.DataFrame([{"rank": 1, "trial": 0, "status": "complete", "genome": GENOME, "params": 900,
                           "val_acc": 18.5, "epochs": 1, "images": 1000}])
    lines = headline(board, {"target": 99.0}, {})
    assert any("is near chance (10% for 10 classes)" in line for line in lines)
    board.loc[0, "val_acc"] = 60.0
    assert not any("near chance" in line for line in headline(board, {}, {}))


def test_finalist_plot_has_whole_epochs_and_keeps_low_accuracies_in_view(searched):
    from reports.html import plot_final_curves

    finals = {"0": {"per_epoch_test_acc": [[60.0, 85.0, 91.0], [62.0, 86.0, 92.5]]}}
    fig = plot_final_curves(finals, pd.DataFrame({"trial": [0], "params": [900]}))
    ax = fig.axes[0]
    assert all(float(t).is_integer() for t in ax.get_xticks())
    assert ax.get_ylim()[0] <= 91.0  # the last epoch's accuracies are in view


def _chromium() -> str | None:
    return os.environ.get("BUDGETNAS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium (set BUDGETNAS_CHROMIUM to its binary)")
def test_report_tables_keep_their_rows_short_in_a_narrow_browser_window(searched, tmp_path):
    """In an 800-px window the top-10 table scrolls sideways instead of squeezing its genome column to a sliver one
    character wide (each row then ran to dozens of lines)."""
    html_path, _ = write_report(searched.run_dir)
    probe = tmp_path / "probe.html"
    probe.write_text(html_path.read_text().replace("</body>", "<script>document.title = JSON.stringify("
                     "[...document.querySelectorAll('table.g tbody tr')].map(r => r.getBoundingClientRect().height))"
                     "</script></body>"))
    dom = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=800,1000",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    heights = json.loads(html.unescape(re.search(r"<title>(.*?)</title>", dom).group(1)))
    assert heights and max(heights) < 150, heights  # a few lines of monospace (squeezed: 600-1,600 px)


# --- Reliability, round four (issue 38): races that resume, one final evaluation at a time ---

@pytest.fixture
def racing(tmp_path, monkeypatch):
    """A tiny finished search whose finalist's verdict never settles (``decided`` patched), and a spy on what the
    final evaluation trains; ``interrupt_at`` makes training the given seed raise KeyboardInterrupt, as a kill
    would stop the process there."""
    import reports.final

    settings = SearchSettings(**tiny_settings(tmp_path, trials=2, target=50.0, budget=4000))
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(settings)
    run_worker(settings, study=study, splits=tiny_splits(), log=lambda line: None)
    monkeypatch.setattr(reports.final, "decided", lambda accs, target: False)
    state = {"trained": [], "interrupt_at": None}
    real = reports.final.train_many

    def spy(jobs, *args, **kwargs):
        seeds = [config.seed for _, config in jobs]
        if jobs:
            state["trained"].append(seeds)
        if state["interrupt_at"] in seeds:
            raise KeyboardInterrupt
        return real(jobs, *args, **kwargs)

    monkeypatch.setattr(reports.final, "train_many", spy)

    def run(**kwargs):
        lines = []
        finalize(study, settings, write_leaderboard(study, settings), top_k=1, epochs=2, seeds=[0, 1, 2],
                 max_seeds=5, log=lines.append, splits=tiny_splits(), **kwargs)
        return lines

    return settings, study, state, run


def test_a_killed_race_keeps_every_finished_seed_and_resumes_from_it(racing):
    settings, study, state, run = racing
    state["interrupt_at"] = 4
    with pytest.raises(KeyboardInterrupt):
        run()
    assert state["trained"] == [[0, 1, 2], [3], [4]]
    (trial,) = json.loads((settings.run_dir / "finals.json").read_text())
    assert json.loads((settings.run_dir / "finals.json").read_text())[trial]["seeds"] == [0, 1, 2, 3]
    state["trained"].clear()
    with pytest.raises(KeyboardInterrupt):  # killed again in the same place: finals.json does not go back
        run()
    assert state["trained"] == [[4]]
    assert json.loads((settings.run_dir / "finals.json").read_text())[trial]["seeds"] == [0, 1, 2, 3]
    state["trained"].clear()
    state["interrupt_at"] = None
    lines = run()
    assert state["trained"] == [[4]] and sum("reused from" in line for line in lines) == 4
    summary = json.loads((settings.run_dir / "finals.json").read_text())[trial]
    assert summary["seeds"] == [0, 1, 2, 3, 4] and summary["statuses"] == ["complete"] * 5


def test_checkpoints_of_another_config_are_not_reused_nor_presented(racing):
    from reports.final import reusable_run
    from blocks import Genome

    settings, study, state, run = racing
    run()
    (trial,) = json.loads((settings.run_dir / "finals.json").read_text())
    folder = settings.run_dir / "final" / f"trial{trial}"
    genome = Genome.from_string(pd.read_csv(settings.run_dir / "leaderboard.csv").query("rank == 1").iloc[0]["genome"])
    config = TrainConfig(epochs=2, seed=0, evaluate_test=True, device=settings.device, augment=settings.augment,
                         **settings.train_overrides)
    assert reusable_run(folder, genome, config, tiny_splits()) is not None
    from dataclasses import replace

    assert reusable_run(folder, genome, replace(config, epochs=3), tiny_splits()) is None
    assert reusable_run(folder, genome, replace(config, lr=config.lr / 2), tiny_splits()) is None
    state["trained"].clear()
    finalize(study, settings, write_leaderboard(study, settings), top_k=1, epochs=3, seeds=[0, 1, 2],
             log=lambda line: None, splits=tiny_splits())  # other epochs: every seed trained again
    assert state["trained"] == [[0, 1, 2]]
    assert sorted(p.name for p in folder.glob("checkpoint_seed*.pt")) == [f"checkpoint_seed{s}.pt" for s in (0, 1, 2)]
    assert sorted(p.name for p in (folder / "unused").iterdir()) == ["checkpoint_seed3.pt", "checkpoint_seed4.pt"]


def test_a_second_final_evaluation_of_the_same_run_is_refused(racing):
    from reports.final import FinalsBusyError, finals_lock

    settings, study, state, run = racing
    with finals_lock(settings.run_dir):
        with pytest.raises(FinalsBusyError, match=f"{settings.run_dir}: another command \\(pid {os.getpid()}\\) is"):
            run()
    assert state["trained"] == [] and not (settings.run_dir / "finals.json").exists()
    run()  # the lock went with its holder
    assert state["trained"]


def test_a_crash_in_the_int8_conversion_loses_no_trained_seed(racing, monkeypatch):
    """measure_int8 ran before anything was written: a converter crash after training lost every seed."""
    import reports.final

    settings, study, state, run = racing
    settings.int8_finals = True

    def crash(*args, **kwargs):
        raise RuntimeError("the converter crashed")

    monkeypatch.setattr(reports.final, "measure_int8", crash)
    monkeypatch.setattr(reports.final, "decided", lambda accs, target: True)
    with pytest.raises(RuntimeError, match="converter crashed"):
        run()
    (trial,) = json.loads((settings.run_dir / "finals.json").read_text())
    assert json.loads((settings.run_dir / "finals.json").read_text())[trial]["seeds"] == [0, 1, 2]
    folder = settings.run_dir / "final" / f"trial{trial}"
    assert sorted(p.name for p in folder.glob("checkpoint_seed*.pt")) == [f"checkpoint_seed{s}.pt" for s in (0, 1, 2)]


def test_the_final_evaluation_stops_at_the_smallest_certain_design_and_the_headline_names_it(tmp_path, monkeypatch):
    """Issue 36: the finals start from the smallest design that met the target on validation and move up the front
    until one is certain; larger ones are not trained once the answer is known."""
    import reports.final
    from reports.html import headline

    settings = SearchSettings(**tiny_settings(tmp_path, target=50.0, budget=4000))
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    genomes = {w: f"i1x12x12n4-conv_c{w}_k3-max_k2-conv_c{w}_k3-gap-conv_c4_k1_b0_oc" for w in (4, 6, 8)}
    from budgets import analyze
    from blocks import Genome

    ranked = pd.DataFrame([{"rank": i + 1, "trial": i, "status": "complete", "genome": g,
                            "params": analyze(Genome.from_string(g)).params, "val_acc": 60.0 + i, "epochs": 1,
                            "images": 512, "ram": 1000, "flash": 500} for i, g in enumerate(genomes.values())])
    certain_at = {"i1x12x12n4-conv_c6_k3-max_k2-conv_c6_k3-gap-conv_c4_k1_b0_oc"}
    real = reports.final.FinalResult.summary

    def summary(self, target, *args, **kwargs):  # the verdicts this test needs, whatever the tiny runs score
        out = real(self, target, *args, **kwargs)
        out["meets_target"] = "certain" if self.genome in certain_at else "no"
        return out

    monkeypatch.setattr(reports.final.FinalResult, "summary", summary)
    lines = []
    finals = finalize(None, settings, ranked, top_k=3, epochs=1, seeds=[0], log=lines.append, splits=tiny_splits())
    assert set(finals) == {"0", "1"}  # trial 2 (the largest) was not trained
    assert any("the 1 larger candidate(s) cannot give a smaller answer; not trained" in line for line in lines)
    said = headline(ranked, {"target": 50.0}, finals)
    assert said[0].startswith(f"Smallest certain design, trial 1: {int(ranked.loc[1, 'params']):,} params (RAM 1,000 B, "
                              "flash 500 B)")
    finals["0"]["test_acc_mean"] = 99.9  # the uncertain smaller one scored higher: named beside the answer
    assert any(line.startswith("Most accurate design evaluated, trial 0:") for line in headline(ranked, {"target": 50.0},
                                                                                             finals))


def test_a_search_ends_by_saying_what_it_got_where_the_files_are_and_what_next(searched):
    from reports.html import ending

    lines = ending(searched.run_dir, pd.read_csv(searched.run_dir / "leaderboard.csv"))
    assert lines[0].startswith(("Smallest certain design, trial", "Best design, trial")) and "test accuracy" in lines[0]
    assert any(line.startswith("files of trial") and "model.py" in line and "checkpoint_seed" not in line
               for line in lines)
    assert lines[-1].startswith("next: ")


def test_final_epoch_lines_of_finalists_side_by_side_say_whose_they_are():
    """Issue 40 item 2: untagged 'Epoch 2 ...' lines of two finalists interleaved."""
    from reports.final import _epoch_logger
    from training import EpochMetrics

    lines = []
    log = _epoch_logger([("trial 3", [0], [0]), ("trial 1", [1, 2], [2, 3])], lines.append, [[0], [1, 2]])
    for epoch in (1, 2):
        for index in (1, 0, 2):
            log(index, EpochMetrics(epoch, 0.1, 99.0, None, None, 0.1, 98.0 + index, seconds=1.0))
    epochs = [line for line in lines if "Epoch" in line]
    assert len(epochs) == 4
    assert all(line.strip().startswith(("[trial 3 seed 0] Epoch", "[trial 1] Epoch")) for line in epochs)
    assert any("seed 2:  99.00%" in line and "seed 3: 100.00%" in line for line in epochs)


def test_per_class_figures_name_the_hard_class(tmp_path, monkeypatch):
    """Issue 39 item 1: which classes fail was found only with a hand-written script. A synthetic set whose class 3
    is made hard (its test images are other classes' images, so the model cannot recognise them)."""
    from dataclasses import replace

    from reports.classes import class_summary, confusion_matrix
    from reports.html import headline, write_report

    splits = tiny_splits()
    hard = splits.test_y == 3
    test_x = splits.test_x.clone()
    zeros = splits.test_x[splits.test_y == 0]
    test_x[hard] = zeros[torch.arange(int(hard.sum())) % len(zeros)]
    splits = replace(splits, test_x=test_x, classes=["north", "east", "south", "west"])
    settings = SearchSettings(**tiny_settings(tmp_path, trials=2, budget=4000, study="classes"))
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    (settings.run_dir / "settings.json").write_text(json.dumps(settings.to_dict()))
    study = open_study(settings)
    run_worker(settings, study=study, splits=tiny_splits(), log=lambda line: None)
    lines, progress = [], []
    finals = finalize(study, settings, write_leaderboard(study, settings), top_k=1, epochs=3, seeds=[0, 1],
                      log=lines.append, splits=splits, on_final=lambda f: write_leaderboard(study, settings, f),
                      on_progress=lambda *epoch: progress.append(epoch))
    (entry,) = finals.values()
    (trial,) = finals  # the live display's feed: every epoch of every final run, by trial and seed
    assert sorted((t, s, e) for t, s, e, *_ in progress) == [(int(trial), s, e) for s in (0, 1) for e in (1, 2, 3)]
    assert set(entry["per_class"]) == {"north", "east", "south", "west"}
    assert entry["worst_class"]["name"] == "west" and entry["per_class"]["west"]["recall"] < 20
    assert sum(map(sum, entry["confusion"])) == 2 * len(splits.test_y)  # two seeds summed
    assert len(entry["balanced_acc"]) == 2 and entry["balanced_acc_mean"] < entry["test_acc_mean"]
    assert any("worst class 'west'" in line for line in lines)
    said = headline(write_leaderboard(study, settings), settings.to_dict(), finals)
    assert any("the worst class, 'west', is recognised" in line for line in said)
    _, md = write_report(settings.run_dir)
    text = md.read_text()
    assert "## Per class: trial" in text and "| west |" in text and "Confusion matrix, its seeds summed" in text
    assert confusion_matrix(torch.tensor([1, 1]), torch.tensor([0, 1]), 2) == [[0, 1], [0, 1]]
    assert class_summary([[[0, 1], [0, 1]]], ["a", "b"])["balanced_acc"] == [50.0]


def test_metric_balanced_drives_the_target_and_the_verdict_on_imbalanced_classes(tmp_path):
    """Issue 39 item 1: --metric balanced makes the finals' test figures (and so the verdict) balanced accuracies,
    the same as the per-class figures say; the search's validation accuracies are balanced too."""
    from dataclasses import replace

    splits = tiny_splits()
    keep_test = torch.cat([(splits.test_y != 3).nonzero().flatten(), (splits.test_y == 3).nonzero().flatten()[:3]])
    splits = replace(splits, test_x=splits.test_x[keep_test], test_y=splits.test_y[keep_test])  # class 3 is rare
    settings = SearchSettings(**tiny_settings(tmp_path, trials=2, budget=4000, study="balanced", target=50.0,
                                              metric="balanced"))
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(settings)
    run_worker(settings, study=study, splits=splits, log=lambda line: None)
    trained = [t for t in study.get_trials() if t.user_attrs.get("status") == "complete"]
    assert trained and all(t.user_attrs["train_config"]["metric"] == "balanced" for t in trained)
    finals = finalize(study, settings, write_leaderboard(study, settings), top_k=1, epochs=2, seeds=[0, 1],
                      log=lambda line: None, splits=splits)
    (entry,) = finals.values()
    per_seed = [run[-1] for run in entry["per_epoch_test_acc"]]
    assert per_seed == pytest.approx(entry["balanced_acc"], abs=1e-3)  # the verdict's figures are balanced
    from reports.verdict import verdict

    assert entry["meets_target"] == verdict(per_seed, 50.0)
    from search.settings import SearchError

    with pytest.raises(SearchError, match="metric"):  # another metric is another study
        open_study(SearchSettings(**tiny_settings(tmp_path, trials=2, budget=4000, study="balanced", target=50.0)))


def test_an_int8_race_decides_on_the_int8_accuracies_of_every_seed_so_far(racing, monkeypatch):
    """The race judged int8 accuracies measured before the round's new seeds were (one round late)."""
    import reports.final
    from reports.tflite import TflmMeasurement

    settings, study, state, run = racing
    settings.int8_finals = True

    def fake_int8(final, genome, full, log):
        for seed in final.seeds:
            final.int8.setdefault(seed, TflmMeasurement(90.0, 1000, 1000))

    monkeypatch.setattr(reports.final, "measure_int8", fake_int8)
    monkeypatch.setattr(reports.final, "decided", lambda accs, target: len(accs) >= 3)
    run()
    (entry,) = json.loads((settings.run_dir / "finals.json").read_text()).values()
    assert state["trained"] == [[0, 1, 2]] and entry["seeds"] == [0, 1, 2] and len(entry["int8_test_acc"]) == 3
