"""Datasets loaded once into uint8 tensors on the training device, with a fixed validation split."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from blocks.genome import BudgetNASError, Genome, InputSpec

__all__ = ["DATASETS", "DataError", "Splits", "load_splits", "check_genome_fits"]


class DataError(BudgetNASError):
    """Unusable data (unknown dataset, missing or corrupt files): one readable line."""


@dataclass(frozen=True)
class _DatasetInfo:
    torchvision_name: str
    folder: str  # where torchvision keeps the files under the data dir
    files: tuple[str, ...]
    spec: InputSpec
    train_images: int  # size of the official training set (before the validation split)
    test_images: int


_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DATASETS: dict[str, _DatasetInfo] = {
    "mnist": _DatasetInfo("MNIST", "MNIST/raw", _IDX_FILES, InputSpec(1, 28, 28, 10), 60000, 10000),
    "fashion-mnist": _DatasetInfo("FashionMNIST", "FashionMNIST/raw", _IDX_FILES, InputSpec(1, 28, 28, 10), 60000,
                                  10000),
    "cifar10": _DatasetInfo("CIFAR10", "cifar-10-batches-py",
                            tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",), InputSpec(3, 32, 32, 10),
                            50000, 10000),
}


@dataclass
class Splits:
    """uint8 images (N, C, H, W) and int64 labels on one device; ``val_*`` carved from the training set."""

    name: str
    spec: InputSpec
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...]  # per channel, of the training split, in [0, 1] units
    std: tuple[float, ...]
    classes: list[str] | None = None  # class names by label (the user's folder names); None: "0", "1", ...
    layout: str = ""  # how the user's data was read, for the plan line ("" for the built-in datasets)
    user_data: bool = False  # the user's own images (``training.userdata``), not a built-in dataset
    warnings: list[str] = field(default_factory=list)  # about the user's data, for the plan (empty classes)

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    def subset(self, n_train: int | None, seed: int = 0) -> "Splits":
        """The same splits with at most ``n_train`` training images (a fixed random subset)."""
        if n_train is None or n_train >= len(self.train_y):
            return self
        gen = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(self.train_y), generator=gen)[:n_train].to(self.device)
        return replace(self, train_x=self.train_x[keep], train_y=self.train_y[keep])


def _read_idx(path: Path, is_images: bool) -> torch.Tensor:
    """An IDX file (MNIST's format) as uint8 images (N, 1, rows, cols) or int64 labels (N,), checked for size
    and magic so that a truncated download gives a readable error, not a crash. Read directly: importing
    torchvision for it costs more than a second in every worker."""
    raw = path.read_bytes()
    header = 16 if is_images else 8
    if len(raw) < header:
        raise DataError(f"corrupt data file {path}: {len(raw)} bytes is shorter than its header")
    magic, count = struct.unpack(">II", raw[:8])
    expected_magic = 2051 if is_images else 2049
    if magic != expected_magic:
        raise DataError(f"corrupt data file {path}: magic number {magic}, expected {expected_magic}")
    rows, cols = struct.unpack(">II", raw[8:16]) if is_images else (1, 1)
    expected = header + count * rows * cols
    if len(raw) != expected:
        raise DataError(f"corrupt data file {path}: {len(raw):,} bytes, expected {expected:,} "
                        f"for {count:,} {'images' if is_images else 'labels'}")
    body = raw[header:]
    values = torch.frombuffer(bytearray(body), dtype=torch.uint8) if body else torch.zeros(0, dtype=torch.uint8)
    return values.view(count, 1, rows, cols) if is_images else values.long()


def _idx_split(folder: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = _read_idx(folder / f"{prefix}-images-idx3-ubyte", is_images=True)
    labels = _read_idx(folder / f"{prefix}-labels-idx1-ubyte", is_images=False)
    if len(images) != len(labels):
        raise DataError(f"{folder / f'{prefix}-labels-idx1-ubyte'} has {len(labels):,} labels for "
                        f"{len(images):,} images in {prefix}-images-idx3-ubyte")
    return images, labels


def _torchvision_split(info: _DatasetInfo, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    import torchvision

    cls = getattr(torchvision.datasets, info.torchvision_name)
    ds = cls(str(root), train=train, download=False)
    x = torch.as_tensor(ds.data)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # (N, C, H, W)
    return x.contiguous(), torch.as_tensor(ds.targets, dtype=torch.int64)


USER_VAL_SHARE = 0.1  # of each class, the validation split of the user's own data (at most ``val_size`` images)


def load_splits(name: str = "mnist", data_dir: str | Path = "data", *, device: torch.device | str = "cpu",
                val_size: int = 5000, split_seed: int = 0, download: bool = True,
                image_size: str | None = None, channels: str = "auto") -> Splits:
    """Load ``name`` from ``data_dir`` (downloading when missing), carve the validation split, move to device.

    ``name`` may also be the path of the user's own data (``training.userdata``: an image folder or a .npz file;
    ``image_size`` "HxW" resizes it once, ``channels`` auto / gray / rgb); its validation split is a stratified ``USER_VAL_SHARE`` of each class,
    at most ``val_size`` images.
    """
    from training.userdata import is_user_dataset, load_user_data, stratified_split

    if is_user_dataset(name):
        user = load_user_data(name, image_size, channels)
        share = min(USER_VAL_SHARE, val_size / len(user.train_y)) if val_size else 0.0
        train_idx, val_idx = stratified_split(user.train_y, share, split_seed) if share else (
            torch.arange(len(user.train_y)), torch.zeros(0, dtype=torch.int64))
        return _splits(name, user.spec, user.train_x, user.train_y, user.test_x, user.test_y, train_idx, val_idx,
                       device, classes=user.classes, layout=user.layout, user_data=True, warnings=user.warnings)
    info = DATASETS.get(name)
    if info is None:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}, or the path of an image folder "
                        "or a .npz file")
    root = Path(data_dir)
    if root.exists() and not root.is_dir():
        raise DataError(f"data dir {root} is a file, not a directory")
    folder = root / info.folder
    missing = [f for f in info.files if not (folder / f).is_file()]
    try:
        if missing and download:
            _download(info, root)
        elif missing:
            raise DataError(f"{name} files missing: expected {', '.join(info.files)} in {folder}")
        if info.files == _IDX_FILES:
            (train_x, train_y), (test_x, test_y) = _idx_split(folder, "train"), _idx_split(folder, "t10k")
        else:
            train_x, train_y = _torchvision_split(info, root, train=True)
            test_x, test_y = _torchvision_split(info, root, train=False)
        for labels, split in ((train_y, "training"), (test_y, "test")):
            bad = (labels < 0) | (labels >= info.spec.classes)
            if bad.any():
                raise DataError(f"{name} {split} labels in {folder}: label {int(labels[bad][0])} at index "
                                f"{int(bad.nonzero()[0])} is outside 0..{info.spec.classes - 1}")
    except DataError:
        raise
    except PermissionError as e:
        raise DataError(f"cannot read data under {root}: {e}") from None
    except Exception as e:  # torchvision raises RuntimeError / pickle errors on unusable files
        raise DataError(f"cannot load {name} from {folder}: {type(e).__name__}: {e}".splitlines()[0]) from None

    if not 0 <= val_size < len(train_y):
        raise DataError(f"validation size {val_size} must be in [0, {len(train_y)})")
    order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(split_seed))
    return _splits(name, info.spec, train_x, train_y, test_x, test_y, order[val_size:], order[:val_size], device)


def _channel_moments(x: torch.Tensor, chunk_values: int = 1 << 21) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W) in [0, 1] units, a chunk of images at a time (a float
    copy of the whole set would take four times its memory)."""
    chunk = max(1, chunk_values // max(x[0].numel() if len(x) else 1, 1))
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros(x.shape[1], dtype=torch.float64)
    for a in range(0, len(x), chunk):
        part = x[a:a + chunk].double().div_(255)
        total += part.sum(dim=(0, 2, 3))
        squares += part.square().sum(dim=(0, 2, 3))
    count = max(x.numel() // max(x.shape[1], 1), 1)
    mean = total / count
    var = (squares - count * mean.square()) / max(count - 1, 1)
    std = var.clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(max(v, 1e-3) for v in std.tolist())  # a constant channel must not divide by 0


def _splits(name: str, spec: InputSpec, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
            test_y: torch.Tensor, train_idx: torch.Tensor, val_idx: torch.Tensor, device: torch.device | str,
            classes: list[str] | None = None, layout: str = "", user_data: bool = False,
            warnings: list[str] | None = None) -> Splits:
    """The splits on ``device``, normalised by the training split's per-channel mean and std."""
    train = train_x[train_idx]
    mean, std = _channel_moments(train)
    device = torch.device(device)
    return Splits(name, spec, train.to(device), train_y[train_idx].to(device),
                  train_x[val_idx].to(device), train_y[val_idx].to(device), test_x.to(device), test_y.to(device),
                  mean, std, classes or [str(i) for i in range(spec.classes)], layout, user_data, warnings or [])


def _download(info: _DatasetInfo, root: Path) -> None:
    import torchvision

    try:
        root.mkdir(parents=True, exist_ok=True)
        getattr(torchvision.datasets, info.torchvision_name)(str(root), train=True, download=True)
        getattr(torchvision.datasets, info.torchvision_name)(str(root), train=False, download=True)
    except Exception as e:
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        raise DataError(f"{info.torchvision_name} not found and the download failed ({reason}); "
                        f"put {', '.join(info.files)} in {root / info.folder}") from None


def check_genome_fits(genome: Genome, spec: InputSpec, dataset: str) -> None:
    """Raise DataError when the genome's input spec is not the dataset's."""
    g = genome.input
    if (g.channels, g.height, g.width, g.classes) != (spec.channels, spec.height, spec.width, spec.classes):
        raise DataError(f"genome input {g.channels}x{g.height}x{g.width} with {g.classes} classes does not match "
                        f"{dataset} ({spec.channels}x{spec.height}x{spec.width}, {spec.classes} classes)")
