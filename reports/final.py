"""Final evaluation: retrain a genome from scratch on the full training set over several seeds and
report test accuracy (mean, std, min, per epoch); write checkpoint, model.pt2, model.onnx, model.py, metrics CSV.

``finalize`` does it for the top trials of a finished search (the CLI composes search -> finalize).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
import torch

from blocks import BudgetNASError, Genome
from reports.classes import class_summary, confusion_matrix
from reports.export import ExportError, export_onnx, export_program, save_checkpoint, standalone_source
from reports.runfiles import atomic_write, load_finals, save_finals
from reports.tflite import CALIBRATION_IMAGES, Int8Error, Int8Model, TflmMeasurement
from reports.verdict import decided, lower_bound, share_at_target, verdict
from search.ranking import finalists
from training import EpochMetrics, Splits, TrainConfig, TrainResult, load_splits, resolve_device
from training.parallel import train_many, waves

__all__ = ["FinalResult", "FinalsBusyError", "checkpoint_int8", "final_evaluation", "finalize", "finals_lock",
           "measure_classes", "measure_int8", "reusable_run", "save_run_checkpoint", "write_artifacts", "write_exports"]


@dataclass
class FinalResult:
    """Test accuracy of one genome over seeds; ``per_seed[i]`` holds that seed's per-epoch metrics."""

    genome: str
    params: int
    seeds: list[int]
    per_seed: list[list[dict]]
    statuses: list[str]
    runs: list[TrainResult] = field(default_factory=list, repr=False)  # trained models, one per seed
    int8: dict[int, TflmMeasurement] = field(default_factory=dict)  # seed -> its int8 model measured in TFLM
    int8_models: dict[int, Int8Model] = field(default_factory=dict, repr=False)
    int8_error: str | None = None  # why the int8 export or its measurement failed
    confusions: dict[int, list[list[int]]] = field(default_factory=dict)  # seed -> test confusion matrix
    classes: list[str] = field(default_factory=list)  # class names, by label (``measure_classes``)

    @property
    def final_accs(self) -> list[float]:
        return [epochs[-1]["test_acc"] for epochs in self.per_seed if epochs and epochs[-1]["test_acc"] is not None]

    @property
    def int8_accs(self) -> list[float]:
        return [self.int8[seed].accuracy for seed in self.seeds if seed in self.int8]

    def judged_accs(self, on_int8: bool) -> list[float]:
        """The accuracies the target is judged on: int8 in TFLM (``--precision int8``), else fp32."""
        return self.int8_accs if on_int8 else self.final_accs

    @property
    def mean(self) -> float:
        return statistics.fmean(self.final_accs) if self.final_accs else float("nan")

    @property
    def std(self) -> float:
        return statistics.stdev(self.final_accs) if len(self.final_accs) > 1 else 0.0

    @property
    def min(self) -> float:
        return min(self.final_accs) if self.final_accs else float("nan")

    def summary(self, target: float | None, on_int8: bool = False, max_ram: int | None = None,
                max_flash: int | None = None) -> dict:
        """finals.json's entry: mean, std, min, the lower bound and the verdict (``reports.verdict``), per-epoch runs.

        With int8 measurements: each seed's int8 accuracy in TFLM, their mean, min and bound, the arena and
        flatbuffer bytes, and the measured figures checked against ``max_ram`` / ``max_flash``. ``on_int8``: the
        verdict and the share of seeds at target are of the int8 accuracies (``judged_on``)."""
        accs = self.final_accs
        judged = self.judged_accs(on_int8)
        out = {"test_acc_mean": round(self.mean, 4), "test_acc_std": round(self.std, 4),
               "test_acc_min": round(self.min, 4), "test_acc_low": _rounded(lower_bound(accs)),
               "seeds_at_target": None if target is None else _rounded(share_at_target(judged, target)),
               "meets_target": verdict(judged, target), "judged_on": "int8" if on_int8 else "fp32",
               "seeds": self.seeds, "statuses": self.statuses,
               "per_epoch_test_acc": [[e["test_acc"] for e in epochs] for epochs in self.per_seed]}
        if self.int8_error:
            out["int8_error"] = self.int8_error
        matrices = [self.confusions[seed] for seed in self.seeds if seed in self.confusions]
        if matrices:
            out.update(class_summary(matrices, self.classes))
        if self.int8:
            int8 = self.int8_accs
            arena = max(m.arena_bytes for m in self.int8.values())
            flatbuffer = max(m.tflite_bytes for m in self.int8.values())
            out.update({"int8_test_acc": [round(a, 4) for a in int8],
                        "int8_test_acc_mean": round(statistics.fmean(int8), 4), "int8_test_acc_min": round(min(int8), 4),
                        "int8_test_acc_low": _rounded(lower_bound(int8)), "arena_bytes": arena,
                        "tflite_bytes": flatbuffer,
                        "measured_violations": [*([f"arena {arena:,} B > --max-ram {max_ram:,} B"]
                                                  if max_ram is not None and arena > max_ram else []),
                                                *([f"flatbuffer {flatbuffer:,} B > --max-flash {max_flash:,} B"]
                                                  if max_flash is not None and flatbuffer > max_flash else [])]})
        return out


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def final_evaluation(genome: Genome, full: Splits, epochs: int, seeds: list[int], base: TrainConfig | None = None,
                     log: Callable[[str], None] = print, processes: int = 1) -> FinalResult:
    """Train ``genome`` on ``full`` (no validation split) once per seed, evaluating the test set every epoch.

    Prints a notebook-style log line per epoch. ``result.runs`` holds the trained models. ``processes`` > 1
    on CPU trains the seeds side by side, one single-threaded process each (``training.parallel``).
    """
    jobs = _final_jobs(genome, epochs, seeds, base or TrainConfig())
    logger = _epoch_logger([("", list(range(len(jobs))), list(seeds))], log, waves(jobs, processes, full.device.type))
    results = dict(train_many(jobs, full, processes, on_epoch=logger))
    return _final_result(genome, [results[i] for i in range(len(jobs))], log)


