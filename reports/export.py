"""Exports of a trained genome: checkpoint, ``torch.export`` program (``model.pt2``), ONNX, and a standalone
``model.py``."""

from __future__ import annotations

import inspect
import io
import json
import platform
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from blocks import BudgetNASError, Genome, GenomeError, build_model
from blocks.library import Repeated, Residual
from reports.runfiles import atomic_write

__all__ = ["CheckpointError", "ExportError", "export_onnx", "export_program", "load_checkpoint", "non_finite_parameters",
           "require_onnx", "save_checkpoint", "standalone_source"]


class CheckpointError(BudgetNASError):
    """A checkpoint that cannot be used here (unreadable, or trained for another genome)."""


def _versions() -> dict[str, str]:
    import optuna
    import torchvision

    return {"python": platform.python_version(), "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__), "optuna": str(optuna.__version__)}


def save_checkpoint(path: Path, model: nn.Module, genome: Genome, config: dict, seed: int, metrics: list) -> None:
    """state_dict + genome + training config + seed + library versions; loadable with ``weights_only=True``.
    Written all or nothing (``reports.runfiles.atomic_write``): a full disk leaves no truncated file."""
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "genome": genome.to_string(), "genome_hash": genome.hash,
                "train_config": config, "seed": seed, "versions": _versions(), "metrics": metrics}, buffer)
    atomic_write(path, buffer.getvalue())


def load_checkpoint(path: str | Path, genome: Genome | None = None) -> tuple[nn.Module, dict]:
    """The model rebuilt from a checkpoint (its own genome, or ``genome`` which must match)."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no such checkpoint: {path}") from None
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(data, dict) or "state_dict" not in data or "genome" not in data:
        raise CheckpointError(f"{path}: not a BudgetNAS checkpoint (needs 'state_dict' and 'genome')")
    if not isinstance(data["state_dict"], dict) or not isinstance(data["genome"], str):
        raise CheckpointError(f"{path}: 'state_dict' must be a dict of tensors and 'genome' a compact string")
    try:
        saved = Genome.from_string(data["genome"])
    except GenomeError as e:
        raise CheckpointError(f"{path}: its genome is malformed ({e})") from None
    if genome is not None and genome != saved:
        raise CheckpointError(f"{path} was trained for genome {saved.hash} ({saved.to_string()}), "
                              f"not {genome.hash} ({genome.to_string()})")
    model = build_model(saved)
    try:
        model.load_state_dict(data["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()
        reason = first[1].strip() if len(first) > 1 else (first[0] if first else type(e).__name__)
        raise CheckpointError(f"{path}: its weights do not fit genome {saved.hash} ({reason})") from None
    return model, data


def non_finite_parameters(model: nn.Module) -> list[str]:
    """Names of parameters or buffers holding NaN or inf (a diverged or corrupted checkpoint)."""
    return [name for name, t in [*model.named_parameters(), *model.named_buffers()]
            if t.is_floating_point() and not torch.isfinite(t).all()]


def export_program(model: nn.Module, genome: Genome, path: Path) -> None:
    """``model.pt2``: the eval-mode model as a ``torch.export`` ExportedProgram with a dynamic batch
    (load with ``torch.export.load(path).module()``; input: normalised NCHW float images)."""
    import warnings

    spec = genome.input
    example = (torch.zeros(2, spec.channels, spec.height, spec.width),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model.cpu().eval(), example, dynamic_shapes=({0: torch.export.Dim("batch")},))
    buffer = io.BytesIO()  # torch.export.save's own file writer aborts the process on a full disk
    torch.export.save(program, buffer)
    atomic_write(path, buffer.getvalue())


_RESIDUAL_SOURCE = '''

class Residual(nn.Module):
    """post(main(x) + shortcut(x))"""

    def __init__(self, main, shortcut, post):
        super().__init__()
        self.main, self.shortcut, self.post = main, shortcut, post

    def forward(self, x):
        return self.post(self.main(x) + self.shortcut(x))
'''


def _code(module: nn.Module, indent: int) -> str:
    pad = " " * indent
    if isinstance(module, Repeated):
        parts = [_code(m, indent + 4) for m in module.applications]
        return "Repeated([\n" + ",\n".join(pad + "    " + p for p in parts) + f",\n{pad}])"
    if isinstance(module, Residual):
        parts = [_code(m, indent + 4) for m in (module.main, module.shortcut, module.post)]
        return "Residual(\n" + ",\n".join(pad + "    " + p for p in parts) + f",\n{pad})"
    if isinstance(module, nn.Sequential):
        if not len(module):
            return "nn.Sequential()"
        parts = [_code(m, indent + 4) for m in module]
        return "nn.Sequential(\n" + ",\n".join(pad + "    " + p for p in parts) + f",\n{pad})"
    if list(module.children()):
        raise ValueError(f"cannot write source for composite module {type(module).__name__}")
    return _constructor(module)


def _pair(value: Any) -> Any:
    return value[0] if isinstance(value, tuple) and len(set(value)) == 1 else value


def _constructor(m: nn.Module) -> str:
    """An explicit constructor call, with only arguments that every supported torch (>= 2.3) accepts."""
    name = type(m).__name__
    if isinstance(m, nn.Conv2d):
        return (f"nn.Conv2d({m.in_channels}, {m.out_channels}, {_pair(m.kernel_size)}, stride={_pair(m.stride)}, "
                f"padding={_pair(m.padding)}, dilation={_pair(m.dilation)}, groups={m.groups}, "
                f"bias={m.bias is not None})")
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return f"nn.{name}({m.num_features}, eps={m.eps}, momentum={m.momentum})"
    if isinstance(m, nn.Linear):
        return f"nn.Linear({m.in_features}, {m.out_features}, bias={m.bias is not None})"
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        return f"nn.{name}({_pair(m.kernel_size)}, stride={_pair(m.stride)}, padding={_pair(m.padding)})"
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return f"nn.AdaptiveAvgPool2d({_pair(m.output_size)})"
    if isinstance(m, nn.Dropout):
        return f"nn.Dropout({m.p})"
    if isinstance(m, nn.LogSoftmax):
        return f"nn.LogSoftmax(dim={m.dim})"
    if isinstance(m, nn.PReLU):
        return f"nn.PReLU(num_parameters={m.num_parameters})"
    if isinstance(m, (nn.Flatten, nn.Identity, *_DEFAULT_ACTIVATIONS)):
        return f"nn.{name}()"  # built with default arguments
    raise ValueError(f"no standalone source for module {name}")


_DEFAULT_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU, nn.Hardswish, nn.Tanh, nn.Sigmoid)


def _class_names(genome: Genome, classes: Sequence[str] | None) -> list[str]:
    return [str(c) for c in classes] if classes is not None else [str(i) for i in range(genome.input.classes)]


def standalone_source(genome: Genome, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                      classes: Sequence[str] | None = None) -> str:
    """Plain-PyTorch source of the genome's model; its state_dict keys match ``build_model(genome)``.

    ``mean`` / ``std``: the per-channel normalisation the model was trained with (in [0, 1] pixel units),
    written as ``MEAN`` / ``STD`` with a ``preprocess()`` that takes raw 0-255 pixels. ``classes``: the class
    names by score index (``CLASSES``; default "0", "1", ...).
    """
    model = build_model(genome)
    uses_residual = any(isinstance(m, Residual) for m in model.modules())
    repeated_source = ("\n\n" + inspect.getsource(Repeated)) if any(isinstance(m, Repeated) for m in model.modules()) \
        else ""
    spec = genome.input
    body = _code(nn.Sequential(*model), 4)
    mean = tuple(float(v) for v in mean) if mean is not None else (0.0,) * spec.channels
    std = tuple(float(v) for v in std) if std is not None else (1.0,) * spec.channels
    return f'''"""Standalone model generated by BudgetNAS (plain PyTorch, no dependency on BudgetNAS).

