"""Random genomes over every block type and field: for fuzz tests and the budget benchmark."""

from __future__ import annotations

import random

from blocks.genome import ACTIVATIONS, Genome, GenomeError, InputSpec, Layer, make_layer

__all__ = ["random_genome"]

_ORDERS = ("cba", "cab", "ca", "cb", "c", "bac", "acb")


def _unit_fields(rng: random.Random) -> dict:
    fields = {"order": rng.choice(_ORDERS), "act": rng.choice(ACTIVATIONS)}
    if rng.random() < 0.3:
        fields["dropout"] = rng.choice((0.05, 0.1, 0.25))
    if rng.random() < 0.2:
        fields["bias"] = rng.random() < 0.5
    return fields


def _random_layer(rng: random.Random, channels: int, size: int, index: int) -> Layer:
    kind = rng.choices(("conv", "dws", "res", "max", "avg"), weights=(5, 2, 2, 1, 1))[0]
    if kind in ("max", "avg"):
        return make_layer(kind, {"kernel": rng.choice((2, 3)), "padding": rng.choice((0, 1))}, index)
    out = rng.choice((4, 6, 8, 12, 16, 24))
    shared = channels >= 4 and rng.random() < 0.2  # one block applied 2-3 times with its weights shared
    if shared:
        out = channels
    fields = {"out": out, "kernel": rng.choice((1, 3, 5)) if kind == "conv" else 3, **_unit_fields(rng)}
    if kind != "res":
        fields["padding"] = rng.choice((0, 1, "same"))
    if rng.random() < 0.2 and size >= 8:
        fields["stride"] = 2
    if rng.random() < 0.15 and kind != "conv" or (kind == "conv" and fields["kernel"] == 3 and rng.random() < 0.1):
        fields["dilation"] = 2
    if kind == "conv" and rng.random() < 0.15:
        if out % channels == 0:
            fields["groups"] = "dw"
        elif channels % 2 == 0 and out % 2 == 0:
            fields["groups"] = 2
    if shared:
        fields["repeat"] = rng.choice((2, 3))
    return make_layer(kind, fields, index)


def random_genome(rng: random.Random, spec: InputSpec | None = None, max_tries: int = 100) -> Genome:
    """A structurally valid random genome (checked with ``budgets.analyze``)."""
    from budgets.costs import analyze

    spec = spec or InputSpec()
    for _ in range(max_tries):
        layers, channels, size = [], spec.channels, min(spec.height, spec.width)
        for index in range(rng.randint(1, 6)):
            layer = _random_layer(rng, channels, size, index)
            layers.append(layer)
            channels = layer.out or channels
            size = size // (layer.stride or 1) ** (layer.repeat or 1)
        head = rng.choice(("gap_conv", "conv_gap", "flat_fc"))
        n, c = len(layers), spec.classes
        if head == "gap_conv":
            layers += [make_layer("gap", {}, n), make_layer("conv", {"out": c, "kernel": 1, "order": "c"}, n + 1)]
        elif head == "conv_gap":
            layers += [make_layer("conv", {"out": c, "kernel": 1, "order": "c"}, n), make_layer("gap", {}, n + 1)]
        else:
            layers += [make_layer("flat", {}, n), make_layer("fc", {"out": 16, "order": rng.choice(("ca", "cba"))},
                                                               n + 1),
                       make_layer("fc", {"out": c}, n + 2)]
        if rng.random() < 0.3:
            layers.append(make_layer("lsm", {}, len(layers)))
        genome = Genome(spec, tuple(layers))
        try:
            analyze(genome)
        except GenomeError:
            continue
        return genome
    raise RuntimeError("could not draw a valid random genome")