def _final_jobs(genome: Genome, epochs: int, seeds: list[int], base: TrainConfig) -> list[tuple[Genome, TrainConfig]]:
    return [(genome, replace(base, epochs=epochs, seed=seed, evaluate_test=True)) for seed in seeds]


def _epoch_logger(groups: list[tuple[str, list[int], list[int]]], log: Callable[[str], None],
                  batches: list[list[int]]) -> Callable[[int, EpochMetrics], None]:
    """Per-epoch lines for runs whose epochs arrive interleaved. ``groups``: (title, job indices, seeds), one per
    finalist; ``batches``: the job indices that train side by side (``training.parallel.waves``). Runs of one group in
    one batch get one row per epoch, once each of them has finished it, with a column per seed; a run alone gets
    notebook lines (train loss and accuracy, test loss and accuracy). No line mixes runs, and with a title every epoch
    line carries it (``[trial 3 seed 1] Epoch 4: ...``), so that finalists training side by side can be told apart."""
    units: dict[int, tuple[str, list[int], list[int]]] = {}  # job index -> (title, its unit's indices, their seeds)
    for title, indices, seeds in groups:
        seed_of = dict(zip(indices, seeds))
        for batch in batches:
            unit = [i for i in batch if i in seed_of]
            for i in unit:
                units[i] = (title, unit, [seed_of[j] for j in unit])
    pending: dict[tuple[int, int], dict[int, EpochMetrics]] = {}  # (first index of the unit, epoch) -> metrics so far

    def on_epoch(index: int, m: EpochMetrics) -> None:
        title, unit, seeds = units[index]
        if len(unit) == 1:
            if m.epoch == 1:
                log(f"{title + ' ' if title else ''}seed {seeds[0]}:")
            tag = f"[{title} seed {seeds[0]}] " if title else ""  # runs of several finalists interleave
            log(f"  {tag}Epoch {m.epoch:>2}: train loss {m.train_loss:.4f}, train acc {m.train_acc:.2f}% | "
                f"test loss {m.test_loss:.4f}, test acc {m.test_acc:.2f}%  ({m.seconds:.1f} s)")
            return
        row = pending.setdefault((unit[0], m.epoch), {})
        if m.epoch == 1 and not row:
            log(f"{title + ' ' if title else ''}seeds {', '.join(map(str, seeds))}: test accuracy after each epoch, "
                "one column per seed")
        row[index] = m
        if len(row) == len(unit):
            del pending[(unit[0], m.epoch)]
            cells = "  ".join(f"seed {seed}: {row[i].test_acc:6.2f}%" for i, seed in zip(unit, seeds))
            log(f"  {'[' + title + '] ' if title else ''}Epoch {m.epoch:>2}  {cells}  "
                f"({max(r.seconds for r in row.values()):.1f} s an epoch)")
    return on_epoch


