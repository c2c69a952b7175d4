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

__all__ = ["MCU_INSTALL", "Int8Error", "Int8Model", "TflmMeasurement", "arena_bytes", "export_int8", "measure_tflm", "normalised",
           "require_mcu"]

MCU_INSTALL = "pip install -e '.[mcu]' (litert-torch, tflite-micro)"
CALIBRATION_IMAGES = 256


class Int8Error(BudgetNASError):
    """A model that cannot be made into an int8 TFLite file here (packages missing, or a conversion failure)."""


@dataclass(frozen=True)
class Int8Model:
    """An int8 ``.tflite`` flatbuffer and the quantization of its input and output."""

    flatbuffer: bytes
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int

    @property
    def tflite_bytes(self) -> int:
        return len(self.flatbuffer)

    def quantize(self, normalised: torch.Tensor) -> np.ndarray:
        """int8 NHWC input of a normalised NCHW float batch."""
        x = normalised.detach().cpu().permute(0, 2, 3, 1).numpy()
        return np.clip(np.round(x / self.input_scale) + self.input_zero_point, -128, 127).astype(np.int8)

    def input_description(self) -> dict:
        return {"layout": "NHWC", "dtype": "int8", "scale": self.input_scale, "zero_point": self.input_zero_point,
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
        wrapped = litert_torch.to_channel_last_io(model.cpu().eval(), args=[0]).eval()
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
                flatbuffer = (Path(tmp) / "model.tflite").read_bytes()
        except Exception as e:
            raise Int8Error(f"genome {genome.hash}: int8 conversion failed ({type(e).__name__}: "
                            f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
    return _with_quantization(flatbuffer)


def _with_quantization(flatbuffer: bytes) -> Int8Model:
    interpreter = _tflm(flatbuffer, 1 << 22)
    given, returned = interpreter.get_input_details(0), interpreter.get_output_details(0)
    if given["dtype"] != np.int8 or returned["dtype"] != np.int8:
        raise Int8Error(f"the converted model's input/output are {given['dtype'].__name__}/"
                        f"{returned['dtype'].__name__}, not int8")
    q_in, q_out = given["quantization_parameters"], returned["quantization_parameters"]
    return Int8Model(flatbuffer, float(q_in["scales"][0]), int(q_in["zero_points"][0]),
                     float(q_out["scales"][0]), int(q_out["zero_points"][0]))


def _tflm(flatbuffer: bytes, arena_size: int):
    from tflite_micro.python.tflite_micro import runtime

    with _quiet_fds():
        return runtime.Interpreter.from_bytes(flatbuffer, arena_size=arena_size)


_ARENA_TOTAL = re.compile(rb"Arena allocation total (\d+) bytes")


def arena_bytes(flatbuffer: bytes, limit: int = 1 << 22) -> int:
    """The tensor arena TFLM allocates for this model (recording allocator), checked by running it in exactly
    that many bytes."""
    interpreter = _tflm(flatbuffer, limit)
    with _quiet_fds() as log:
        interpreter.print_allocations()
    found = _ARENA_TOTAL.search(Path(log).read_bytes())
    Path(log).unlink(missing_ok=True)
    if not found:
        raise Int8Error("TFLM did not report its arena allocation")
    needed = int(found.group(1))
    try:
        tight = _tflm(flatbuffer, needed)
        given = tight.get_input_details(0)
        tight.set_input(np.zeros(tuple(given["shape"]), np.int8), 0)
        with _quiet_fds():
            tight.invoke()
    except Exception as e:
        raise Int8Error(f"TFLM reported a {needed:,}-byte arena but the model does not run in it ({e})") from None
    return needed


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
