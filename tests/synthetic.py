"""Tiny synthetic data for logic tests: the class is the quadrant holding a bright patch."""

from __future__ import annotations

import struct
from pathlib import Path

import torch

from blocks import Genome, InputSpec
from training import Splits

SPEC = InputSpec(1, 12, 12, 4)
TINY_GENOME = Genome.from_string("i1x12x12n4-conv_c8_k3_psame-max_k2-conv_c8_k3_psame_r0.1-flat-fc_c4")


def quadrant_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=gen)
    x = torch.randint(0, 40, (n, 1, 12, 12), generator=gen, dtype=torch.uint8)
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 2)
        x[i, 0, r * 6 + 1:r * 6 + 5, c * 6 + 1:c * 6 + 5] = 220
    return x, y


def tiny_splits(n_train: int = 512, n_val: int = 128, n_test: int = 128) -> Splits:
    tx, ty = quadrant_images(n_train, 0)
    vx, vy = quadrant_images(n_val, 1)
    sx, sy = quadrant_images(n_test, 2)
    return Splits("synthetic", SPEC, tx, ty, vx, vy, sx, sy, (0.1,), (0.3,))


def write_idx(folder: Path, n_train: int = 100, n_test: int = 20, size: int = 28) -> None:
    """Fake MNIST IDX files (valid headers) in torchvision's layout."""
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = torch.randint(0, 256, (n, size, size), generator=gen, dtype=torch.uint8)
        labels = torch.arange(n, dtype=torch.uint8) % 10
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, n, size, size) + images.numpy().tobytes())
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.numpy().tobytes())
