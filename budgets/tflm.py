"""An int8 deployment under TensorFlow Lite Micro, as pure functions of the genome: which layers it cannot run in
int8, and upper estimates of its tensor arena and flatbuffer bytes.

The rules come from measurements (``benchmarks/bench_int8.py``: the zoo, one factor at a time, and random genomes
of every block kind, converted with litert-torch and run in TFLM; BENCHMARKS.md, "int8 on the device"):

* The converter runs BatchNorm and ReLU / ReLU6 inside the conv when they directly follow it (``cba``, ``ca``). A
  BN anywhere else (``cab``: after the ReLU; ``bac``: before the conv) is exported as a 1x1 depthwise conv
  (``reports.tflite``), an operator of its own with an input and an output of the conv's size.
* A strided conv / pool with padding, and a padding PyTorch pads symmetrically where TFLite's SAME would not, gets an
  explicit PAD operator: a padded copy of the input.
* A residual block holds its input, the main branch's output, the shortcut and the sum.
* TFLM does not run ops in place; its planner reuses freed tensors, so the arena's head is about the largest
  set of tensors alive at once, and its tail holds per-operator and per-channel data.
* prelu and silu are left in float by the quantizer (a DEQUANTIZE ... QUANTIZE round trip with 4-byte tensors),
  elu and gelu do not run at all, and lrelu, hswish, tanh and sigmoid run in int8 in a plain conv unit but fall
  back to float in residual blocks and after a norm: with ``--precision int8`` only relu and relu6 are accepted,
  and the others are refused before training, as is a residual block without an activation after its sum
  (its ADD stayed in float in 2 of the 3 measured) or with one before its conv (``oacb``: float on the held
  input).

``arena_estimate`` and ``flatbuffer_estimate`` are linear in features computed here, with coefficients fitted as
an upper envelope of the measurements (never below any of them); ``MEASURED_MARGIN`` says how far above they were.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from blocks.genome import Genome, Layer

__all__ = ["ARENA_COEFFICIENTS", "FLATBUFFER_COEFFICIENTS", "INT8_ACTIVATIONS", "MEASURED_MARGIN", "TflmFeatures",
           "arena_estimate", "flatbuffer_estimate", "int8_problems", "layer_features"]

FUSED_ACTIVATIONS = ("relu", "relu6")
INT8_ACTIVATIONS = ("relu", "relu6")  # the activations measured to keep every tensor in int8 wherever they appear
_NOT_INT8 = {
    "prelu": "is left in float by the quantizer (DEQUANTIZE, RELU, MUL, SUB, QUANTIZE: 4-byte tensors)",
    "silu": "is left in float by the quantizer (DEQUANTIZE, LOGISTIC, MUL, QUANTIZE: 4-byte tensors)",
    "elu": "converts, but TensorFlow Lite Micro cannot allocate the model",
    "gelu": "converts, but TensorFlow Lite Micro cannot allocate the model",
    **{act: "runs in int8 in a plain conv unit but falls back to float (DEQUANTIZE ... QUANTIZE, 4-byte tensors) "
            "in residual blocks and after a norm" for act in ("lrelu", "hswish", "tanh", "sigmoid")}}

# Fitted by ``python benchmarks/bench_int8.py --fit benchmarks/results/int8/stripped/*.jsonl`` on 100 measured designs
# (files with their strings stripped, as ``reports.tflite.export_int8`` writes them; upper envelope, scaled by the
# worst miss on designs held out of a first fit: arena x1.111, flatbuffer x1.023): bytes = c0 + c1 * f1 + ... with
# features (planned tensors, operators, channels) for the arena and (stored params, operators, channels) for the
# flatbuffer.
ARENA_COEFFICIENTS = (2620.079, 1.2, 181.234, 0.444)
FLATBUFFER_COEFFICIENTS = (1054.252, 1.023, 273.217, 28.364)
MEASURED_MARGIN = {"arena": (0.46, 0.90), "flatbuffer": (0.60, 0.98)}  # measured / estimate: (lowest, highest)


class TflmFeatures(NamedTuple):
    """What one layer adds to the int8 deployment: the largest set of values alive at once while its operators
    run (``tensors``), how many operators it becomes, and its weight tensors' output channels (each has a bias,
    a scale and a zero point, and per-channel data in the arena)."""

    tensors: int
    operators: int
    channels: int


def _split_order(layer: Layer) -> tuple[str, str]:
    """The unit's letters before its conv, and those after it that the converter cannot fuse into it."""
    order = layer.order.replace("d", "")
    at = order.index("c")
    rest = order[at + 1:]
    if rest.startswith("b"):
        rest = rest[1:]
    if rest.startswith("a") and layer.act in FUSED_ACTIVATIONS:
        rest = rest[1:]
    return order[:at], rest


def _needs_pad(layer: Layer) -> bool:
    pad = layer.pad
    if not pad:
        return False
    if layer.type in ("max", "avg"):
        return True
    return (layer.stride or 1) != 1 or pad * 2 != (layer.dilation or 1) * (layer.kernel - 1)