def _final_result(genome: Genome, runs: list[TrainResult], log: Callable[[str], None], title: str = "") -> FinalResult:
    for result in runs:
        if result.status != "complete":
            log(f"  seed {result.seed} ended with status {result.status}")
    final = FinalResult(genome.to_string(), runs[0].params if runs else 0, [r.seed for r in runs],
                        [[asdict(m) for m in r.epochs] for r in runs], [r.status for r in runs], runs)
    log(f"{title + ': ' if title else ''}test accuracy over {len(final.final_accs)} seed(s): {final.mean:.2f} ± {final.std:.2f} % "
        f"(min {final.min:.2f} %)")
    return final


def save_run_checkpoint(out_dir: Path, genome: Genome, result: TrainResult, full: Splits) -> Path:
    """``checkpoint_seed<N>.pt`` of one finished run, written all or nothing; its ``train_config`` records the
    normalisation, dataset and classes besides the training knobs (``reusable_run`` reads them back)."""
    path = out_dir / f"checkpoint_seed{result.seed}.pt"
    config = {**result.config, "normalize": {"mean": list(full.mean), "std": list(full.std)},
              "dataset": full.name, "classes": full.classes}
    save_checkpoint(path, result.model, genome, config, result.seed, [asdict(m) for m in result.epochs])
    return path


def write_exports(out_dir: Path, genome: Genome, final: FinalResult, full: Splits,
                  log: Callable[[str], None] = print, require_onnx: bool = False) -> list[Path]:
    """model.pt2 and model.onnx (first seed), model.int8.tflite, model.int8.json and the firmware sources
    (``reports.firmware``: model_data.cc / .h, model_ops.h, model_example.cc; first seed, when measured:
    ``measure_int8``), metrics.csv, and model.py last (``_already_evaluated`` takes it as the sign that all are
    there). Every file is written all or nothing. Without the optional ONNX packages, model.onnx is skipped with one
    line (an error if ``require_onnx``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    results = final.runs
    if results:
        export_program(results[0].model, genome, out_dir / "model.pt2")
        written.append(out_dir / "model.pt2")
        try:
            export_onnx(results[0].model, genome, out_dir / "model.onnx", full.mean, full.std, full.classes,
                        seed=results[0].seed)
            written.append(out_dir / "model.onnx")
        except ExportError as e:
            if require_onnx:
                raise
            log(f"model.onnx not written: {e}")
    first = results[0].seed if results else None
    if first in final.int8_models:
        _write_int8(out_dir, genome, final.int8_models[first], final.int8[first], first, full)
        written += [out_dir / "model.int8.tflite", out_dir / "model.int8.json"]
    rows = [{"seed": seed, **epoch} for seed, epochs in zip(final.seeds, final.per_seed) for epoch in epochs]
    atomic_write(out_dir / "metrics.csv", pd.DataFrame(rows).to_csv(index=False))
    written.append(out_dir / "metrics.csv")
    atomic_write(out_dir / "model.py", standalone_source(genome, mean=full.mean, std=full.std, classes=full.classes))
    written.append(out_dir / "model.py")
    return written


def write_artifacts(out_dir: Path, genome: Genome, final: FinalResult, full: Splits,
                    log: Callable[[str], None] = print, require_onnx: bool = False) -> list[Path]:
    """checkpoint_seed<N>.pt per seed (``save_run_checkpoint``), then ``write_exports``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [save_run_checkpoint(out_dir, genome, result, full) for result in final.runs]
    return written + write_exports(out_dir, genome, final, full, log, require_onnx)


_NOT_COMPARED = ("device", "normalize", "dataset", "classes")  # a run's config fields that do not change its result
UNUSED = "unused"  # final/trial<N>/unused/: checkpoints of seeds a finalist's result does not use


