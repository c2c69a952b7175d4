"""Genomes and the block library that turns them into PyTorch models.

The genome schema is pure Python; the torch-bound names (``build_model``, ``GenomeNet``, the block
registry) load torch on first use only, so ``blocks`` and ``budgets`` can be used without it.
"""

from __future__ import annotations

import importlib
from typing import Any

from blocks.genome import ACTIVATIONS, BLOCK_TYPES, BudgetNASError, Genome, GenomeError, InputSpec, Layer, load_genome

__all__ = [
    "ACTIVATIONS", "BLOCK_TYPES", "BUILDERS", "BudgetNASError", "Genome", "GenomeError", "GenomeNet", "InputSpec", "Layer",
    "build_model", "get_builder", "load_genome", "register_block",
]

_TORCH_BOUND = {"GenomeNet": "blocks.model", "build_model": "blocks.model", "BUILDERS": "blocks.registry",
                "get_builder": "blocks.registry", "register_block": "blocks.registry"}


def __getattr__(name: str) -> Any:
    if name in _TORCH_BOUND:
        return getattr(importlib.import_module(_TORCH_BOUND[name]), name)
    raise AttributeError(f"module 'blocks' has no attribute {name!r}")