genome: {genome.to_string()}
input:  (N, {spec.channels}, {spec.height}, {spec.width}) images normalised with MEAN / STD -> (N, {spec.classes}) class scores

    model = build().eval()
    model.load_state_dict(torch.load("checkpoint_seed0.pt", weights_only=True)["state_dict"])
    scores = model(preprocess(raw_pixels))  # raw_pixels: uint8 or float in 0..255, (N, {spec.channels}, {spec.height}, {spec.width})
"""

import torch
from torch import nn

MEAN = {mean!r}  # per channel, of the training images scaled to [0, 1]
STD = {std!r}
CLASSES = {_class_names(genome, classes)!r}  # the class name of each score, by index
{_RESIDUAL_SOURCE if uses_residual else ""}{repeated_source}

def preprocess(pixels: torch.Tensor) -> torch.Tensor:
    """Raw 0-255 pixels (N, C, H, W), any dtype -> the normalised float input the model was trained on."""
    x = pixels.float() / 255.0
    mean = torch.tensor(MEAN, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(STD, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def build() -> nn.Sequential:
    return {body}


if __name__ == "__main__":
    model = build()
    print(model)
    print("params:", sum(p.numel() for p in model.parameters()))
    print(model(preprocess(torch.zeros(2, {spec.channels}, {spec.height}, {spec.width}))).shape)
'''


class ExportError(BudgetNASError):
    """An export that cannot be written here (e.g. the optional ONNX packages are missing)."""


def require_onnx() -> None:
    """Raise ``ExportError`` naming what to install when the ONNX export's packages are missing (checked before
    anything trains)."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError:
        raise ExportError("ONNX export needs the optional packages: pip install -e '.[onnx]' "
                          "(onnx, onnxscript, onnxruntime)") from None


def export_onnx(model: nn.Module, genome: Genome, path: Path, mean: Sequence[float], std: Sequence[float],
                classes: Sequence[str] | None = None, seed: int | None = None) -> None:
    """``model.onnx``: input ``images`` (normalised, dynamic batch), output ``scores``; the normalisation,
    the genome, the input name, the class names (``classes``, a JSON list) and the training ``seed`` of these weights
    go in the ONNX metadata.
    Needs ``pip install -e '.[onnx]'``."""
    require_onnx()
    import warnings

    import onnx

    spec = genome.input
    model = model.cpu().eval()
    example = torch.zeros(2, spec.channels, spec.height, spec.width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), input_names=["images"], output_names=["scores"],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, verbose=False)
    proto = program.model_proto
    for key, value in (("input", "images"), ("normalize_mean", ",".join(f"{v:.6f}" for v in mean)),
                       ("normalize_std", ",".join(f"{v:.6f}" for v in std)), ("pixel_scale", "1/255"),
                       ("genome", genome.to_string()), ("classes", json.dumps(_class_names(genome, classes))),
                       *((("seed", str(seed)),) if seed is not None else ()), ("producer", "BudgetNAS")):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    atomic_write(path, proto.SerializeToString())