def reusable_run(out_dir: Path, genome: Genome, config: TrainConfig, full: Splits) -> TrainResult | None:
    """The finished run of ``config.seed`` saved in ``out_dir`` (or its ``unused/``) by an earlier final evaluation
    with the same genome, data and training config (every knob but the device), epochs complete; None otherwise."""
    from reports.export import CheckpointError, load_checkpoint

    want = asdict(config)
    for path in (out_dir / f"checkpoint_seed{config.seed}.pt", out_dir / UNUSED / f"checkpoint_seed{config.seed}.pt"):
        if not path.is_file():
            continue
        try:
            model, data = load_checkpoint(path, genome)
            saved = data.get("train_config") or {}
            epochs = [EpochMetrics(**m) for m in data.get("metrics") or []]
        except (CheckpointError, TypeError):
            continue
        if (saved.get("dataset") != full.name or len(epochs) != config.epochs
                or any(epoch.test_acc is None for epoch in epochs)
                or any(saved.get(k) != v for k, v in want.items() if k not in _NOT_COMPARED)):
            continue
        return TrainResult("complete", epochs, sum(e.seconds for e in epochs), "reused", config.seed,
                           sum(p.numel() for p in model.parameters()), {**want, "device": saved.get("device")}, model)
    return None


def _set_aside_unused(out_dir: Path, seeds: list[int]) -> None:
    """Move the checkpoints of seeds not in ``seeds`` to ``unused/``: the folder holds the finalist's result only;
    nothing computed is deleted (``reusable_run`` finds them there)."""
    for path in out_dir.glob("checkpoint_seed*.pt"):
        seed = path.stem.removeprefix("checkpoint_seed")
        if seed.isdigit() and int(seed) not in seeds:
            (out_dir / UNUSED).mkdir(exist_ok=True)
            os.replace(path, out_dir / UNUSED / path.name)


def _write_int8(out_dir: Path, genome: Genome, model: Int8Model, measured: TflmMeasurement, seed: int | None,
                full: Splits) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "model.int8.tflite", model.flatbuffer)
    described = {"genome": genome.to_string(), "seed": seed, "input": {
        **model.input_description(), "shape": [1, genome.input.height, genome.input.width, genome.input.channels],
        "normalize_mean": list(full.mean), "normalize_std": list(full.std), "pixel_scale": "1/255",
        "how": ("q = clip(round(((pixels / 255 - mean) / std) / scale) + zero_point, -128, 127)"
                if model.input_dtype == "int8" else "x = (pixels / 255 - mean) / std, float32")},
        "classes": full.classes or [str(c) for c in range(genome.input.classes)],
        "measured_in": "TensorFlow Lite Micro (tflite-micro Python interpreter)",
        "test_acc": round(measured.accuracy, 4), "arena_bytes": measured.arena_bytes,
        "tflite_bytes": measured.tflite_bytes, "calibration_images": CALIBRATION_IMAGES}
    atomic_write(out_dir / "model.int8.json", json.dumps(described, indent=2) + "\n")
    from reports.firmware import write_firmware
    from reports.tflite import operators

    write_firmware(out_dir, model.flatbuffer, operators(model.flatbuffer), measured.arena_bytes, model.input_scale,
                   model.input_zero_point, model.input_dtype, described["input"]["shape"], full.mean, full.std,
                   described["classes"])


def _int8_inputs(full: Splits) -> tuple[torch.Tensor, torch.Tensor]:
    """Calibration images (a fixed draw from the training set) and the test set, normalised, on the CPU."""
    from reports.tflite import normalised

    pick = torch.randperm(len(full.train_y), generator=torch.Generator().manual_seed(0))[:CALIBRATION_IMAGES]
    return (normalised(full.train_x[pick.to(full.train_x.device)], full.mean, full.std),
            normalised(full.test_x, full.mean, full.std))


def measure_classes(final: FinalResult, full: Splits, log: Callable[[str], None] = print, title: str = "") -> None:
    """Each trained seed's confusion matrix on the test set (``reports.classes``), for the seeds not measured yet;
    logs the balanced accuracy and the worst class."""
    from training import predict

    final.classes = list(full.classes or [str(i) for i in range(full.spec.classes)])
    for run in final.runs:
        if run.seed not in final.confusions and run.model is not None and run.status == "complete":
            model = run.model.to(full.device)
            final.confusions[run.seed] = confusion_matrix(predict(model, full.test_x, full.mean, full.std),
                                                          full.test_y, len(final.classes))
    matrices = [final.confusions[seed] for seed in final.seeds if seed in final.confusions]
    if matrices:
        summary = class_summary(matrices, final.classes)
        worst = summary["worst_class"]
        log(f"{title + ': ' if title else ''}balanced accuracy {summary['balanced_acc_mean']:.2f}% (the mean of the "
            f"classes' recalls); worst class {worst['name']!r}: recall {worst['recall']:.2f}%")


