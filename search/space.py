"""The genome search space, sampled through ``trial.suggest_*`` so every Optuna sampler works.

A design is 2-3 stages of 1-3 blocks (conv, depthwise-separable or residual), a downsample between
stages (max-pool, optionally followed by a 1x1 transition, or a strided first block), then a GAP
head. Widths are sampled per stage and then scaled down uniformly until the design fits the
budget (``fit_to_limits``), so most proposals are feasible; the receptive-field limit cannot be
repaired by width and is left to the checker.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from blocks.genome import Genome, InputSpec, Layer, make_layer
from budgets import Limits, totals

__all__ = ["sample_genome", "fit_to_limits", "fitted_widths", "sample_hparams", "MIN_WIDTH"]

MIN_WIDTH = 4  # channels; widths are even numbers >= this
MAX_SCALE = 8.0  # the most a sampled width is scaled up to fill the budget
FILL_RANGE = (0.6, 1.0)  # share of the parameter budget a design is scaled to


def _even(x: float) -> int:
    return max(MIN_WIDTH, int(round(x / 2)) * 2)


def _blueprint(trial: Any) -> dict:
    """All the sampled decisions, as plain data (widths not yet fitted)."""
    stages = trial.suggest_int("stages", 2, 3)
    bp: dict[str, Any] = {
        "order": trial.suggest_categorical("order", ["cba", "cab"]),
        "dropout": trial.suggest_categorical("dropout", [0.0, 0.02, 0.05, 0.1]),
        "head": trial.suggest_categorical("head", ["gap_conv", "conv_gap"]),
        "fill": trial.suggest_float("fill", *FILL_RANGE, step=0.05),
        "stages": [],
    }
    for s in range(stages):
        stage = {
            "blocks": trial.suggest_int(f"s{s}_blocks", 1, 3),
            "width": trial.suggest_int(f"s{s}_width", 8, 40, step=2),
            "type": "conv" if s == 0 else trial.suggest_categorical(f"s{s}_type", ["conv", "dws", "res"]),
            "pad": trial.suggest_categorical(f"s{s}_pad", ["valid", "same"]),
            "kernel": trial.suggest_categorical(f"s{s}_kernel", [3, 5]) if s == 0 else 3,
        }
        if s < stages - 1:
            stage["down"] = trial.suggest_categorical(f"s{s}_down", ["max", "max_1x1", "stride"])
            stage["transition"] = trial.suggest_int(f"s{s}_transition_width", 6, 24, step=2)
        else:
            stage["dilate_last"] = trial.suggest_categorical("dilate_last", [False, True])
        bp["stages"].append(stage)
    return bp


def _build(bp: dict, spec: InputSpec, scale: float) -> Genome:
    """Genome of a blueprint with every width multiplied by ``scale``; pads 'same' when the map gets small."""
    layers: list[Layer] = []
    size = min(spec.height, spec.width)
    common = {"order": bp["order"]}
    if bp["dropout"]:
        common["dropout"] = bp["dropout"]

    def add(kind: str, fields: dict) -> None:
        layers.append(make_layer(kind, fields, len(layers)))

    stride_next = False
    for s, stage in enumerate(bp["stages"]):
        width = _even(stage["width"] * scale)
        for b in range(stage["blocks"]):
            kind = stage["type"]
            k = stage["kernel"] if b == 0 else 3
            last_block = s == len(bp["stages"]) - 1 and b == stage["blocks"] - 1
            dilation = 2 if last_block and stage.get("dilate_last") and size >= 9 else 1
            span = dilation * (k - 1)
            fields: dict[str, Any] = {"out": width, "kernel": k, **common}
            if dilation > 1:
                fields["dilation"] = dilation
            if stride_next:
                fields["stride"] = 2
            valid = stage["pad"] == "valid" and size - span >= 5 and kind != "res"
            if kind != "res":
                fields["padding"] = 0 if valid else "same"
            add(kind, fields)
            if valid:
                size -= span
            if stride_next:
                size = (size + 1) // 2
                stride_next = False
        if "down" in stage:
            if stage["down"] == "stride" or size < 4:
                stride_next = size >= 4
            else:
                add("max", {"kernel": 2})
                size //= 2
                if stage["down"] == "max_1x1":
                    add("conv", {"out": _even(stage["transition"] * scale), "kernel": 1, "order": bp["order"]})
    classes = spec.classes
    if bp["head"] == "gap_conv":
        add("gap", {})
        add("conv", {"out": classes, "kernel": 1, "order": "c", "bias": False})
    else:
        add("conv", {"out": classes, "kernel": 1, "order": "c", "bias": False})
        add("gap", {})
    return Genome(spec, tuple(layers))


def fit_to_limits(bp: dict, spec: InputSpec, limits: Limits, steps: int = 16) -> tuple[Genome, float]:
    """The widest uniform width scale in (0, MAX_SCALE] whose genome fits ``bp['fill']`` x the param budget
    and the MACs / RAM / flash limits; (genome, scale). Without a param budget the scale is at most 1."""
    sized = limits
    if limits.max_params is not None:
        sized = replace(limits, max_params=int(limits.max_params * bp.get("fill", 1.0)))

    def fits(genome: Genome) -> bool:
        return not sized.violations(totals(genome), genome, repairable_only=True)

    lo, hi = 0.0, MAX_SCALE if limits.max_params is not None else 1.0
    best = _build(bp, spec, hi)
    if fits(best):
        return best, hi
    best = None
    for _ in range(steps):
        mid = (lo + hi) / 2
        genome = _build(bp, spec, mid)
        if fits(genome):
            lo, best = mid, genome
        else:
            hi = mid
    if best is None:  # even the narrowest design (every width MIN_WIDTH) is over: the checker will say why
        return _build(bp, spec, 0.0), 0.0
    return best, lo


def fitted_widths(params: dict, scale: float) -> dict[str, int]:
    """The widths a trial's genome was actually built with (sampled widths x the repair scale), per stage."""
    return {f"{name}_fitted": _even(value * scale) for name, value in params.items()
            if name.endswith("_width") and name.startswith("s")}


def sample_genome(trial: Any, spec: InputSpec, limits: Limits, repair: bool = True) -> tuple[Genome, float]:
    """Sample a genome for ``spec``; with ``repair`` its widths are scaled to fit ``limits``. (genome, scale)."""
    bp = _blueprint(trial)
    if not repair:
        return _build(bp, spec, 1.0), 1.0
    return fit_to_limits(bp, spec, limits)


def sample_hparams(trial: Any) -> dict:
    """TrainConfig overrides for ``--tune-hparams``."""
    return {
        "lr": trial.suggest_float("lr", 0.01, 0.3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-5, 1e-3, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [64, 128, 256]),
        "label_smoothing": trial.suggest_categorical("label_smoothing", [0.0, 0.05, 0.1]),
    }
