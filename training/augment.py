"""Batched augmentation on the training device: one ``affine_grid`` + ``grid_sample`` per batch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["augment_batch"]


def augment_batch(x: torch.Tensor, generator: torch.Generator, *, rotation_deg: float = 0.0,
                  translate_px: float = 0.0, scale_frac: float = 0.0, crop_pad_px: int = 0,
                  hflip: bool = False) -> torch.Tensor:
    """Random rotation / translation / scaling / crop-by-shift / horizontal flip of a float batch in [0, 1].

    x: (N, C, H, W). Pixels moved in from outside are 0 (the background). ``crop_pad_px`` is the
    classic "pad then random crop": an integer shift in [-pad, pad] per axis, sampled with nearest
    neighbours so pixels are copied exactly. ``scale_frac`` zooms by a factor in [1 - s, 1 + s].
    """
    n, _, h, w = x.shape
    if not (rotation_deg or translate_px or scale_frac or crop_pad_px or hflip):
        return x
    dev = x.device

    def uniform(scale: float) -> torch.Tensor:  # (N,) in [-scale, scale]
        return (torch.rand(n, device=dev, generator=generator) * 2 - 1) * scale

    angle = uniform(math.radians(rotation_deg))
    zoom = 1.0 / (1.0 + uniform(scale_frac))  # sampling grid shrinks when the digit grows
    cos, sin = angle.cos() * zoom, angle.sin() * zoom
    flip = torch.ones(n, device=dev)
    if hflip:
        flip = torch.where(torch.rand(n, device=dev, generator=generator) < 0.5, -flip, flip)
    shift_x, shift_y = uniform(translate_px), uniform(translate_px)
    if crop_pad_px:
        shift_x = shift_x + torch.randint(-crop_pad_px, crop_pad_px + 1, (n,), device=dev, generator=generator)
        shift_y = shift_y + torch.randint(-crop_pad_px, crop_pad_px + 1, (n,), device=dev, generator=generator)
    theta = torch.stack([
        torch.stack([cos * flip, -sin, shift_x * (2.0 / w)], dim=1),
        torch.stack([sin * flip, cos, shift_y * (2.0 / h)], dim=1),
    ], dim=1).to(x.dtype)  # (N, 2, 3), normalised coordinates
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    mode = "bilinear" if rotation_deg or translate_px or scale_frac else "nearest"
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
