"""Build an ``nn.Module`` from a genome: one loop over the layer table (torchvision mobilenetv2 style)."""

from __future__ import annotations

from typing import Callable

from torch import nn

from blocks import library  # registers the built-in blocks
from blocks.genome import Genome
from blocks.registry import get_builder
from budgets.costs import analyze

__all__ = ["GenomeNet", "build_model"]


class GenomeNet(nn.Sequential):
    """``nn.Sequential`` of the genome's blocks (plus a final flatten); keeps the genome it came from."""

    def __init__(self, genome: Genome, modules: list[nn.Module]) -> None:
        super().__init__(*modules)
        self.genome = genome


def build_model(genome: Genome, norm_layer: Callable[[int], nn.Module] | None = None) -> GenomeNet:
    """The PyTorch model of ``genome``; its parameter count equals ``budgets.analyze(genome).params``.

    ``norm_layer`` replaces ``nn.BatchNorm2d`` in every 2-d unit (e.g. ``lambda c: nn.GroupNorm(1, c)``;
    the analytic counts assume a norm with 2 parameters per channel).
    Raises ``GenomeError`` for a structurally invalid genome (same checks as the budget math).
    """
    norm = norm_layer or nn.BatchNorm2d
    analysis = analyze(genome)
    spec = genome.input
    shape: tuple = (spec.channels, spec.height, spec.width)
    modules: list[nn.Module] = []
    for layer, row in zip(genome.layers, analysis.layers):
        build = get_builder(layer.type)
        if (layer.repeat or 1) > 1:  # the analysis checked that the block keeps its channels
            modules.append(library.Repeated([build(layer, shape, norm) for _ in range(layer.repeat)]))
        else:
            modules.append(build(layer, shape, norm))
        shape = row.output_shape
    if len(shape) == 3:  # (classes, 1, 1) -> (classes,)
        modules.append(nn.Flatten())
    return GenomeNet(genome, modules)
