import io
import re
import multiprocessing
import threading
import time

import pytest
from rich.console import Console

from search.live import SearchDisplay
from search.settings import SearchSettings
from tests.search.workers import tiny_settings


def _rendered(display: SearchDisplay, width: int) -> list[str]:
    console = Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)
    console.print(display)
    return console.file.getvalue().splitlines()


@pytest.mark.parametrize("width", [80, 200])
def test_one_line_per_worker_and_an_overall_line_that_never_wrap(width):
    display = SearchDisplay(Console(file=io.StringIO()), workers=2, trials=50, search_seconds=3600, final_seconds=600)
    display.update(0, {"trial": 12, "stage": "3-epoch rung", "epoch": 2, "epochs": 3, "val": 98.765})
    display.update(1, {"trial": 13, "stage": "full run with a very long description " * 3, "epoch": 0, "epochs": 15})
    lines = _rendered(display, width)
    assert len(lines) == 3 and all(len(line) <= width for line in lines)
    assert lines[0].startswith("w0  trial 12  3-epoch rung  epoch 2/3  val 98.77%")
    assert lines[1].startswith("w1  trial 13") and (width == 200 or lines[1].endswith("…"))
    assert "trained 0/50" in lines[2] and re.search(r"search ETA (0:59:59|1:00:00)", lines[2])
    display.update(0, {"done": 10, "eta_s": 1200.0})
    overall = _rendered(display, 200)[2]
    assert "trained 10/50" in overall and re.search(r"total ETA (0:29:59|0:30:00) \(with finals\)", overall)


def test_log_lines_go_above_the_live_lines_and_nothing_collides():
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    with SearchDisplay(console, workers=1, trials=4) as display:
        display.update(0, {"trial": 0, "stage": "full run", "epoch": 1, "epochs": 3, "val": 90.0})
        display.live.refresh()
        display.log("[w0] trial 0 complete: " + "x" * 100)
    text = out.getvalue()
    assert "[w0] trial 0 complete" in text and "w0  trial 0  full run  epoch 1/3" in text


def test_messages_from_worker_processes_reach_the_display():
    display = SearchDisplay(Console(file=io.StringIO(), width=200), workers=2, trials=4)
    logged = []
    display.log = logged.append
    read, write = multiprocessing.Pipe(duplex=False)
    stop = threading.Event()
    thread = display.forward({1: read}, stop)
    write.send(("state", 1, {"trial": 3, "stage": "full run", "epoch": 4, "epochs": 15, "val": 97.5}))
    write.send(("log", "[w1] trial 3 complete"))
    write.close()  # EOF: the thread ends on its own
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert logged == ["[w1] trial 3 complete"]
    assert display.lines()[1] == "w1  trial 3  full run  epoch 4/15  val 97.50%"


@pytest.mark.slow
def test_a_search_with_two_workers_shows_both_in_the_display(tmp_path):
    from search.runner import run_search
    from tests.synthetic import write_idx

    write_idx(tmp_path / "data" / "MNIST" / "raw", n_train=3000, n_test=50)
    settings = SearchSettings(**tiny_settings(tmp_path, trials=4, workers=2, data_dir=str(tmp_path / "data"),
                                              val_size=500))
    display = SearchDisplay(Console(file=io.StringIO(), width=120), workers=2, trials=4)
    logged, seen = [], {0: [], 1: []}
    display.log = logged.append
    update = display.update
    display.update = lambda worker, state: (seen[worker].append(state), update(worker, state))
    run_search(settings, display=display)
    assert any(line.startswith("[w1] trial") for line in logged) and any(line.startswith("[w0]") for line in logged)
    for worker in (0, 1):
        assert any("epoch" in s and s["epoch"] >= 1 for s in seen[worker]), worker
        assert seen[worker][-1]["stage"].startswith("done")
    assert any("done" in s for states in seen.values() for s in states)


def test_the_final_phase_has_its_lines_and_an_eta():
    """Issue 40 item 2: the progress showed -:--:-- for the whole final phase (50 minutes on a busy machine)."""
    display = SearchDisplay(Console(file=io.StringIO()), workers=2, trials=50)
    display.start_finals(planned_epochs=90, processes=2)
    assert _rendered(display, 200)[-1].startswith("final evaluation: 0/90 epochs at most")
    assert "ETA after the first epoch" in _rendered(display, 200)[-1]
    for seed in (0, 1):
        display.final_epoch(7, seed, 1, 15, 98.5 + seed, seconds=20.0)
    lines = _rendered(display, 200)
    assert lines[:2] == ["trial 7 seed 0  epoch 1/15  test 98.50%", "trial 7 seed 1  epoch 1/15  test 99.50%"]
    assert "final evaluation: 2/90 epochs at most" in lines[2] and re.search(r"ETA 0:14:(39|40)", lines[2])
    for epoch in range(2, 16):
        display.final_epoch(7, 0, epoch, 15, 99.0, seconds=20.0)
    assert not any(line.startswith("trial 7 seed 0") for line in _rendered(display, 200))  # a finished run leaves