def layer_features(layer: Layer, in_shape: tuple, out_shape: tuple, peak: int, first: bool) -> TflmFeatures:
    """``TflmFeatures`` of one layer from its input and output shapes and its analytic ``peak`` (values)."""
    x, y = math.prod(in_shape), math.prod(out_shape)
    candidates = [peak]
    operators = 1
    channels = 0
    if layer.type in ("conv", "dws", "res", "fc"):
        pre, post = _split_order(layer)
        units = {"conv": 1, "dws": 2, "res": 2, "fc": 1}[layer.type]
        channels = layer.out * (2 if layer.type == "res" else 1) + (in_shape[0] if layer.type == "dws" else 0)
        operators = units + units * (len(pre) + len(post))
        if post:
            mid = in_shape[0] * math.prod(out_shape[1:]) if layer.type == "dws" else y
            candidates += [2 * y, 2 * mid]
            channels += units * layer.out * post.count("b")  # a standalone BN is exported as a 1x1 depthwise conv
        if pre:
            candidates.append((8 if first else 2) * x)  # the first op on the image stays float: 4-byte in and out
        if layer.type == "res":
            projection = (layer.stride or 1) != 1 or in_shape[0] != layer.out
            operators += 1 + projection + 2 * ((layer.stride or 1) != 1)
            channels += layer.out if projection else 0
            candidates.append(x + 3 * y)
            if (layer.stride or 1) != 1:  # the shortcut subsamples (STRIDED_SLICE) while the padded input is held
                c, h, w = in_shape
                candidates.append(x + c * (h + 2 * layer.pad) * (w + 2 * layer.pad) + x // 2 + 2 * y)
    if layer.type in ("conv", "dws", "res", "max", "avg") and _needs_pad(layer):
        c, h, w = in_shape
        padded = c * (h + 2 * layer.pad) * (w + 2 * layer.pad)
        candidates.append(2 * padded if layer.type in ("max", "avg") else x + padded)  # pools: PAD, QUANTIZE
        operators += 2
    if layer.type in ("max", "avg"):
        operators += 1  # a QUANTIZE after the pool
        candidates.append(2 * y)
    if layer.type == "flat" and len(in_shape) == 3 and math.prod(in_shape[1:]) > 1:
        operators += 1  # TRANSPOSE to PyTorch's channel-first order, then RESHAPE
        candidates.append(2 * x)
    if layer.type == "lsm":
        operators += 1
        candidates.append(5 * x)  # DEQUANTIZE to float, then LOG_SOFTMAX in float
    return TflmFeatures(max(candidates), operators, channels)


def _linear(coefficients: tuple, features: tuple) -> int:
    return math.ceil(coefficients[0] + sum(c * f for c, f in zip(coefficients[1:], features)))


def arena_estimate(tensors: int, operators: int, channels: int) -> int:
    """Bytes of TFLM's tensor arena for the int8 model (an upper estimate; module doc)."""
    return _linear(ARENA_COEFFICIENTS, (tensors, operators, channels))


def flatbuffer_estimate(params: int, operators: int, channels: int) -> int:
    """Bytes of the int8 ``.tflite`` flatbuffer (an upper estimate; module doc)."""
    return _linear(FLATBUFFER_COEFFICIENTS, (params, operators, channels))


def int8_problems(genome: Genome) -> list[str]:
    """Why TFLM cannot run this genome in int8, one line per layer naming the layer and the field; [] if it can."""
    out = []
    for index, layer in enumerate(genome.layers):
        if layer.type == "res" and "a" not in layer.order:
            out.append(f"layer {index} (res), field 'order': a residual block without an activation after its sum "
                       "can leave the sum in float (DEQUANTIZE ... ADD: 4-byte tensors, measured); give it one "
                       "('a' in the order)")
        elif layer.type == "res" and layer.order.index("a") < layer.order.index("c"):
            out.append(f"layer {index} (res), field 'order': an activation before the conv of a residual block runs "
                       "in float on the held input (4-byte tensors, measured: 2-3x the arena); put it after the "
                       "conv ('cba' or 'cab')")
        elif layer.act in _NOT_INT8 and "a" in (layer.order or "") and layer.type in ("conv", "dws", "res", "fc"):
            out.append(f"layer {index} ({layer.type}), field 'act': {layer.act} {_NOT_INT8[layer.act]}; "
                       f"use one of {', '.join(INT8_ACTIVATIONS)}")
        elif layer.type == "res" and (layer.stride or 1) > 1 and index == 0:
            out.append(f"layer {index} (res), field 'stride': a strided residual block on the input itself does not "
                       "convert (its PAD cannot keep the input's quantization scale, measured); start with a conv")
        elif _relu6_res(layer) and (layer.repeat or 1) > 1:
            out.append(f"layer {index} (res), field 'repeat': a relu6 residual block applied {layer.repeat} times "
                       f"{_RELU6_CHAIN}; use relu")
        elif _relu6_res(layer) and (previous := _previous_weighted(genome, index)) is not None \
                and _relu6_res(genome.layers[previous]):
            out.append(f"layer {index} (res), field 'act': relu6 in a residual block right after another (layer "
                       f"{previous}, with only pooling between) {_RELU6_CHAIN}; use relu, or put a conv between them")
    return out


_RELU6_CHAIN = ("leaves the sums in float (DEQUANTIZE ... ADD ... QUANTIZE: 4-byte tensors, 2-3x the arena, measured), "
                "or does not convert when the second is strided")


def _relu6_res(layer: Layer) -> bool:
    return layer.type == "res" and layer.act == "relu6"  # a res block always has its activation (rule above)


def _previous_weighted(genome: Genome, index: int) -> int | None:
    """The layer before ``index`` that has weights, skipping pools; None when there is none."""
    for before in range(index - 1, -1, -1):
        if genome.layers[before].type not in ("max", "avg"):
            return before
    return None
