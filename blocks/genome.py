"""The genome: a declarative, JSON-able description of a small CNN.

A genome is an input spec plus an ordered list of layers. Each layer has a
block ``type`` (a name in the block registry) and a handful of fields. It has
two equivalent forms that round-trip exactly:

* plain data (dicts / lists, what a JSON file holds)::

    {"input": {"channels": 1, "height": 28, "width": 28, "classes": 10},
     "layers": [{"type": "conv", "out": 8, "kernel": 3}, {"type": "max", "kernel": 2}, ...]}

* a compact one-line string (timm style): the input token, then one token per
  layer, joined by ``-``; inside a token the block name comes first and each
  non-default field follows as ``_<key><value>``::

    i1x28x28n10-conv_c8_k3-max_k2-...

Parsing never evaluates code: JSON goes through ``json.loads`` and strings
through a small hand-written tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ACTIVATIONS",
    "BudgetNASError",
    "BLOCK_TYPES",
    "Genome",
    "GenomeError",
    "InputSpec",
    "Layer",
    "load_genome",
    "make_layer",
]

#: Activation names accepted by the ``act`` field (no underscores: they live inside compact tokens).
ACTIVATIONS = ("relu", "relu6", "lrelu", "prelu", "elu", "silu", "gelu", "hswish", "tanh", "sigmoid")


class BudgetNASError(ValueError):
    """Base of every error BudgetNAS reports as one readable line; the CLI exits with ``exit_code``."""

    exit_code = 2  # bad input


class GenomeError(BudgetNASError):
    """A malformed genome. ``str()`` is one line naming where (file, layer index, field) and what."""

    def __init__(self, message: str, *, layer: int | None = None, block: str | None = None,
                 field: str | None = None, source: str | None = None) -> None:
        self.message, self.layer, self.block, self.field, self.source = message, layer, block, field, source
        super().__init__(self._render())

    def _render(self) -> str:
        where = [self.source] if self.source else []
        if self.layer is not None:
            where.append(f"layer {self.layer}" + (f" ({self.block})" if self.block else ""))
        if self.field:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def with_source(self, source: str) -> "GenomeError":
        """The same error, prefixed with the file or string it came from."""
        return GenomeError(self.message, layer=self.layer, block=self.block, field=self.field, source=source)


# --------------------------------------------------------------------------- field schema
@dataclass(frozen=True)
class _Field:
    name: str  # JSON key
    key: str  # compact-string key
    kind: str  # "pos_int" | "nonneg_int_or_same" | "pos_int_or_dw" | "bool" | "order" | "act" | "rate"


_FIELDS = {f.name: f for f in (
    _Field("out", "c", "pos_int"),
    _Field("kernel", "k", "pos_int"),
    _Field("stride", "s", "pos_int"),
    _Field("padding", "p", "nonneg_int_or_same"),
    _Field("dilation", "d", "pos_int"),
    _Field("groups", "g", "pos_int_or_dw"),
    _Field("bias", "b", "bool"),
    _Field("order", "o", "order"),
    _Field("act", "a", "act"),
    _Field("dropout", "r", "rate"),
    _Field("repeat", "x", "pos_int"),
)}
_BY_KEY = {f.key: f for f in _FIELDS.values()}
_REQUIRED = object()  # marks a field without a default


@dataclass(frozen=True)
class _BlockType:
    name: str
    defaults: dict  # field name -> default value or _REQUIRED
    order_letters: str = ""  # letters allowed in ``order``: c=conv/linear, b=norm, a=activation, d=dropout
    doc: str = ""


_UNIT = {"bias": None, "order": "cba", "act": "relu", "dropout": 0.0}
_SHARED = {"repeat": 1}  # applications of the block in a row, all with the first one's weights (``Repeated``)
BLOCK_TYPES: dict[str, _BlockType] = {b.name: b for b in (
    _BlockType("conv", {"out": _REQUIRED, "kernel": _REQUIRED, "stride": 1, "padding": 0, "dilation": 1,
                        "groups": 1, **_UNIT, **_SHARED}, "cbad",
               "Conv2d with BatchNorm / activation / dropout in the given order (k1 = a 1x1 transition)."),
    _BlockType("dws", {"out": _REQUIRED, "kernel": 3, "stride": 1, "padding": 0, "dilation": 1, **_UNIT, **_SHARED},
               "cbad", "Depthwise-separable: depthwise kxk unit then pointwise 1x1 unit, each in `order`, dropout last."),
    _BlockType("res", {"out": _REQUIRED, "kernel": 3, "stride": 1, "dilation": 1, **_UNIT, **_SHARED}, "cbad",
               "Residual: unit(k, stride) -> unit(k) without activation, + shortcut (1x1 projection if the "
               "shape changes), then activation and dropout. Padding is always 'same'."),
    _BlockType("max", {"kernel": _REQUIRED, "stride": None, "padding": 0}, "",
               "MaxPool2d (stride defaults to kernel)."),
    _BlockType("avg", {"kernel": _REQUIRED, "stride": None, "padding": 0}, "",
               "AvgPool2d (stride defaults to kernel); a fixed AvgPool head when it covers the map."),
    _BlockType("gap", {}, "", "Global average pool to 1x1 (ends the receptive field)."),
    _BlockType("flat", {}, "", "Flatten (C, H, W) to C*H*W features (ends the receptive field)."),
    _BlockType("fc", {"out": _REQUIRED, "bias": None, "order": "c", "act": "relu", "dropout": 0.0}, "cbad",
               "Linear on flat features, with optional BatchNorm1d / activation / dropout in `order`."),
    _BlockType("lsm", {}, "", "LogSoftmax over classes; must be the last layer."),
)}


# --------------------------------------------------------------------------- data classes
@dataclass(frozen=True)
class InputSpec:
    """Input tensor shape (channels, height, width) and number of classes."""

    channels: int = 1
    height: int = 28
    width: int = 28
    classes: int = 10

    def token(self) -> str:
        return f"i{self.channels}x{self.height}x{self.width}n{self.classes}"


@dataclass(frozen=True)
class Layer:
    """One layer of a genome. Fields a block type does not use stay ``None``.

    Values are normalised: ``bias`` is resolved (default: on unless the unit has a norm),
    ``order`` contains ``d`` exactly when ``dropout > 0``, pooling ``stride`` defaults to ``kernel``.
    """

    type: str
    out: int | None = None
    kernel: int | None = None
    stride: int | None = None
    padding: int | str | None = None
    dilation: int | None = None
    groups: int | str | None = None
    bias: bool | None = None
    order: str | None = None
    act: str | None = None
    dropout: float | None = None
    repeat: int | None = None  # conv / dws / res: applied this many times in a row with one set of weights

    @property
    def pad(self) -> int:
        """Resolved padding in pixels per side, the one geometry rule the builder and the cost math share.

        ``same`` is ``dilation*(k-1)//2`` for convolutions (always so for ``res``) and ``k//2`` for pools.
        """
        if self.type == "res":
            return self.dilation * (self.kernel - 1) // 2
        if self.padding != "same":
            return self.padding or 0
        if self.type in ("max", "avg"):
            return self.kernel // 2
        return self.dilation * (self.kernel - 1) // 2

    def to_dict(self, explicit: bool = True) -> dict[str, Any]:
        """Plain data: every field the block type uses, or (``explicit=False``) only non-default ones."""
        d: dict[str, Any] = {"type": self.type}
        d.update(self._fields(explicit))
        return d

    def token(self) -> str:
        """Compact form: block name plus the fields that differ from their defaults."""
        return "_".join([self.type, *(_BY_NAME_KEY[k] + _format_value(v) for k, v in self._fields(False).items())])

    def _fields(self, explicit: bool) -> dict[str, Any]:
        out = {}
        for name, default in BLOCK_TYPES[self.type].defaults.items():
            value = getattr(self, name)
            if explicit or value != _default_for(self, name, default):
                out[name] = value
        return out


_BY_NAME_KEY = {f.name: f.key for f in _FIELDS.values()}


def _default_for(layer: Layer, name: str, default: Any) -> Any:
    """The value a field takes when it is left out, given the layer's other (normalised) fields."""
    if name == "order":
        base = BLOCK_TYPES[layer.type].defaults["order"]
        return base + "d" if layer.dropout and "d" not in base else base
    if name == "bias":
        return "b" not in (layer.order or "")
    if name == "stride" and default is None:
        return layer.kernel
    return default


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass(frozen=True)
class Genome:
    """An input spec plus an ordered tuple of layers. Immutable and hashable."""

    input: InputSpec
    layers: tuple[Layer, ...] = field(default_factory=tuple)

    # ---- constructors
    @classmethod
    def from_dict(cls, data: Any) -> "Genome":
        """Validate plain data (as loaded from JSON) into a genome; raises GenomeError."""
        if not isinstance(data, dict):
            raise GenomeError(f"a genome must be a JSON object with 'input' and 'layers', got {type(data).__name__}")
        unknown = set(data) - {"input", "layers", "name", "description", "recipe"}
        if unknown:
            raise GenomeError(f"unknown top-level key(s) {sorted(unknown)}; expected 'input', 'layers' "
                              "(and optional 'name', 'description', 'recipe')")
        spec = _parse_input(data.get("input", {}))
        layers = data.get("layers")
        if not isinstance(layers, list) or not layers:
            raise GenomeError("'layers' must be a non-empty list of layer objects")
        _check_length(len(layers))
        parsed = []
        for i, raw in enumerate(layers):
            if not isinstance(raw, dict):
                raise GenomeError(f"expected a layer object, got {type(raw).__name__}", layer=i)
            raw = dict(raw)
            block = raw.pop("type", None)
            parsed.append(make_layer(block, raw, i))
        return cls(spec, tuple(parsed))._checked()

    @classmethod
    def from_string(cls, text: str) -> "Genome":
        """Parse the compact one-line form; raises GenomeError."""
        if not isinstance(text, str) or not text.strip():
            raise GenomeError("empty genome string")
        if len(text) > MAX_TEXT:
            raise GenomeError(f"genome string of {len(text):,} characters is over the {MAX_TEXT:,} limit")
        tokens = text.strip().split("-")
        _check_length(len(tokens) - 1)
        spec = _parse_input_token(tokens[0])
        if len(tokens) < 2:
            raise GenomeError("genome string has no layers after the input token")
        layers = []
        for i, token in enumerate(tokens[1:]):
            parts = token.split("_")
            block, fields = parts[0], {}
            if block not in BLOCK_TYPES:
                _unknown_block(block, i)
            for part in parts[1:]:
                m = re.fullmatch(r"([a-z])(.+)", part)
                spec_field = _BY_KEY.get(m.group(1)) if m else None
                if spec_field is None:
                    raise GenomeError(f"cannot read '{part}' in token '{token}'; keys are "
                                      f"{', '.join(f.key + '=' + f.name for f in _FIELDS.values())}",
                                      layer=i, block=block)
                if spec_field.name in fields:
                    raise GenomeError("given twice", layer=i, block=block, field=spec_field.name)
                fields[spec_field.name] = _decode_string_value(m.group(2), spec_field, i, block)
            layers.append(make_layer(block, fields, i))
        return cls(spec, tuple(layers))._checked()

    @classmethod
    def parse(cls, source: str) -> "Genome":
        """A JSON text, or a compact string."""
        s = source.strip()
        if s.startswith("{"):
            return cls.from_dict(_json(s))
        return cls.from_string(s)

    # ---- views
    def to_dict(self, explicit: bool = True) -> dict[str, Any]:
        """Plain data; ``explicit=False`` leaves out fields at their defaults (shorter, same genome)."""
        return {"input": {"channels": self.input.channels, "height": self.input.height,
                          "width": self.input.width, "classes": self.input.classes},
                "layers": [layer.to_dict(explicit) for layer in self.layers]}

    def to_json(self, indent: int | None = 2, explicit: bool = True) -> str:
        return json.dumps(self.to_dict(explicit), indent=indent)

    def to_string(self) -> str:
        """The canonical compact form (``Genome.from_string(g.to_string()) == g``)."""
        return "-".join([self.input.token(), *(layer.token() for layer in self.layers)])

    def __str__(self) -> str:
        return self.to_string()

    def canonical(self) -> "Genome":
        """The one form of designs that compute the same function: a 1x1 conv with nothing after it in its unit (no
        norm, activation or dropout) followed by a global average pool is written pool first: both are affine, so
        they commute, and the pool first costs fewer MACs."""
        layers = list(self.layers)
        for i in range(len(layers) - 1):
            conv, pool = layers[i], layers[i + 1]
            if (pool.type == "gap" and conv.type == "conv" and conv.kernel == 1 and conv.order == "c"
                    and (conv.stride or 1) == 1 and (conv.repeat or 1) == 1
                    and conv.groups in (None, 1) and conv.padding in (None, 0, "same")):
                layers[i], layers[i + 1] = pool, conv
        return Genome(self.input, tuple(layers))

    @property
    def hash(self) -> str:
        """A stable 12-hex-digit id of the canonical form (``canonical``): one id for designs that compute the same
        function, for de-duplication."""
        return hashlib.sha1(self.canonical().to_string().encode()).hexdigest()[:12]

    def _checked(self) -> "Genome":
        for i, layer in enumerate(self.layers):
            if layer.type == "lsm" and i != len(self.layers) - 1:
                raise GenomeError("lsm (log-softmax) must be the last layer", layer=i, block="lsm")
        return self


