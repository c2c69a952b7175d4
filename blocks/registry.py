"""Block registry (timm ``_registry`` style): block type name -> builder of an ``nn.Module``."""

from __future__ import annotations

from typing import Callable

from torch import nn

from blocks.genome import BLOCK_TYPES, Layer

__all__ = ["BUILDERS", "Builder", "register_block", "get_builder"]

# A builder gets the layer, its input shape ((C, H, W) or (F,)) and the 2-d norm layer factory.
Builder = Callable[[Layer, tuple, Callable[[int], nn.Module]], nn.Module]
BUILDERS: dict[str, Builder] = {}


def register_block(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``fn`` as the builder of block type ``name`` (which the genome schema must know)."""
    if name not in BLOCK_TYPES:
        raise ValueError(f"block {name!r} has no field schema in blocks.genome.BLOCK_TYPES")

    def wrap(fn: Builder) -> Builder:
        BUILDERS[name] = fn
        return fn
    return wrap


def get_builder(name: str) -> Builder:
    """The builder for ``name``; ``KeyError`` lists the known names."""
    try:
        return BUILDERS[name]
    except KeyError:
        raise KeyError(f"unknown block {name!r}; known: {', '.join(sorted(BUILDERS))}") from None
