"""Peak activation memory measured on a built model: forward hooks track which tensors are alive.

The check behind ``budgets.analyze``'s analytic figure (same conventions): one image, eval mode;
BatchNorm, activations, dropout, identity and flatten are taken to run in place (their output replaces
their input); every other leaf holds its input and its output at once; a residual block keeps its
input alive until its output exists.
"""

from __future__ import annotations

import torch
from torch import nn

from blocks.library import Residual

__all__ = ["measure_peak_activation"]

_IN_PLACE = (nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.Identity, nn.Flatten, nn.ReLU, nn.ReLU6, nn.LeakyReLU,
             nn.PReLU, nn.ELU, nn.SiLU, nn.GELU, nn.Hardswish, nn.Tanh, nn.Sigmoid)


def measure_peak_activation(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Largest number of activation values alive at once during one forward pass of one image."""
    alive: dict[int, int] = {}  # id(tensor) -> values
    pinned: list[int] = []  # inputs of residual blocks, held for the shortcut
    peak = 0

    def leaf_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal peak
        x = inputs[0]
        alive[id(output)] = output.numel()
        peak = max(peak, sum(alive.values()) + (0 if id(x) in alive else x.numel()))
        if id(x) not in pinned and id(x) != id(output):
            alive.pop(id(x), None)

    def residual_pre(module: nn.Module, inputs: tuple) -> None:
        pinned.append(id(inputs[0]))

    def residual_post(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        pinned.remove(id(inputs[0]))
        alive.clear()
        alive[id(output)] = output.numel()

    def in_place_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if id(inputs[0]) in pinned and id(output) != id(inputs[0]):  # a held input cannot be overwritten
            leaf_hook(module, inputs, output)
        elif alive.pop(id(inputs[0]), None) is not None:
            alive[id(output)] = output.numel()

    handles = []
    for module in model.modules():
        if isinstance(module, Residual):
            handles += [module.register_forward_pre_hook(residual_pre), module.register_forward_hook(residual_post)]
        elif not list(module.children()) and not isinstance(module, nn.Sequential):  # an empty one computes nothing
            handles.append(module.register_forward_hook(in_place_hook if isinstance(module, _IN_PLACE) else leaf_hook))

    x = torch.zeros(1, *input_shape)
    alive[id(x)] = x.numel()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return peak
