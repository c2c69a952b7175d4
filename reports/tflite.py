"""An int8 TensorFlow Lite model of a trained genome, measured on the runtime that ships: TensorFlow Lite Micro.

``export_int8`` quantizes a trained model after training (PT2E, per-channel symmetric int8 weights, int8
activations calibrated on training images) and converts it with ``litert-torch``. The file takes one image in
the microcontroller's layout, NHWC ``1 x H x W x C``, as int8: ``q = round(x / scale) + zero_point`` where ``x`` is
the normalised image ``(pixels / 255 - mean) / std``; it returns the class scores as int8 (their argmax is the
class). ``measure_tflm`` runs the file in TFLM's Python interpreter over a test set, and reads the tensor arena it
needs from TFLM's recording allocator. Needs ``pip install -e '.[mcu]'``.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from blocks import BudgetNASError, Genome

__all__ = ["MCU_INSTALL", "Int8Error", "Int8Model", "TflmMeasurement", "arena_breakdown", "arena_bytes", "export_int8",
           "measure_tflm", "normalised", "operators", "require_mcu"]

MCU_INSTALL = "pip install -e '.[mcu]' (litert-torch, tflite-micro)"
CALIBRATION_IMAGES = 256


class Int8Error(BudgetNASError):
    """A model that cannot be made into an int8 TFLite file here (packages missing, or a conversion failure)."""


@dataclass(frozen=True)
class Int8Model:
    """An int8 ``.tflite`` flatbuffer and the quantization of its input and output. Their dtype is int8, except
    where the model begins or ends with an operator the quantizer leaves in float (``log_softmax``, a leading
    pool): then that end is float32 and the file quantizes / dequantizes inside."""

    flatbuffer: bytes
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    input_dtype: str = "int8"
    output_dtype: str = "int8"

    @property
    def tflite_bytes(self) -> int:
        return len(self.flatbuffer)

    def quantize(self, normalised: torch.Tensor) -> np.ndarray:
        """The file's NHWC input of a normalised NCHW float batch (int8, or float32 where the input is float)."""
        x = normalised.detach().cpu().permute(0, 2, 3, 1).numpy()
        if self.input_dtype != "int8":
            return x.astype(np.float32)
        return np.clip(np.round(x / self.input_scale) + self.input_zero_point, -128, 127).astype(np.int8)

    def input_description(self) -> dict:
        return {"layout": "NHWC", "dtype": self.input_dtype, "scale": self.input_scale,
                "zero_point": self.input_zero_point, "output_dtype": self.output_dtype,
                "output_scale": self.output_scale, "output_zero_point": self.output_zero_point}


@dataclass(frozen=True)
class TflmMeasurement:
    """What TensorFlow Lite Micro measured: test accuracy (%), tensor arena bytes, and the flatbuffer's bytes."""

    accuracy: float
    arena_bytes: int
    tflite_bytes: int


def require_mcu() -> None:
    """Raise ``Int8Error`` naming what to install when the int8 export's packages are missing."""
    missing = [name for name, module in (("litert-torch", "litert_torch"), ("tflite-micro", "tflite_micro"))
               if not _importable(module)]
    if missing:
        raise Int8Error(f"int8 TFLite export and measurement need {', '.join(missing)}: {MCU_INSTALL}")


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@contextlib.contextmanager
def _quiet_fds() -> Iterator[Path]:
    """Send what C++ code writes to stdout/stderr (TFLM's allocator, TensorFlow's logs) to a file; yield its path."""
    with tempfile.NamedTemporaryFile("w+b", suffix=".log", delete=False) as sink:
        path = Path(sink.name)
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "wb") as target:
            os.dup2(target.fileno(), 1)
            os.dup2(target.fileno(), 2)
            try:
                yield path
            finally:
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(Exception):
                        stream.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


