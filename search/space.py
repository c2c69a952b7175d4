"""The genome search space, sampled through ``trial.suggest_*`` so every Optuna sampler works.

A design is 2-3 stages of 1-3 blocks (conv, depthwise-separable or residual), a downsample between
stages (max-pool, optionally followed by a 1x1 transition, or a strided first block), then a GAP
and a 1x1 classifier. The last block of a stage of 2-3 blocks may be applied 2-3 times with shared weights (``repeat``):
depth and receptive field for the params of one block, which leaves the budget to wider layers. Widths are sampled per stage and then scaled uniformly until the design has the sampled size
within the range ``search.descent`` gives (``fit_to_limits``), so most proposals are feasible; the receptive-field limit cannot be
repaired by width and is left to the checker.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from blocks.genome import Genome, GenomeError, InputSpec, Layer, make_layer
from budgets import Limits, totals
from search.descent import SizeRange, near_budget, target_params

__all__ = ["Fitted", "STEM_FROM", "random_designs", "sample_genome", "fit_to_limits", "narrow_to_limits", "reachable", "sample_hparams", "stem_downsamples", "MIN_WIDTH"]

MIN_WIDTH = 4  # channels; widths are even numbers >= this
MAX_SCALE = 8.0  # the most a sampled width is scaled up to fill the budget


class Fitted(NamedTuple):
    """A sampled design fitted to the limits: the genome, the uniform width scale, the widths it was built with."""
    genome: Genome
    scale: float
    widths: dict[str, int]  # by the sampled parameter's name: s0_width, s0_transition_width, ...


def _even(x: float) -> int:
    return max(MIN_WIDTH, int(round(x / 2)) * 2)


def _blueprint(trial: Any) -> dict:
    """All the sampled decisions, as plain data (widths not yet fitted)."""
    stages = trial.suggest_int("stages", 2, 3)
    bp: dict[str, Any] = {
        "order": trial.suggest_categorical("order", ["cba", "cab"]),
        "dropout": trial.suggest_categorical("dropout", [0.0, 0.02, 0.05, 0.1]),
        "size": trial.suggest_float("size", 0.0, 1.0, step=0.05),  # where in the size range (``search.descent``)
        "stages": [],
    }
    for s in range(stages):
        stage = {
            "blocks": trial.suggest_int(f"s{s}_blocks", 1, 3),
            "width": trial.suggest_int(f"s{s}_width", 8, 40, step=2),
            "type": "conv" if s == 0 else trial.suggest_categorical(f"s{s}_type", ["conv", "dws", "res"]),
            "pad": trial.suggest_categorical(f"s{s}_pad", ["valid", "same"]),
            "kernel": trial.suggest_categorical(f"s{s}_kernel", [3, 5]) if s == 0 else 3,
            "repeat": trial.suggest_categorical(f"s{s}_repeat", [1, 2, 3]),  # the last block's (with 2+ blocks)
        }
        if s < stages - 1:
            stage["down"] = trial.suggest_categorical(f"s{s}_down", ["max", "max_1x1", "stride"])
            stage["transition"] = trial.suggest_int(f"s{s}_transition_width", 6, 24, step=2)
        else:
            stage["dilate_last"] = trial.suggest_categorical("dilate_last", [False, True])
        bp["stages"].append(stage)
    return bp


def _widths(bp: dict, scale: float) -> dict[str, int]:
    """Every sampled width multiplied by ``scale`` (even, >= MIN_WIDTH), by parameter name."""
    widths = {}
    for s, stage in enumerate(bp["stages"]):
        widths[f"s{s}_width"] = _even(stage["width"] * scale)
        if "down" in stage:
            widths[f"s{s}_transition_width"] = _even(stage["transition"] * scale)
    return widths


STEM_FROM = 48  # inputs at least this many pixels on a side start with a strided stem (``stem_downsamples``)


def stem_downsamples(size: int) -> int:
    """How many times a design halves an input of ``size`` pixels (its shorter side) before its first stage: none
    below ``STEM_FROM`` (MNIST and CIFAR-10 designs are as they always were), else until about 24 pixels are left
    (48 -> 1, 64 and 96 -> 2, 128 -> 3): the first conv gets stride 2, and each further halving is a max-pool
    right after it. Full-resolution maps of a large input would need more RAM than a microcontroller has."""
    return 0 if size < STEM_FROM else max(1, math.ceil(math.log2(size / 24)))


def _build(bp: dict, spec: InputSpec, widths: dict[str, int]) -> Genome:
    """Genome of a blueprint with the given widths (``_widths``); pads 'same' when the map gets small, and a large
    input starts with a strided stem (``stem_downsamples``)."""
    layers: list[Layer] = []
    size = min(spec.height, spec.width)
    stem = stem_downsamples(size)
    common = {"order": bp["order"]}
    if bp["dropout"]:
        common["dropout"] = bp["dropout"]

    def add(kind: str, fields: dict) -> None:
        layers.append(make_layer(kind, fields, len(layers)))

    stride_next = stem > 0
    for s, stage in enumerate(bp["stages"]):
        width = widths[f"s{s}_width"]
        for b in range(stage["blocks"]):
            kind = stage["type"]
            k = stage["kernel"] if b == 0 else 3
            last_block = s == len(bp["stages"]) - 1 and b == stage["blocks"] - 1
            dilation = 2 if last_block and stage.get("dilate_last") and size >= 9 else 1
            span = dilation * (k - 1)
            repeat = stage.get("repeat", 1) if b == stage["blocks"] - 1 and b > 0 else 1  # keeps its channels
            fields: dict[str, Any] = {"out": width, "kernel": k, **common}
            if dilation > 1:
                fields["dilation"] = dilation
            if stride_next:
                fields["stride"] = 2
            if repeat > 1:
                fields["repeat"] = repeat
            valid = stage["pad"] == "valid" and size - span * repeat >= 5 and kind != "res"
            if kind != "res":
                fields["padding"] = 0 if valid else "same"
            add(kind, fields)
            if valid:
                size -= span * repeat
            if stride_next:
                size = (size + 1) // 2
                stride_next = False
            if len(layers) == 1:
                for _ in range(stem - 1):  # the stem's further halvings
                    add("max", {"kernel": 2})
                    size //= 2
        if "down" in stage:
            if stage["down"] == "stride" or size < 4:
                stride_next = size >= 4
            else:
                add("max", {"kernel": 2})
                size //= 2
                if stage["down"] == "max_1x1":
                    add("conv", {"out": widths[f"s{s}_transition_width"], "kernel": 1, "order": bp["order"]})
    add("gap", {})  # then the classifier: a bias-free 1x1 conv commutes with the pool, and costs fewer MACs after it
    add("conv", {"out": spec.classes, "kernel": 1, "order": "c", "bias": False})
    return Genome(spec, tuple(layers))


def _widest(fits: Callable[[dict[Any, int]], Genome | None], widths_at: Callable[[float], dict[Any, int]],
            hi: float, steps: int, step: int, cap: dict[Any, int] | None = None
            ) -> tuple[float, dict[Any, int], Genome | None]:
    """The one width-fitting rule: the widest uniform scale in (0, ``hi``] whose widths ``fits`` (bisection), then
    single widths widened by ``step``, last first, while it fits (and, with ``cap``, stays within it).
    Returns (scale, widths, genome); genome ``None`` when even the narrowest widths do not fit."""
    if (genome := fits(widths_at(hi))) is not None:
        return hi, widths_at(hi), genome
    lo, best = 0.0, None
    for _ in range(steps):
        mid = (lo + hi) / 2
        if (genome := fits(widths_at(mid))) is not None:
            lo, best = mid, genome
        else:
            hi = mid
    widths = widths_at(lo)
    if best is None:
        return 0.0, widths, None
    widened = True
    while widened:
        widened = False
        for name in reversed(list(widths)):
            wider = {**widths, name: widths[name] + step}
            if cap is not None and wider[name] > cap[name]:
                continue
            genome = fits(wider)
            if genome is not None and genome != best:  # a width the design does not use changes nothing
                best, widths, widened = genome, wider, True
    return lo, widths, best


def fit_to_limits(bp: dict, spec: InputSpec, limits: Limits, steps: int = 16, span: SizeRange | None = None) -> Fitted:
    """The widest design of blueprint ``bp`` within its size (``bp['size']`` placed in ``span``, by default
    ``search.descent.FILL`` of the param budget: ``target_params``) and the MACs / RAM / flash limits: the widest
    uniform width scale in (0, MAX_SCALE] (at most 1 without a param budget), then single widths widened by 2
    channels, last stage first, while the design fits (``_widest``)."""
    sized = limits
    if limits.max_params is not None:
        span = span or near_budget(limits.max_params)
        sized = replace(limits, max_params=min(limits.max_params, target_params(bp.get("size", 1.0), span)))

    def fits(widths: dict[str, int]) -> Genome | None:
        genome = _build(bp, spec, widths)
        return None if sized.violations(totals(genome), genome, repairable_only=True) else genome

    hi = MAX_SCALE if limits.max_params is not None else 1.0
    scale, widths, genome = _widest(fits, lambda factor: _widths(bp, factor), hi, steps, step=2)
    if genome is None:  # even the narrowest design (every width MIN_WIDTH) is over: the checker will say why
        return Fitted(_build(bp, spec, widths), 0.0, widths)
    return Fitted(genome, scale, widths)


def narrow_to_limits(genome: Genome, limits: Limits, steps: int = 20) -> Genome | None:
    """``genome`` with every width but the classifier's (the last layer with ``out``) fitted to the param / MACs /
    RAM / flash limits by ``_widest`` (uniform scale in (0, 1], then single widths widened by one channel, never
    above the original): a known design (a warm start from a larger budget) carried to a smaller one.
    ``genome`` itself when it fits; ``None`` when no width can fit it. Widths are whole channels (not only the
    space's even ones), never below ``min(width, MIN_WIDTH)``."""
    original = {i: layer.out for i, layer in enumerate(genome.layers) if layer.out is not None}
    original.pop(max(original))  # the classifier keeps one channel per class

    def fits(widths: dict[int, int]) -> Genome | None:
        layers, channels = [], genome.input.channels
        for i, layer in enumerate(genome.layers):
            if (layer.repeat or 1) > 1:  # a shared block keeps the width it is given
                layer = replace(layer, out=channels)
            elif i in widths:
                layer = replace(layer, out=widths[i])
            channels = layer.out or channels
            layers.append(layer)
        try:
            narrowed = Genome.from_dict(Genome(genome.input, tuple(layers)).to_dict())
            cost = totals(narrowed)
        except GenomeError:  # e.g. a grouped conv whose new width the groups no longer divide
            return None
        return None if limits.violations(cost, narrowed, repairable_only=True) else narrowed

    def widths_at(factor: float) -> dict[int, int]:
        return {i: max(min(out, MIN_WIDTH), int(round(out * factor))) for i, out in original.items()}

    scale, _, narrowed = _widest(fits, widths_at, 1.0, steps, step=1, cap=original)
    return genome if scale == 1.0 else narrowed


def sample_genome(trial: Any, spec: InputSpec, limits: Limits, repair: bool = True,
                  span: SizeRange | None = None) -> Fitted:
    """Sample a genome for ``spec``; with ``repair`` its widths are fitted to ``limits`` and to the sampled size in
    ``span`` (``search.descent``; default: near the budget) by ``fit_to_limits``."""
    bp = _blueprint(trial)
    if not repair:
        return Fitted(_build(bp, spec, _widths(bp, 1.0)), 1.0, _widths(bp, 1.0))
    return fit_to_limits(bp, spec, limits, span=span)


def _random_fitted(spec: InputSpec, limits: Iterable[Limits], seed: int) -> Iterator[Genome]:
    """One design fitted to each entry of ``limits``, drawn by Optuna's random sampler with a fixed seed."""
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for entry in limits:
        yield sample_genome(study.ask(), spec, entry).genome


def random_designs(spec: InputSpec, limits: list[Limits], seed: int = 0) -> list[Genome]:
    """One fitted design per entry of ``limits``, from Optuna's random sampler with a fixed seed: the same
    probes every time (the plan's calibration, benchmarks)."""
    return list(_random_fitted(spec, limits, seed))


def reachable(spec: InputSpec, limits: Limits, probes: int = 200, seed: int = 0) -> tuple[bool, str]:
    """Whether the space can build a design within ``limits``: ``probes`` random blueprints fitted to them (the
    narrowest widths included), checked with ``budgets.check``. Returns (True, "") at the first that fits, else
    (False, the violations of the one closest to fitting: fewest violated limits, then params)."""
    from budgets import check

    closest: tuple[int, int, str] | None = None
    for genome in _random_fitted(spec, itertools.repeat(limits, probes), seed):
        verdict = check(genome, limits)
        if verdict.ok:
            return True, ""
        key = (len(verdict.violations), verdict.params, "; ".join(verdict.violations))
        closest = min(closest, key) if closest else key
    return False, closest[2] if closest else ""


def sample_hparams(trial: Any) -> dict:
    """TrainConfig overrides for ``--tune-hparams``."""
    return {
        "lr": trial.suggest_float("lr", 0.01, 0.3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-5, 1e-3, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [64, 128, 256]),
        "label_smoothing": trial.suggest_categorical("label_smoothing", [0.0, 0.05, 0.1]),
    }