def measure_int8(final: FinalResult, genome: Genome, full: Splits, log: Callable[[str], None] = print) -> None:
    """Quantize each seed's trained model to int8 (``reports.tflite.export_int8``, calibrated on a fixed draw of
    training images) and run the whole test set through TFLM; fills ``final.int8`` / ``final.int8_models``
    for the seeds not measured yet."""
    from reports.tflite import export_int8, measure_tflm

    todo = [run for run in final.runs if run.seed not in final.int8 and run.model is not None
            and run.status == "complete"]
    if not todo:
        return
    calibration, test = _int8_inputs(full)
    fp32 = dict(zip(final.seeds, [epochs[-1]["test_acc"] if epochs else None for epochs in final.per_seed]))
    for run in todo:
        model = export_int8(run.model, genome, calibration)
        measured = measure_tflm(model, test, full.test_y)
        final.int8[run.seed], final.int8_models[run.seed] = measured, model
        log(f"  seed {run.seed} int8 in TFLM: test accuracy {measured.accuracy:.2f}% (fp32 "
            f"{fp32.get(run.seed) or float('nan'):.2f}%), arena {measured.arena_bytes:,} B, flatbuffer "
            f"{measured.tflite_bytes:,} B")


def checkpoint_int8(model: torch.nn.Module, genome: Genome, checkpoint: dict, fp32_acc: float, full: Splits,
                    out_dir: Path, log: Callable[[str], None] = print) -> TflmMeasurement:
    """``--reproduce --checkpoint --export tflite``: one trained model to int8, measured in TFLM, written to
    ``out_dir`` (model.int8.tflite and model.int8.json)."""
    from reports.tflite import export_int8, measure_tflm

    calibration, test = _int8_inputs(full)
    int8 = export_int8(model, genome, calibration)
    measured = measure_tflm(int8, test, full.test_y)
    log(f"int8 in TFLM: test accuracy {measured.accuracy:.2f}% (fp32 {fp32_acc:.2f}%), arena "
        f"{measured.arena_bytes:,} B, flatbuffer {measured.tflite_bytes:,} B")
    _write_int8(out_dir, genome, int8, measured, checkpoint.get("seed"), full)
    return measured


def _already_evaluated(summary: dict | None, folder: Path, epochs: int, seeds: list[int], target: float | None,
                       max_seeds: int | None, on_int8: bool = False) -> bool:
    """A finals.json entry that covers these seeds and epochs (racing: these first, then until decided or
    ``max_seeds``), every run complete, artifacts on disk."""
    if not summary or set(summary.get("statuses", [])) != {"complete"}:
        return False
    done = summary.get("seeds", [])
    if on_int8 and len(summary.get("int8_test_acc") or []) != len(done):
        return False
    if max_seeds is None and done != list(seeds):
        return False
    if max_seeds is not None:
        accs = (summary["int8_test_acc"] if on_int8
                else [run[-1] for run in summary.get("per_epoch_test_acc", []) if run])
        if done[:len(seeds)] != list(seeds) or not (decided(accs, target) or len(done) >= max_seeds):
            return False
    if any(len(accs) != epochs for accs in summary.get("per_epoch_test_acc", [])):
        return False
    return (folder / "model.py").is_file() and all((folder / f"checkpoint_seed{seed}.pt").is_file() for seed in done)


class FinalsBusyError(BudgetNASError):
    """Another command is running the final evaluation of the same run directory."""