def _standalone_norms_as_convs(model: nn.Module) -> nn.Module:
    """A copy of the eval-mode ``model``, its shared blocks untied, whose BatchNorm2d layers that do not directly follow a conv (``cab``: BN
    after the activation; ``bac``: before the conv) are 1x1 depthwise convs computing the same affine map.

    The converter folds a BN into the conv it follows; a standalone one it turns into float operators
    (DEQUANTIZE, SUB, MUL, MUL, ADD, QUANTIZE: 4-byte tensors) once its statistics are not the identity's, i.e.
    in every trained model. A depthwise conv is quantized like any other, so the model stays int8."""
    import copy

    from blocks.library import Repeated

    model = copy.deepcopy(model).cpu().eval()
    for repeated in [m for m in model.modules() if isinstance(m, Repeated)]:
        # untied: with one weight tensor feeding several convs the quantizer leaves all but one in float (measured);
        # each application's own copy is what the file stores anyway, its statistics folded in
        repeated.applications = nn.ModuleList([copy.deepcopy(a) for a in repeated.applications])
    for parent in model.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        previous = None
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm2d) and not isinstance(previous, nn.Conv2d):
                scale = child.weight.detach() / torch.sqrt(child.running_var + child.eps)
                conv = nn.Conv2d(child.num_features, child.num_features, 1, groups=child.num_features, bias=True)
                with torch.no_grad():
                    conv.weight.copy_(scale.view(-1, 1, 1, 1))
                    conv.bias.copy_(child.bias.detach() - child.running_mean * scale)
                setattr(parent, name, conv.eval())
                child = conv
            previous = child
    return model


