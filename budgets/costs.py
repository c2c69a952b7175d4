"""Analytic cost of a genome: output shape, parameters, receptive field and MACs per layer.

Pure functions of shapes, no ``nn.Module`` is built (fvcore's ``jit_handles`` style). Conventions:

* params: trainable parameters, exactly what ``sum(p.numel() for p in model.parameters())`` and
  torchsummary report (BatchNorm counts weight + bias, not its running statistics).
* MACs: one multiply-add = one MAC, counted for convolutions and linear layers only; BatchNorm is
  taken as folded into the preceding conv, pooling / activations / residual adds are free.
  This equals fvcore's ``FlopCountAnalysis`` with its batch_norm and adaptive_avg_pool2d handles off.
* receptive field: the recurrence ``rf += (dilation*(k-1)) * jump; jump *= stride`` over convs and
  pools; a residual block takes its larger branch; ``gap`` / ``flat`` end it (later layers see everything).
  The receptive field and the stride product are capped at ``RF_CAP`` (10^9), far past any image.
* shared weights (``repeat`` N): the block's cost applies N times in a row (MACs, receptive field, activations,
  TFLite operators), its params count once. A deployed int8 file stores each application's weights with its own
  batch-norm statistics folded in: ``Totals.stored_params`` counts them N times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from blocks.genome import BLOCK_TYPES, Genome, GenomeError, Layer
from budgets.tflm import TflmFeatures, layer_features

__all__ = ["Analysis", "Cost", "LayerCost", "Totals", "analyze", "totals", "COST_FUNCTIONS"]

Shape = tuple  # (C, H, W) for feature maps, (F,) after ``flat`` / ``fc``


@dataclass(frozen=True)
class LayerCost:
    """One row of the summary table."""

    index: int
    type: str
    token: str
    output_shape: Shape
    params: int
    macs: int
    receptive_field: int
    activation: int = 0  # values alive at once while this layer runs, one image


@dataclass(frozen=True)
class Analysis:
    """Per-layer rows and totals for a genome."""

    genome: Genome
    layers: tuple[LayerCost, ...]
    params: int
    macs: int
    receptive_field: int
    output_shape: Shape
    peak_activation: int = 0  # values: the largest ``activation`` of any layer
    stored_params: int = 0  # weights a deployed file holds (``Totals.stored_params``)

    @property
    def input_shape(self) -> Shape:
        spec = self.genome.input
        return (spec.channels, spec.height, spec.width)

    def to_dict(self) -> dict[str, Any]:
        return {
            "genome": self.genome.to_string(),
            "hash": self.genome.hash,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "params": self.params,
            "receptive_field": self.receptive_field,
            "macs": self.macs,
            "peak_activation_values": self.peak_activation,
            "layers": [
                {"index": r.index, "type": r.type, "token": r.token, "output_shape": list(r.output_shape),
                 "params": r.params, "macs": r.macs, "receptive_field": r.receptive_field,
                 "activation_values": r.activation}
                for r in self.layers
            ],
        }


class Cost(NamedTuple):
    """What one layer does to the walk: its output shape, its own params and MACs, the receptive field and
    jump (input pixels between neighbouring outputs) after it, and ``peak``: activation values alive at
    once while it runs, for one image (see ``analyze``)."""

    shape: Shape
    params: int
    macs: int
    rf: int
    jump: int
    peak: int


def _numel(shape: Shape) -> int:
    n = 1
    for size in shape:
        n *= size
    return n


# A cost function maps (layer, index, in_shape, rf, jump) -> Cost.
CostFn = Callable[[Layer, int, Shape, int, int], Cost]
COST_FUNCTIONS: dict[str, CostFn] = {}


def _register(name: str) -> Callable[[CostFn], CostFn]:
    def wrap(fn: CostFn) -> CostFn:
        COST_FUNCTIONS[name] = fn
        return fn
    return wrap


# --------------------------------------------------------------------------- helpers
def _fail(layer: Layer, index: int, field: str | None, message: str) -> None:
    raise GenomeError(message, layer=index, block=layer.type, field=field)


def _spatial(layer: Layer, index: int, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        _fail(layer, index, None, f"needs a (C, H, W) feature map but gets flat features {shape}; "
                                  "spatial layers must come before 'flat'")
    return shape


def _slide(layer: Layer, index: int, h: int, w: int, k: int, stride: int, pad: int, dilation: int) -> tuple[int, int]:
    """Output size of a sliding window (conv or pool, floor mode)."""
    span = dilation * (k - 1) + 1
    ho = (h + 2 * pad - span) // stride + 1
    wo = (w + 2 * pad - span) // stride + 1
    if ho < 1 or wo < 1:
        _fail(layer, index, "kernel", f"shrinks the {h}x{w} map below 1x1 (kernel {k}, dilation {dilation}, "
                                      f"padding {pad}, stride {stride})")
    return ho, wo


def _unit_params(order: str, cin: int, cout: int, weights: int, bias: bool, act: str) -> int:
    """Params of one conv/linear unit walked in ``order``: the norm sees cin before 'c', cout after."""
    params = weights + (cout if bias else 0)
    channels = cin
    for letter in order:
        if letter == "c":
            channels = cout
        elif letter == "b":
            params += 2 * channels
        elif letter == "a" and act == "prelu":
            params += 1
    return params


# --------------------------------------------------------------------------- cost functions
@_register("conv")
def _conv(layer: Layer, index: int, shape: Shape, rf: int, jump: int) -> Cost:
    cin, h, w = _spatial(layer, index, shape)
    cout, k = layer.out, layer.kernel
    groups = cin if layer.groups == "dw" else layer.groups
    if cin % groups or cout % groups:
        _fail(layer, index, "groups", f"in channels {cin} and out channels {cout} must both be divisible "
                                      f"by groups {groups}")
    ho, wo = _slide(layer, index, h, w, k, layer.stride, layer.pad, layer.dilation)
    weights = cout * (cin // groups) * k * k
    params = _unit_params(layer.order, cin, cout, weights, layer.bias, layer.act)
    rf += layer.dilation * (k - 1) * jump
    return Cost((cout, ho, wo), params, weights * ho * wo, rf, jump * layer.stride, _numel(shape) + cout * ho * wo)


@_register("dws")
def _dws(layer: Layer, index: int, shape: Shape, rf: int, jump: int) -> Cost:
    cin, h, w = _spatial(layer, index, shape)
    cout, k = layer.out, layer.kernel
    ho, wo = _slide(layer, index, h, w, k, layer.stride, layer.pad, layer.dilation)
    unit_order = layer.order.replace("d", "")
    depthwise = _unit_params(unit_order, cin, cin, cin * k * k, layer.bias, layer.act)
    pointwise = _unit_params(unit_order, cin, cout, cin * cout, layer.bias, layer.act)
    macs = ho * wo * cin * (k * k + cout)
    rf += layer.dilation * (k - 1) * jump
    mid = cin * ho * wo  # the depthwise output, alive with the input, then with the output
    return Cost((cout, ho, wo), depthwise + pointwise, macs, rf, jump * layer.stride,
                max(_numel(shape) + mid, mid + cout * ho * wo))


@_register("res")
def _res(layer: Layer, index: int, shape: Shape, rf: int, jump: int) -> Cost:
    cin, h, w = _spatial(layer, index, shape)
    cout, k, d, s = layer.out, layer.kernel, layer.dilation, layer.stride
    ho, wo = _slide(layer, index, h, w, k, s, layer.pad, d)
    unit_order = layer.order.replace("d", "")
    first = _unit_params(unit_order, cin, cout, cout * cin * k * k, layer.bias, layer.act)
    second = _unit_params(unit_order.replace("a", ""), cout, cout, cout * cout * k * k, layer.bias, layer.act)
    params = first + second + (1 if "a" in unit_order and layer.act == "prelu" else 0)
    macs = ho * wo * cout * k * k * (cin + cout)
    if s != 1 or cin != cout:  # 1x1 projection shortcut, norm only if the block has one
        params += _unit_params(unit_order.replace("a", ""), cin, cout, cin * cout, layer.bias, layer.act)
        macs += ho * wo * cin * cout
    rf += d * (k - 1) * jump + d * (k - 1) * jump * s  # main branch: two kxk convs, the second after the stride
    return Cost((cout, ho, wo), params, macs, rf, jump * s, _res_peak(unit_order, _numel(shape), cout * ho * wo,
                                                                    projection=s != 1 or cin != cout))


def _res_peak(order: str, x: int, out: int, projection: bool) -> int:
    """Values alive at once in a residual block: its input ``x`` is held for the shortcut throughout, so a norm
    or activation applied to it before a conv (pre-activation orders) makes a copy instead of running in place."""
    pre = order.index("c") > 0  # b / a before the conv: the held input is copied
    peak = x + 2 * out  # second conv: input held, its input (first conv's output) and its output
    if pre:
        peak = max(peak, 2 * x + out)  # first conv: held input, its pre-activated copy and its output
    if projection:
        plain = order.replace("a", "")
        peak = max(peak, (2 * x if plain.index("c") > 0 else x) + 2 * out)  # main output, (copy of) input, shortcut
    return peak


def _pool(layer: Layer, index: int, shape: Shape, rf: int, jump: int) -> Cost:
    c, h, w = _spatial(layer, index, shape)
    ho, wo = _slide(layer, index, h, w, layer.kernel, layer.stride, layer.pad, 1)
    return Cost((c, ho, wo), 0, 0, rf + (layer.kernel - 1) * jump, jump * layer.stride, _numel(shape) + c * ho * wo)


COST_FUNCTIONS["max"] = COST_FUNCTIONS["avg"] = _pool


@_register("gap")
def _gap(layer: Layer, index: int, shape: Shape, rf: int, jump: int) -> Cost:
    c, _, _ = _spatial(layer, index, shape)
    return Cost((c, 1, 1), 0, 0, rf, 0, _numel(shape) + c)  # jump 0: later layers add nothing to the RF


@_register("flat")
def _flat(layer: Layer, index: int, shape: Shape, rf: int, jump: int) -> Cost:
    features = _numel(shape)
    return Cost((features,), 0, 0, rf, 0, features)  # a view: no new tensor


@_register("fc")
def _fc(layer: Layer, index: int, shape: Shape, rf: int, jump: int) -> Cost:
    if len(shape) != 1:
        _fail(layer, index, None, f"fc needs flat features but gets a {shape} map; put 'flat' before it")
    fin, fout = shape[0], layer.out
    params = _unit_params(layer.order, fin, fout, fin * fout, layer.bias, layer.act)
    return Cost((fout,), params, fin * fout, rf, jump, fin + fout)


@_register("lsm")
def _lsm(layer: Layer, index: int, shape: Shape, rf: int, jump: int) -> Cost:
    if len(shape) == 3 and shape[1:] != (1, 1):
        _fail(layer, index, None, f"lsm needs class scores but gets a {shape} map; put a head (gap, flat+fc) first")
    return Cost(shape[:1], 0, 0, rf, jump, 2 * shape[0])


assert set(COST_FUNCTIONS) == set(BLOCK_TYPES), "every block type needs a cost function"


# --------------------------------------------------------------------------- public entry points
def _head_check(genome: Genome, shape: Shape) -> Shape:
    classes = genome.input.classes
    if shape == (classes,) or shape == (classes, 1, 1):
        return (classes,)
    raise GenomeError(f"output shape {shape} does not give {classes} class scores; end with a head "
                      "such as gap + 1x1 conv, 1x1 conv + gap, or flat + fc", layer=len(genome.layers) - 1,
                      block=genome.layers[-1].type)


class Totals(NamedTuple):
    params: int
    macs: int
    receptive_field: int
    peak_activation: int  # values alive at once at the busiest layer, one image
    tflm_tensors: int = 0  # the same under TFLite Micro's int8 operators (``budgets.tflm``)
    operators: int = 0  # TFLite operators of the int8 model (an estimate)
    channels: int = 0  # output channels of its weight tensors
    stored_params: int = 0  # weights a deployed file holds: a shared block's once per application (module doc)


def _applied(layer: Layer, index: int, shape: Shape, rf: int, jump: int, first: bool) -> tuple[Cost, TflmFeatures]:
    """The cost of ``layer`` applied ``layer.repeat`` times in a row (params once), and its TFLite features."""
    fn = COST_FUNCTIONS[layer.type]
    cost = fn(layer, index, shape, rf, jump)
    deployed = layer_features(layer, shape, cost.shape, cost.peak, first)
    for _ in range(1, layer.repeat or 1):
        if cost.shape[0] != shape[0]:
            _fail(layer, index, "repeat", f"a block applied {layer.repeat} times with the same weights must keep its "
                                          f"channels, but it turns {shape[0]} into {cost.shape[0]} (set out={shape[0]})")
        again = fn(layer, index, cost.shape, cost.rf, cost.jump)
        more = layer_features(layer, cost.shape, again.shape, again.peak, False)
        cost = Cost(again.shape, cost.params, cost.macs + again.macs, again.rf, again.jump, max(cost.peak, again.peak))
        deployed = TflmFeatures(max(deployed.tensors, more.tensors), deployed.operators + more.operators,
                                  deployed.channels + more.channels)
    return cost, deployed


RF_CAP = 10 ** 9  # receptive fields (and strides) past any image are reported as this: int64 for every JSON reader


def _walk(genome: Genome, rows: list | None) -> tuple[Totals, Shape]:
    """One pass over the layers: totals and the output shape; per-layer rows if asked."""
    spec = genome.input
    shape: Shape = (spec.channels, spec.height, spec.width)
    rf, jump = 1, 1
    total_params = total_macs = peak = tflm_peak = operators = channels = stored = 0
    for index, layer in enumerate(genome.layers):
        cost, deployed = _applied(layer, index, shape, rf, jump, first=index == 0)
        shape, rf, jump = cost.shape, min(cost.rf, RF_CAP), min(cost.jump, RF_CAP)
        total_params += cost.params
        stored += cost.params * (layer.repeat or 1)
        total_macs += cost.macs
        peak = max(peak, cost.peak)
        tflm_peak, operators, channels = (max(tflm_peak, deployed.tensors), operators + deployed.operators,
                                          channels + deployed.channels)
        if rows is not None:
            rows.append(LayerCost(index, layer.type, layer.token(), shape, cost.params, cost.macs, rf, cost.peak))
    return (Totals(total_params, total_macs, rf, peak, tflm_peak, operators, channels, stored),
            _head_check(genome, shape))


def analyze(genome: Genome) -> Analysis:
    """Per-layer output shape, params, MACs, receptive field and activation values; raises GenomeError on a bad
    structure.

    Activation memory (one image, inference): a layer holds its input and its output at once, except that
    BatchNorm, activations and dropout run in place and ``flat`` is a view; a ``dws`` block holds its
    depthwise output with its input, then with its output; a ``res`` block keeps its input for the shortcut
    while its main branch holds two maps of the output size.
    """
    rows: list[LayerCost] = []
    t, output = _walk(genome, rows)
    return Analysis(genome, tuple(rows), t.params, t.macs, t.receptive_field, output, t.peak_activation,
                    t.stored_params)


def totals(genome: Genome) -> Totals:
    """``(params, macs, receptive_field, peak_activation)`` without the per-layer rows: the search's fast path."""
    return _walk(genome, None)[0]