@contextlib.contextmanager
def finals_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``<run_dir>/finals.lock`` while a final evaluation runs: a second one on the same run directory is
    refused at once with one line (``FinalsBusyError``) instead of overwriting the first one's finals.json. The
    lock is the kernel's (``flock``): it goes with the process that held it, however that process ended."""
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "finals.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise FinalsBusyError(f"{run_dir}: another command (pid {holder}) is running the final evaluation of this "
                                  "run; wait for it to end, then run --finalize again if you want more") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def finalize(study: Any, settings: Any, ranked: pd.DataFrame, top_k: int, epochs: int, seeds: list[int],
             log: Callable[[str], None] = print, splits: Splits | None = None,
             on_final: Callable[[dict], None] | None = None, processes: int = 1,
             max_seeds: int | None = None, on_progress: Callable[..., None] | None = None) -> dict:
    """Retrain the finalists of ``ranked`` (a leaderboard frame; ``search.ranking.finalists``: with a target met on
    validation, the front's smallest designs one at a time until one is certain, else the ``top_k`` best ranks) on
    the full training set over ``seeds``.

    Each seed's checkpoint is written to ``<run_dir>/final/trial<N>/`` as soon as its run ends; a seed whose
    checkpoint is there from an earlier, interrupted evaluation with the same config is reused, not retrained
    (``reusable_run``). Test-set summaries go to ``<run_dir>/finals.json`` after each finalist's round, before its
    exports (``on_final(finals)`` is called then, e.g. to rewrite the leaderboard). Returns the finals.
    ``processes`` > 1 on CPU trains the runs (finalists x seeds) side by side (``training.parallel``).
    ``max_seeds`` (``--seeds auto``): racing. A finalist whose verdict is still open after ``seeds``
    (``reports.verdict.decided``) gets more seeds, as many at a time as there are processes, up to ``max_seeds``.
    One final evaluation at a time per run directory (``finals_lock``). ``on_progress(trial, seed, epoch, epochs,
    test_acc, seconds)`` sees every epoch of every final run (a live display).
    """
    top, in_turn = finalists(ranked, settings.target, top_k, getattr(settings, "validation_images", None))
    if top.empty:
        log("final evaluation: no trained trial to evaluate")
        return {}
    with finals_lock(Path(settings.run_dir)):
        splits = splits if splits is not None else load_splits(
            settings.dataset, settings.data_dir, device=resolve_device(settings.device), val_size=0,
            image_size=settings.image_size, channels=settings.channels)  # once, for every candidate
        if not in_turn:
            return _finalize(settings, top, epochs, seeds, log, splits, on_final, processes, max_seeds, on_progress)
        log(f"final evaluation: {len(top)} candidate(s) on the accuracy-per-parameter front, smallest first "
            f"({', '.join(f'{int(p):,}' for p in top['params'])} params); the first certain at {settings.target}% "
            "is the answer, and the larger ones are not trained then")
        finals = {}
        for i in range(len(top)):
            finals = _finalize(settings, top.iloc[i:i + 1], epochs, seeds, log, splits, on_final, processes, max_seeds,
                               on_progress)
            verdict_of = finals.get(str(int(top.iloc[i]["trial"])), {}).get("meets_target")
            if verdict_of == "certain":
                if i + 1 < len(top):
                    log(f"trial {int(top.iloc[i]['trial'])} ({int(top.iloc[i]['params']):,} params) is certain: "
                        f"the {len(top) - i - 1} larger candidate(s) cannot give a smaller answer; not trained")
                break
        return finals


