"""``--reproduce``: rebuild a winner from a leaderboard row, a genome file or a compact string, retrain it
over several seeds on the full training set, print a notebook-style log and write its artifacts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from blocks import BudgetNASError, Genome, GenomeError, load_genome
from reports.final import (FinalResult, final_evaluation, measure_classes, measure_int8, save_run_checkpoint,
                           write_exports)
from reports.leaderboard import read_leaderboard
from reports.runfiles import atomic_write, load_settings
from training import Splits, TrainConfig
from training.shift import MAX_SHIFT_PX, is_shift

__all__ = ["ReproduceError", "Source", "resolve_source", "reproduce"]


class ReproduceError(BudgetNASError):
    """Bad reproduce input (leaderboard, rank, checkpoint): one readable line."""


@dataclass
class Source:
    genome: Genome
    name: str  # output folder name
    dataset: str | None  # from the study's settings.json, when known
    target: float | None
    image_size: str | None = None  # the study's --image-size
    translate_px: float = 0.0  # the study's --translate
    channels: str = "auto"  # the study's --channels
    metric: str = "accuracy"  # the study's --metric


def resolve_source(source: str, rank: int | None = None, trial: int | None = None) -> Source:
    """A leaderboard CSV row (``rank``, default 1, or ``trial``), a genome .json file, or a compact string."""
    if source.endswith(".csv"):
        try:
            df = read_leaderboard(source)
        except ValueError as e:
            raise ReproduceError(str(e)) from None
        if trial is not None:
            rows = df[df["trial"] == trial]
            what = f"trial {trial}"
        else:
            rank = rank or 1
            rows = df[df["rank"] == rank]
            what = f"rank {rank}"
        if rows.empty:
            ranked = int(df["rank"].notna().sum())
            raise ReproduceError(f"{source}: no row with {what} (the table has {ranked} ranked trial(s) "
                                 f"and {len(df)} row(s))")
        genome_text = rows.iloc[0]["genome"]
        if not isinstance(genome_text, str):
            raise ReproduceError(f"{source}: {what} has no genome (status {rows.iloc[0]['status']})")
        try:
            genome = Genome.from_string(genome_text)
        except GenomeError as e:
            raise ReproduceError(f"{source}: {what}: {e}") from None
        settings = load_settings(Path(source).parent)
        study = settings.get("study", Path(source).parent.name)
        return Source(genome, f"{study}-{what.replace(' ', '')}", settings.get("dataset"), settings.get("target"),
                      settings.get("image_size"), settings.get("translate_px") or 0.0,
                      settings.get("channels") or "auto", settings.get("metric") or "accuracy")
    genome = load_genome(source)
    if source.endswith(".json"):
        return Source(genome, Path(source).stem, None, None, translate_px=_recipe(source).get("translate_px", 0.0))
    return Source(genome, f"genome-{genome.hash}", None, None)


RECIPE_FIELDS = {"translate_px": (is_shift, f"a shift in pixels in [0, {MAX_SHIFT_PX}] (--translate)")}


def _recipe(path: str) -> dict:
    """The optional ``recipe`` of a genome file: training settings its claim was measured with, which
    ``--reproduce`` uses unless the command line says otherwise."""
    recipe = json.loads(Path(path).read_text(encoding="utf-8-sig")).get("recipe", {})  # load_genome read it
    if not isinstance(recipe, dict):
        raise ReproduceError(f"{path}: 'recipe' must be an object, got {type(recipe).__name__}")
    for key, value in recipe.items():
        if key not in RECIPE_FIELDS:
            raise ReproduceError(f"{path}: unknown recipe field {key!r}; known: {', '.join(RECIPE_FIELDS)}")
        valid, what = RECIPE_FIELDS[key]
        if not valid(value):
            raise ReproduceError(f"{path}: recipe field {key!r} must be {what}, got {value!r}")
    return recipe


def reproduce(source: Source, *, seeds: list[int], epochs: int, full: Splits, device: str, out: str,
              augment: str = "auto", translate_px: float = 0.0, metric: str = "accuracy",
              log: Callable[[str], None] = print,
              require_onnx: bool = False, processes: int = 1, int8: bool = False, target: float | None = None,
              on_int8: bool = False) -> tuple[FinalResult, Path]:
    """Retrain over ``seeds`` on ``full`` (the whole training set and the test set) and write ``<out>/<name>/``
    with ``summary.json`` (``FinalResult.summary``: the verdict against ``target``); returns the result and that
    folder. ``processes`` > 1 on CPU trains the seeds side by side, one single-threaded process each. ``int8``:
    each seed's model is also quantized and measured in TFLM (``reports.final.measure_int8``); ``on_int8``:
    the verdict is of those int8 accuracies."""
    config = TrainConfig(device=device, augment=augment, translate_px=translate_px, metric=metric)
    final = final_evaluation(source.genome, full, epochs, seeds, config, log=log, processes=processes)
    out_dir = Path(out) / source.name
    out_dir.mkdir(parents=True, exist_ok=True)

    def save_summary() -> None:  # what was measured is saved before anything that may fail after it
        atomic_write(out_dir / "summary.json", json.dumps({"genome": source.genome.to_string(), "params": final.params,
                                                           "epochs": epochs, "target": target,
                                                           "translate_px": translate_px,
                                                           **final.summary(target, on_int8)}, indent=1) + "\n")

    for run in final.runs:
        save_run_checkpoint(out_dir, source.genome, run, full)
    measure_classes(final, full, log)
    save_summary()
    if int8 or on_int8:
        measure_int8(final, source.genome, full, log)
        save_summary()
    write_exports(out_dir, source.genome, final, full, log=log, require_onnx=require_onnx)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return final, out_dir