def export_int8(model: nn.Module, genome: Genome, calibration: torch.Tensor) -> Int8Model:
    """Post-training int8 quantization of ``model`` calibrated on ``calibration`` (normalised NCHW float images,
    a few hundred training images), converted to a TFLite flatbuffer with NHWC int8 input and int8 scores."""
    require_mcu()
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _quiet_fds(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import litert_torch
        from litert_torch.quantize import pt2e_quantizer
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e import quantize_pt2e

        spec = genome.input
        example = (torch.zeros(1, spec.height, spec.width, spec.channels),)
        wrapped = litert_torch.to_channel_last_io(_standalone_norms_as_convs(model), args=[0]).eval()
        quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
            pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
        try:
            graph = torch.export.export(wrapped, example).module()
            graph = quantize_pt2e.prepare_pt2e(graph, quantizer)
            with torch.no_grad():
                for image in calibration.detach().cpu().permute(0, 2, 3, 1).contiguous():
                    graph(image.unsqueeze(0))
            graph = quantize_pt2e.convert_pt2e(graph, fold_quantize=False)
            edge = litert_torch.convert(graph, example, quant_config=QuantConfig(pt2e_quantizer=quantizer))
            with tempfile.TemporaryDirectory() as tmp:
                edge.export(str(Path(tmp) / "model.tflite"))
                flatbuffer = _stripped((Path(tmp) / "model.tflite").read_bytes())
        except Exception as e:
            raise Int8Error(f"genome {genome.hash}: int8 conversion failed ({type(e).__name__}: "
                            f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
    return _with_quantization(flatbuffer)


def _stripped(flatbuffer: bytes) -> bytes:
    """The flatbuffer without the strings TFLM never reads (tensor and subgraph names, description, signatures).
    litert-torch names every tensor by its full module path: half the file of a small model (20,968 -> 10,160
    bytes for a 1,888-param net, measured), and a size no estimate from the design's shape can follow."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    flatbuffer_utils.strip_strings(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _with_quantization(flatbuffer: bytes) -> Int8Model:
    interpreter = _tflm(flatbuffer, 1 << 22)
    given, returned = interpreter.get_input_details(0), interpreter.get_output_details(0)
    dtypes = [np.dtype(d["dtype"]).name for d in (given, returned)]
    if any(d not in ("int8", "float32") for d in dtypes):
        raise Int8Error(f"the converted model's input/output are {dtypes[0]}/{dtypes[1]}, not int8 or float32")
    q_in, q_out = given["quantization_parameters"], returned["quantization_parameters"]
    first = lambda q, key, cast: cast(q[key][0]) if len(q[key]) else cast(0)  # noqa: E731  (float ends: none)
    return Int8Model(flatbuffer, first(q_in, "scales", float), first(q_in, "zero_points", int),
                     first(q_out, "scales", float), first(q_out, "zero_points", int), dtypes[0], dtypes[1])


def _tflm(flatbuffer: bytes, arena_size: int):
    from tflite_micro.python.tflite_micro import runtime

    with _quiet_fds():
        return runtime.Interpreter.from_bytes(flatbuffer, arena_size=arena_size)


_ARENA = re.compile(rb"Arena allocation (total|head|tail) (\d+) bytes")


def arena_breakdown(flatbuffer: bytes, limit: int = 1 << 22) -> dict[str, int]:
    """TFLM's recording allocator: ``total`` arena bytes, ``head`` (the planned activation tensors and scratch)
    and ``tail`` (persistent: tensor structs, quantization data, kernels' buffers)."""
    interpreter = _tflm(flatbuffer, limit)
    with _quiet_fds() as log:
        interpreter.print_allocations()
    found = {name.decode(): int(value) for name, value in _ARENA.findall(Path(log).read_bytes())}
    Path(log).unlink(missing_ok=True)
    if "total" not in found:
        raise Int8Error("TFLM did not report its arena allocation")
    return found


def _runs_in(flatbuffer: bytes, size: int) -> bool:
    """Whether the model allocates and runs in ``size`` bytes of arena. Tried in a forked child: with some arenas
    just too small TFLM crashes the process (a segmentation fault) instead of reporting the failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # JAX (imported by litert-torch) warns of any fork
        pid = os.fork()
    if pid == 0:  # the child: only TFLM runs here, then it leaves without Python's cleanup
        code = 0 if _runs_here(flatbuffer, size) else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _runs_here(flatbuffer: bytes, size: int) -> bool:
    try:
        interpreter = _tflm(flatbuffer, size)
        given = interpreter.get_input_details(0)
        interpreter.set_input(np.zeros(tuple(given["shape"]), given["dtype"]), 0)
        with _quiet_fds():
            interpreter.invoke()
        return True
    except Exception:
        return False


def arena_bytes(flatbuffer: bytes, limit: int = 1 << 24) -> int:
    """The smallest tensor arena in which TFLM allocates and runs this model, found by bisection. (The recording
    allocator's total, ``arena_breakdown``, leaves out what initialisation needs for a while: a 772-param model
    reported 3,488 bytes and needed 4,672.)"""
    high = max(arena_breakdown(flatbuffer, limit)["total"], 256)
    while not _runs_in(flatbuffer, high):
        if high >= limit:
            raise Int8Error(f"TFLM cannot run the model in {limit:,} bytes of arena")
        high = min(2 * high, limit)
    low = 0  # does not run
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if _runs_in(flatbuffer, middle) else (middle, high)
    return high


def operators(flatbuffer: bytes) -> list[str]:
    """The flatbuffer's operators in order, by their TFLite names (CONV_2D, MUL, ...)."""
    from tflite_micro.python.tflite_micro import runtime
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = runtime.convert_bytearray_to_object(bytearray(flatbuffer))
    codes = [runtime.get_builtin_code_from_operator_code(c) for c in model.operatorCodes]
    return [names.get(codes[op.opcodeIndex], str(codes[op.opcodeIndex])) for op in model.subgraphs[0].operators]


def measure_tflm(model: Int8Model, normalised: torch.Tensor, labels: torch.Tensor,
                 batch: int = 1024) -> TflmMeasurement:
    """Run every image of ``normalised`` (NCHW float) through TFLM, one at a time as on the device."""
    interpreter = _tflm(model.flatbuffer, 1 << 22)
    correct = 0
    truth = labels.detach().cpu().numpy()
    with _quiet_fds():
        for start in range(0, len(truth), batch):
            images = model.quantize(normalised[start:start + batch])
            for offset, image in enumerate(images):
                interpreter.set_input(image[None], 0)
                interpreter.invoke()
                correct += int(np.argmax(interpreter.get_output(0)[0]) == truth[start + offset])
    accuracy = 100.0 * correct / max(len(truth), 1)
    return TflmMeasurement(accuracy, arena_bytes(model.flatbuffer), model.tflite_bytes)


def normalised(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Float NCHW ``(pixels / 255 - mean) / std`` of uint8 images, on the CPU."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (images.detach().cpu().float() / 255.0 - m) / s
