"""The built-in blocks. Each builder mirrors its cost function in ``budgets.costs`` exactly."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from blocks.genome import Layer
from blocks.registry import register_block

__all__ = ["Conv2d", "Dropout", "MaxPool2d", "Repeated", "Residual", "make_activation"]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "relu6": nn.ReLU6, "lrelu": nn.LeakyReLU, "prelu": nn.PReLU, "elu": nn.ELU,
    "silu": nn.SiLU, "gelu": nn.GELU, "hswish": nn.Hardswish, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
}


def make_activation(name: str, inplace: bool = False) -> nn.Module:
    """The activation module ``name``; ``inplace`` makes ReLU overwrite its input (other activations ignore it).

    In place only where nothing else reads the input: after a unit's conv / linear, or on a residual sum. A
    single-threaded training step ran 2.4% faster (BENCHMARKS.md), with the same values.
    """
    return nn.ReLU(inplace=True) if inplace and name == "relu" else _ACTIVATIONS[name]()


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper random mask: 15-bit draws, four per 64-bit random word.

    The same distribution (rate quantised to 1/32768) at a fraction of the CPU cost: PyTorch's
    per-element ``bernoulli_`` made dropout ~30% of a training step of a 7k-param net on CPU. In eval
    mode, and in the exported model, it is plain ``nn.Dropout``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        shape = [x.shape[0], x.shape[2], x.shape[3], x.shape[1]] if channels_last else list(x.shape)
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_()
        words.bitwise_and_(0x7FFF7FFF7FFF7FFF)  # each 16-bit lane uniform in [0, 32768), in place
        draws = words.view(torch.int16)[:n].view(shape)
        # the comparison writes the float mask directly: a bool mask's conversion to float is an unvectorised pass
        keep = torch.ge(draws, int(round(self.p * 32768)), out=torch.empty(shape, dtype=x.dtype, device=x.device))
        keep.mul_(1.0 / (1.0 - self.p))
        return x * (keep.permute(0, 3, 1, 2) if channels_last else keep)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` whose strided 1x1 form subsamples first, then convolves at stride 1: the same outputs
    and gradients.

    With torch 2.14.1, oneDNN's AVX2 backward of a strided 1x1 convolution with fewer than 8 input
    channels in channels_last writes past its buffer and corrupts the heap (tests/training/test_engine.py
    reproduces it with the AVX2 kernels on any x86 CPU). Subsampling first never reaches that kernel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel_size == (1, 1) and self.padding == (0, 0) and self.stride != (1, 1):
            return F.conv2d(x[:, :, ::self.stride[0], ::self.stride[1]], self.weight, self.bias, 1, 0,
                            self.dilation, self.groups)
        return super().forward(x)


class _ChannelsLastMaxPool(torch.autograd.Function):
    """Max pooling computed in channels_last, gradient scattered in NCHW through the same indices."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, pool: "MaxPool2d") -> torch.Tensor:
        args = (pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode)
        y, indices = torch.ops.aten.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last), *args)
        ctx.args = args
        ctx.save_for_backward(x, indices)
        return y.contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, indices = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad.contiguous(), x, *ctx.args,
                                                               indices.contiguous()), None


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` that trains faster on CPU: the same outputs and gradients (ties go to the first maximum).

    PyTorch's CPU max pooling of a contiguous (NCHW) map took ~7 ms for a (128, 16, 24, 24) batch on one
    thread, against under 1 ms for the channels_last kernel plus ~0.5 ms for the layout copy. In eval mode,
    under ``torch.compile`` and off the CPU it is plain ``nn.MaxPool2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.training and x.device.type == "cpu" and x.dim() == 4 and not self.return_indices
                and x.is_contiguous() and not torch.compiler.is_compiling()):
            return _ChannelsLastMaxPool.apply(x, self)
        return super().forward(x)


def _unit(order: str, cin: int, cout: int, core: nn.Module, act: str, norm: Callable[[int], nn.Module],
          dropout: float = 0.0) -> list[nn.Module]:
    """Modules of one unit in ``order``: c=core (conv/linear), b=norm, a=activation, d=dropout."""
    modules, channels = [], cin
    for letter in order:
        if letter == "c":
            modules.append(core)
            channels = cout
        elif letter == "b":
            modules.append(norm(channels))
        elif letter == "a":  # in place only on what the core produced: a unit's input may also feed a shortcut
            modules.append(make_activation(act, inplace="c" in order[:order.index("a")]))
        elif letter == "d":
            modules.append(Dropout(dropout))
    return modules


@register_block("conv")
def build_conv(layer: Layer, shape: tuple, norm: Callable[[int], nn.Module]) -> nn.Module:
    cin = shape[0]
    groups = cin if layer.groups == "dw" else layer.groups
    conv = Conv2d(cin, layer.out, layer.kernel, layer.stride, layer.pad, layer.dilation, groups,
                     bias=layer.bias)
    return nn.Sequential(*_unit(layer.order, cin, layer.out, conv, layer.act, norm, layer.dropout))


@register_block("dws")
def build_dws(layer: Layer, shape: tuple, norm: Callable[[int], nn.Module]) -> nn.Module:
    cin, unit_order = shape[0], layer.order.replace("d", "")
    depthwise = Conv2d(cin, cin, layer.kernel, layer.stride, layer.pad, layer.dilation, groups=cin,
                          bias=layer.bias)
    pointwise = Conv2d(cin, layer.out, 1, bias=layer.bias)
    modules = _unit(unit_order, cin, cin, depthwise, layer.act, norm)
    modules += _unit(unit_order, cin, layer.out, pointwise, layer.act, norm)
    if layer.dropout:
        modules.append(Dropout(layer.dropout))
    return nn.Sequential(*modules)


class Residual(nn.Module):
    """``post(main(x) + shortcut(x))``."""

    def __init__(self, main: nn.Module, shortcut: nn.Module, post: nn.Module) -> None:
        super().__init__()
        self.main, self.shortcut, self.post = main, shortcut, post

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.main(x) + self.shortcut(x))


class Repeated(nn.Module):
    """One block applied ``len(applications)`` times in a row with the same weights: every parameter of the
    applications after the first is the first one's, so ``parameters()`` holds them once. Buffers (BatchNorm's
    running statistics) stay per application: each application is normalised by the statistics of its own input,
    as in time-specific batch norm for unrolled shared-weight nets (Liao & Poggio, 2016)."""

    def __init__(self, applications: list[nn.Module]) -> None:
        super().__init__()
        self.applications = nn.ModuleList(applications)
        first = dict(applications[0].named_modules())
        for other in applications[1:]:
            for name, module in other.named_modules():
                for key in list(module._parameters):
                    module._parameters[key] = first[name]._parameters[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for application in self.applications:
            x = application(x)
        return x


@register_block("res")
def build_res(layer: Layer, shape: tuple, norm: Callable[[int], nn.Module]) -> nn.Module:
    cin, cout, k, d = shape[0], layer.out, layer.kernel, layer.dilation
    pad, unit_order = layer.pad, layer.order.replace("d", "")
    plain_order = unit_order.replace("a", "")
    first = Conv2d(cin, cout, k, layer.stride, pad, d, bias=layer.bias)
    second = Conv2d(cout, cout, k, 1, pad, d, bias=layer.bias)
    main = nn.Sequential(*_unit(unit_order, cin, cout, first, layer.act, norm),
                         *_unit(plain_order, cout, cout, second, layer.act, norm))
    if layer.stride != 1 or cin != cout:
        projection = Conv2d(cin, cout, 1, layer.stride, bias=layer.bias)
        shortcut: nn.Module = nn.Sequential(*_unit(plain_order, cin, cout, projection, layer.act, norm))
    else:
        shortcut = nn.Identity()
    post = []
    if "a" in unit_order:
        post.append(make_activation(layer.act, inplace=True))  # on the fresh sum
    if layer.dropout:
        post.append(Dropout(layer.dropout))
    return Residual(main, shortcut, nn.Sequential(*post))


@register_block("max")
def build_max(layer: Layer, shape: tuple, norm: Callable[[int], nn.Module]) -> nn.Module:
    return MaxPool2d(layer.kernel, layer.stride, layer.pad)


@register_block("avg")
def build_avg(layer: Layer, shape: tuple, norm: Callable[[int], nn.Module]) -> nn.Module:
    return nn.AvgPool2d(layer.kernel, layer.stride, layer.pad)


@register_block("gap")
def build_gap(layer: Layer, shape: tuple, norm: Callable[[int], nn.Module]) -> nn.Module:
    return nn.AdaptiveAvgPool2d(1)


@register_block("flat")
def build_flat(layer: Layer, shape: tuple, norm: Callable[[int], nn.Module]) -> nn.Module:
    return nn.Flatten()


@register_block("fc")
def build_fc(layer: Layer, shape: tuple, norm: Callable[[int], nn.Module]) -> nn.Module:
    linear = nn.Linear(shape[0], layer.out, bias=layer.bias)
    return nn.Sequential(*_unit(layer.order, shape[0], layer.out, linear, layer.act, nn.BatchNorm1d,
                                layer.dropout))


@register_block("lsm")
def build_lsm(layer: Layer, shape: tuple, norm: Callable[[int], nn.Module]) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.LogSoftmax(dim=1)) if len(shape) == 3 else nn.LogSoftmax(dim=1)