def _finalize(settings: Any, top: pd.DataFrame, epochs: int, seeds: list[int], log: Callable[[str], None],
              full: Splits, on_final: Callable[[dict], None] | None, processes: int,
              max_seeds: int | None, on_progress: Callable[..., None] | None = None) -> dict:
    finals = load_finals(settings.run_dir)
    base = TrainConfig(device=settings.device, augment=settings.augment, translate_px=settings.translate_px,
                       metric=settings.metric, **settings.train_overrides)
    rounds: list[tuple[int, Genome, list[int]]] = []  # (trial, genome, seeds) still to train
    for _, row in top.iterrows():
        trial = int(row["trial"])
        genome = Genome.from_string(row["genome"])
        if _already_evaluated(finals.get(str(trial)), settings.run_dir / "final" / f"trial{trial}", epochs, seeds,
                              settings.target, max_seeds, settings.int8_finals):
            log(f"final evaluation of rank {int(row['rank'])} (trial {trial}): already done with these seeds "
                f"and epochs in {settings.run_dir / 'finals.json'}; not retrained")
            continue
        log(f"final evaluation of rank {int(row['rank'])} (trial {trial}, {int(row['params']):,} params): "
            f"{epochs} epochs x {len(seeds)} seed(s) on the full training set"
            + (f", more seeds (up to {max_seeds}) while its verdict is open" if max_seeds else ""))
        rounds.append((trial, genome, list(seeds)))
    runs_of: dict[int, list[TrainResult]] = {trial: [] for trial, _, _ in rounds}
    int8_of: dict[int, tuple[dict, dict]] = {}  # trial -> its seeds' int8 measurements and models, across rounds
    confusions_of: dict[int, dict] = {}  # trial -> its seeds' test confusion matrices, across rounds
    folder_of = {trial: settings.run_dir / "final" / f"trial{trial}" for trial, _, _ in rounds}
    while rounds:
        jobs: list[tuple[Genome, TrainConfig]] = []  # every finalist's runs go to one pool, so none waits for another
        owner: dict[int, tuple[int, Genome, range]] = {}
        reused: dict[int, TrainResult] = {}
        for trial, genome, round_seeds in rounds:
            indices = range(len(jobs), len(jobs) + len(round_seeds))
            owner.update({i: (trial, genome, indices) for i in indices})
            jobs += _final_jobs(genome, epochs, round_seeds, base)
            for i in indices:
                run = reusable_run(folder_of[trial], genome, jobs[i][1], full)
                if run is not None:
                    reused[i] = run
                    log(f"trial {trial} seed {run.seed}: reused from {folder_of[trial]} (an earlier run of this "
                        f"config): test accuracy {run.epochs[-1].test_acc:.2f}%")
        trained_in_round = {trial: False for trial, _, _ in rounds}
        rounds = []
        todo = [i for i in range(len(jobs)) if i not in reused]
        groups = []
        for trial in dict.fromkeys(owner[i][0] for i in todo):
            mine = [k for k, i in enumerate(todo) if owner[i][0] == trial]
            groups.append((f"trial {trial}", mine, [jobs[todo[k]][1].seed for k in mine]))
        train_jobs = [jobs[i] for i in todo]
        logger = _epoch_logger(groups, log, waves(train_jobs, processes, full.device.type))

        def on_epoch(k: int, m: EpochMetrics) -> None:
            logger(k, m)
            if on_progress is not None:
                on_progress(owner[todo[k]][0], train_jobs[k][1].seed, m.epoch, epochs, m.test_acc, m.seconds)

        finished = ((todo[k], result) for k, result in train_many(train_jobs, full, processes, on_epoch=on_epoch))
        results: dict[int, TrainResult] = {}
        for index, result in itertools.chain(reused.items(), finished):
            trial, genome, indices = owner[index]
            if index not in reused:
                trained_in_round[trial] = True
                if result.status == "complete" and result.model is not None:  # kept at once: a kill loses no seed
                    save_run_checkpoint(folder_of[trial], genome, result, full)
            results[index] = result
            if not all(i in results for i in indices):  # this finalist still has runs going
                continue
            runs_of[trial] += [results.pop(i) for i in indices]
            final = _final_result(genome, runs_of[trial], log, title=f"trial {trial}")
            final.confusions = confusions_of.setdefault(trial, {})  # measured once per seed, across rounds
            if settings.int8_finals:
                final.int8, final.int8_models = int8_of.setdefault(trial, ({}, {}))
            done = len(runs_of[trial])

            def more_seeds() -> bool:  # int8 accuracies are judged, so only after _record has measured them
                return (max_seeds is not None and done < max_seeds
                        and not decided(final.judged_accs(settings.int8_finals), settings.target))

            if trained_in_round[trial] or settings.int8_finals or not more_seeds():  # a reused-only round saves nothing
                _record(settings, trial, genome, final, full, finals, on_final, log, folder_of[trial])
            if more_seeds():
                more = list(range(max(final.seeds) + 1, max(final.seeds) + 1 + min(max(processes, 1), max_seeds - done)))
                log(f"trial {trial}: verdict still open after {done} seeds (the mean and its 95% bound lie on "
                    f"opposite sides of the target); adding seed(s) {', '.join(map(str, more))}")
                rounds.append((trial, genome, more))
    return finals


def _record(settings: Any, trial: int, genome: Genome, final: FinalResult, full: Splits, finals: dict,
            on_final: Callable[[dict], None] | None, log: Callable[[str], None], folder: Path) -> None:
    """Save what a finalist's round measured, most precious first: its summary in finals.json (the seeds'
    checkpoints are already written), then the int8 measurements and the summary again, then the exports."""
    def save() -> None:
        finals[str(trial)] = final.summary(settings.target, settings.int8_finals, settings.max_ram, settings.max_flash)
        save_finals(settings.run_dir, finals)
        if on_final is not None:
            on_final(finals)

    measure_classes(final, full, log, f"trial {trial}")
    save()
    _set_aside_unused(folder, final.seeds)
    if settings.int8_finals:
        try:
            measure_int8(final, genome, full, log)
        except Int8Error as e:  # recorded with the finalist: its fp32 results stand, the others go on
            final.int8_error = str(e)
            log(f"trial {trial}: no int8 model: {e}")
        save()
    write_exports(folder, genome, final, full, log)