def load_genome(source: str | Path) -> Genome:
    """A genome from a ``.json`` file path or a compact string. Errors name the file."""
    text = str(source)
    if not text.strip():
        raise GenomeError("empty genome: give a .json file or a compact string")
    path = Path(text)
    looks_like_file = text.endswith(".json") or (len(text) < 4096 and "\n" not in text and _is_file(path))
    if not looks_like_file:
        try:
            return Genome.parse(text)
        except GenomeError as e:
            raise e.with_source("genome string") from None
    try:
        if path.stat().st_size > MAX_TEXT:
            raise GenomeError(f"{path.stat().st_size:,} bytes is over the {MAX_TEXT:,}-byte limit for a genome file",
                              source=text)
        content = path.read_text(encoding="utf-8-sig")  # a byte-order mark, as some editors write, is not JSON
    except FileNotFoundError:
        raise GenomeError(f"no such genome file: {text}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise GenomeError(f"cannot read genome file {text}: {e}") from None
    try:
        return Genome.from_dict(_json(content))
    except GenomeError as e:
        raise e.with_source(text) from None


MAX_LAYERS = 1000  # no tiny CNN has more; bounds the work of parsing and checking a hostile file
MAX_TEXT = 1_000_000  # characters of a genome string or bytes of a genome file
MAX_REPEAT = 64  # applications of one shared block (``repeat``)


def _check_length(layers: int) -> None:
    if layers > MAX_LAYERS:
        raise GenomeError(f"{layers:,} layers is over the {MAX_LAYERS:,}-layer limit")


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a long compact string is not a valid file name
        return False


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise GenomeError(f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise GenomeError("malformed JSON: nested too deeply") from None


# --------------------------------------------------------------------------- parsing helpers
def _unknown_block(block: Any, index: int) -> None:
    raise GenomeError(f"unknown block type {block!r}; known: {', '.join(BLOCK_TYPES)}", layer=index,
                      field="type")


def _parse_input(raw: Any) -> InputSpec:
    if not isinstance(raw, dict):
        raise GenomeError(f"'input' must be an object with channels/height/width/classes, got {type(raw).__name__}")
    unknown = set(raw) - {"channels", "height", "width", "classes"}
    if unknown:
        raise GenomeError(f"input: unknown key(s) {sorted(unknown)}; expected channels, height, width, classes")
    values = {}
    for name in ("channels", "height", "width", "classes"):
        value = raw.get(name, getattr(InputSpec, name))
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise GenomeError(f"input field '{name}' must be a positive integer, got {value!r}")
        values[name] = value
    return InputSpec(**values)


def _parse_input_token(token: str) -> InputSpec:
    m = re.fullmatch(r"i(\d+)x(\d+)x(\d+)n(\d+)", token)
    if not m:
        raise GenomeError(f"the first token must be the input spec like 'i1x28x28n10' "
                          f"(channels x height x width, n classes), got {token!r}")
    values = [int(v) for v in m.groups()]
    if min(values) <= 0:
        raise GenomeError(f"input spec {token!r} has a zero size")
    return InputSpec(*values)


def _decode_string_value(text: str, spec: _Field, index: int, block: str) -> Any:
    """A compact-string value to the Python value its JSON form would have."""
    if spec.kind == "bool":
        if text not in ("0", "1"):
            raise GenomeError(f"expected 0 or 1, got {text!r}", layer=index, block=block, field=spec.name)
        return text == "1"
    if spec.kind in ("order", "act") or text in ("same", "dw"):
        return text
    if spec.kind == "rate":
        try:
            return float(text)
        except ValueError:
            raise GenomeError(f"expected a number, got {text!r}", layer=index, block=block, field=spec.name) from None
    if not text.isdigit():
        raise GenomeError(f"expected an integer, got {text!r}", layer=index, block=block, field=spec.name)
    return int(text)


def make_layer(block: Any, fields: dict, index: int = 0) -> Layer:
    """A validated, normalised layer from its block name and JSON-style fields; ``index`` is for errors."""
    if not isinstance(block, str):
        raise GenomeError("missing block 'type'" if block is None else f"'type' must be a string, got {block!r}",
                          layer=index, field="type")
    btype = BLOCK_TYPES.get(block)
    if btype is None:
        _unknown_block(block, index)
    unknown = [k for k in fields if k not in btype.defaults]
    if unknown:
        allowed = ", ".join(btype.defaults) or "none"
        raise GenomeError(f"unknown field for {block} (allowed: {allowed})", layer=index, block=block,
                          field=unknown[0])
    values: dict[str, Any] = {}
    for name, default in btype.defaults.items():
        if name in fields:
            values[name] = _check_value(fields[name], _FIELDS[name], btype, index)
        elif default is _REQUIRED:
            raise GenomeError("missing required field", layer=index, block=block, field=name)
        else:
            values[name] = default
    # normalisation that depends on several fields
    if "order" in values:
        order, dropout = values["order"], values["dropout"]
        if "d" in order and not dropout:
            raise GenomeError("order has 'd' (dropout) but 'dropout' is 0", layer=index, block=block, field="order")
        if dropout and "d" not in order:
            values["order"] = order + "d"
        if values["bias"] is None:
            values["bias"] = "b" not in values["order"]
    if values.get("repeat", 1) > MAX_REPEAT:
        raise GenomeError(f"repeat {values['repeat']} is over the {MAX_REPEAT} limit", layer=index, block=block,
                          field="repeat")
    if block in ("max", "avg") and values["stride"] is None:
        values["stride"] = values["kernel"]
    if values.get("padding") == "same" and (values["kernel"] % 2 == 0):
        raise GenomeError(f"padding 'same' needs an odd kernel, got kernel {values['kernel']}",
                          layer=index, block=block, field="padding")
    if block in ("max", "avg") and values["padding"] not in ("same",) and values["padding"] * 2 > values["kernel"]:
        raise GenomeError(f"pool padding {values['padding']} must be at most half the kernel {values['kernel']}",
                          layer=index, block=block, field="padding")
    return Layer(type=block, **values)


def _check_value(value: Any, spec: _Field, btype: _BlockType, index: int) -> Any:
    def fail(expected: str) -> None:
        raise GenomeError(f"expected {expected}, got {value!r}", layer=index, block=btype.name, field=spec.name)

    is_int = isinstance(value, int) and not isinstance(value, bool)
    kind = spec.kind
    if kind == "pos_int":
        if not is_int or value <= 0:
            fail("a positive integer")
    elif kind == "nonneg_int_or_same":
        if value != "same" and (not is_int or value < 0):
            fail("a non-negative integer or 'same'")
    elif kind == "pos_int_or_dw":
        if value != "dw" and (not is_int or value <= 0):
            fail("a positive integer or 'dw' (depthwise)")
    elif kind == "bool":
        if not isinstance(value, bool):
            fail("true or false")
    elif kind == "act":
        if value not in ACTIVATIONS:
            fail(f"one of {', '.join(ACTIVATIONS)}")
    elif kind == "rate":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < 1) \
                or not math.isfinite(value):
            fail("a dropout rate in [0, 1)")
        value = float(value)
    elif kind == "order":
        letters = btype.order_letters
        if (not isinstance(value, str) or not value or any(ch not in letters for ch in value)
                or len(set(value)) != len(value) or "c" not in value):
            fail(f"a string of distinct letters from '{letters}' containing 'c' "
                 "(c=conv/linear, b=norm, a=activation, d=dropout), e.g. 'cba' or 'cab'")
    return value
