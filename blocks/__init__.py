"""Genomes and the block library that turns them into PyTorch models."""

from blocks.genome import ACTIVATIONS, BLOCK_TYPES, Genome, GenomeError, InputSpec, Layer, load_genome
from blocks.model import GenomeNet, build_model
from blocks.registry import BUILDERS, get_builder, register_block

__all__ = [
    "ACTIVATIONS", "BLOCK_TYPES", "BUILDERS", "Genome", "GenomeError", "GenomeNet", "InputSpec", "Layer",
    "build_model", "get_builder", "load_genome", "register_block",
]
