"""The user's own images: an ImageFolder-style folder or a ``.npz`` file, read once into uint8 tensors and checked.

    DIR/train/<class>/*.png|jpg|jpeg|bmp|gif|webp   (and optionally DIR/test/<class>/...)
    data.npz with x_train, y_train (and optionally x_test, y_test, class_names)

Every problem is found before anything trains and named in one ``DataError`` line: the file or folder, what is
wrong, what to do. Images are decoded by torchvision and resized once, here (``image_size``), never per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from blocks.genome import InputSpec
from training.data import DATASETS, DataError

__all__ = ["IMAGE_SUFFIXES", "UserData", "is_user_dataset", "load_user_data", "stratified_split"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_MEMORY_SHARE = 0.5  # refuse data whose uint8 tensors would take more than this share of the available memory


@dataclass
class UserData:
    """uint8 images (N, C, H, W), int64 labels; ``test_x`` None when the data has no test split."""

    spec: InputSpec
    classes: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    layout: str  # how the data was read, for the plan line


def is_user_dataset(name: str) -> bool:
    """True when ``--dataset`` names a path (a folder or a .npz file) rather than a built-in dataset, which wins."""
    return name not in DATASETS and (name.endswith(".npz") or "/" in name or Path(name).exists())


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise DataError(f"--image-size {text!r}: expected HxW, e.g. 32x32")
    return int(parts[0]), int(parts[1])


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    from torchvision.transforms.v2.functional import resize

    if tuple(x.shape[-2:]) == size:
        return x
    return resize(x, list(size), antialias=True)


def _check_memory(path: Path, need: int, what: str) -> None:
    """Refuse data that would not fit: ``need`` bytes against the free memory."""
    from training.parallel import available_memory_gib

    available = available_memory_gib()
    if available is not None and need > _MEMORY_SHARE * available * 2 ** 30:
        raise DataError(f"{path}: {what} take {need / 2 ** 30:.1f} GiB, more than half of the {available:.1f} GiB of "
                        "free memory; use fewer images, or --image-size to shrink them")


def _labels(y, path: Path, key: str, n: int) -> torch.Tensor:
    import numpy as np

    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{path}: {key} must be one label per image (shape (N,)), got shape {y.shape}")
    if len(y) != n:
        raise DataError(f"{path}: {key} has {len(y):,} labels for {n:,} images")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            bad = int(np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))[0])
            raise DataError(f"{path}: {key}[{bad}] = {y[bad]!r} is not an integer class label")
    elif y.dtype.kind not in "iu":
        raise DataError(f"{path}: {key} must hold integer class labels, got dtype {y.dtype}")
    labels = torch.as_tensor(y.astype(np.int64))
    if len(labels) and labels.min() < 0:
        bad = int((labels < 0).nonzero()[0])
        raise DataError(f"{path}: {key}[{bad}] = {int(labels[bad])} is negative; labels are 0..classes-1")
    return labels


def _images(x, path: Path, key: str) -> tuple[torch.Tensor, str]:
    """(uint8 NCHW tensor, the layout found) of an array of images."""
    import numpy as np

    x = np.asarray(x)
    if x.ndim == 3:
        x, layout = x[:, None], "N,H,W (one channel)"
    elif x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3):
        x, layout = x.transpose(0, 3, 1, 2), f"N,H,W,C with {x.shape[-1]} channel(s)"
    elif x.ndim == 4 and x.shape[1] in (1, 3, 4):
        layout = f"N,C,H,W with {x.shape[1]} channel(s)"
    else:
        raise DataError(f"{path}: {key} has shape {x.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W) with "
                        "1, 3 or 4 channels")
    if x.dtype.kind == "f":
        if not np.isfinite(x).all():
            bad = int(np.flatnonzero(~np.isfinite(x).reshape(len(x), -1).all(axis=1))[0])
            raise DataError(f"{path}: {key}[{bad}] holds NaN or inf")
        high = float(x.max()) if x.size else 0.0
        if float(x.min() if x.size else 0.0) < 0 or high > 255:
            raise DataError(f"{path}: {key} holds floats outside [0, 255] (min {float(x.min()):g}, max {high:g}); "
                            "give pixels in [0, 1] or [0, 255]")
        scale = 255.0 if high <= 1.0 else 1.0
        x = np.rint(x * scale).astype(np.uint8)
        layout += f", float {'[0, 1]' if scale == 255.0 else '[0, 255]'} -> uint8"
    elif x.dtype != np.uint8:
        if x.dtype.kind not in "iu" or (x.size and (x.min() < 0 or x.max() > 255)):
            raise DataError(f"{path}: {key} must be uint8 pixels or floats, got dtype {x.dtype}")
        x = x.astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(x)), layout


def _load_npz(path: Path, size: tuple[int, int] | None) -> UserData:
    import numpy as np

    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            _check_memory(path, sum(info.file_size for info in archive.infolist()), "its arrays")
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})".splitlines()[0]) from None
    missing = [key for key in ("x_train", "y_train") if key not in arrays]
    if missing:
        raise DataError(f"{path}: no {' or '.join(missing)} in it (found: {', '.join(arrays) or 'nothing'})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: x_test and y_test come together; it has only one of them")
    train_x, layout = _images(arrays["x_train"], path, "x_train")
    train_y = _labels(arrays["y_train"], path, "y_train", len(train_x))
    test_x = test_y = None
    if "x_test" in arrays:
        test_x, test_layout = _images(arrays["x_test"], path, "x_test")
        test_y = _labels(arrays["y_test"], path, "y_test", len(test_x))
        if test_x.shape[1:] != train_x.shape[1:] and size is None:
            raise DataError(f"{path}: x_test images are {tuple(test_x.shape[1:])}, x_train's "
                            f"{tuple(train_x.shape[1:])}; give --image-size HxW to resize both")
    classes_count = int(train_y.max()) + 1 if len(train_y) else 0
    names = [str(c) for c in arrays["class_names"].tolist()] if "class_names" in arrays else None
    if names is not None and len(names) < classes_count:
        raise DataError(f"{path}: class_names has {len(names)} names for labels up to {classes_count - 1}")
    classes = names or [str(i) for i in range(classes_count)]
    return _finish(path, train_x, train_y, test_x, test_y, classes, layout, size)


def _class_folders(split: Path) -> list[Path]:
    folders = sorted(p for p in split.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{split}: no class folders in it; expected {split}/<class>/<image files>")
    return folders


def _read_folder(split: Path, classes: list[str], size: tuple[int, int] | None
                 ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Images of ``split/<class>/`` as uint8 (N, C, H, W) in one size; labels by ``classes``; the channels found."""
    from torchvision.io import ImageReadMode, decode_image

    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        folder = split / name
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        if not found:
            raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this class folder")
        files += [(p, label) for p in found]
    images = []
    for i, (path, _) in enumerate(files):
        try:
            images.append(decode_image(str(path), mode=ImageReadMode.UNCHANGED))
        except Exception as e:
            raise DataError(f"{path}: cannot decode this image ({type(e).__name__}: {e})".splitlines()[0][:300]) from None
        if i == 0:
            c, h, w = images[0].shape
            _check_memory(split, len(files) * max(c, 3) * (size[0] * size[1] if size else h * w), f"{len(files):,} images")
    channels = 3 if any(img.shape[0] >= 3 for img in images) else 1
    out = []
    first = tuple(images[0].shape[-2:])
    for (path, _), img in zip(files, images):
        if img.shape[0] in (2, 4):  # drop the alpha channel
            img = img[:-1]
        if img.shape[0] != channels:
            img = img.expand(channels, *img.shape[1:])
        if size is None and tuple(img.shape[-2:]) != first:
            raise DataError(f"{path}: {img.shape[-2]}x{img.shape[-1]} pixels, but {files[0][0]} is "
                            f"{first[0]}x{first[1]}; give --image-size HxW to resize every image once at load")
        out.append(_resize(img, size) if size else img)
    return torch.stack(out).contiguous(), torch.tensor([label for _, label in files], dtype=torch.int64), channels


def _load_folder(root: Path, size: tuple[int, int] | None) -> UserData:
    train = root / "train"
    if not train.is_dir():
        raise DataError(f"{root}: no train/ folder; expected {root}/train/<class>/<image files> "
                        "(and optionally test/<class>/...)")
    classes = [p.name for p in _class_folders(train)]
    train_x, train_y, channels = _read_folder(train, classes, size)
    test_x = test_y = None
    test = root / "test"
    if test.is_dir():
        extra = sorted(set(p.name for p in _class_folders(test)) - set(classes))
        if extra:
            raise DataError(f"{test}: class folder(s) {', '.join(extra)} are not in {train}")
        present = [c for c in classes if (test / c).is_dir()]
        test_x, test_y, test_channels = _read_folder(test, present, size)
        test_y = torch.tensor([classes.index(present[i]) for i in test_y.tolist()], dtype=torch.int64)
        if test_channels != channels:
            test_x = test_x.expand(-1, max(channels, test_channels), -1, -1).contiguous()
            if test_channels > channels:
                train_x, channels = train_x.expand(-1, test_channels, -1, -1).contiguous(), test_channels
        if test_x.shape[-2:] != train_x.shape[-2:]:
            raise DataError(f"{test}: images are {tuple(test_x.shape[-2:])}, the training images "
                            f"{tuple(train_x.shape[-2:])}; give --image-size HxW")
    layout = f"image folder, {channels} channel(s)"
    return _finish(root, train_x, train_y, test_x, test_y, classes, layout, size)


def stratified_split(labels: torch.Tensor, share: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, carved) indices: ``share`` of every class carved out (at least one image of a class with two or more),
    by a fixed random order."""
    gen = torch.Generator().manual_seed(seed)
    kept, carved = [], []
    for c in torch.unique(labels).tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        take = min(max(1, round(len(idx) * share)), len(idx) - 1) if len(idx) > 1 else 0
        carved.append(idx[:take])
        kept.append(idx[take:])
    return torch.cat(kept).sort().values, torch.cat(carved).sort().values


TEST_SHARE = 0.2  # carved from the training images when the data has no test split


def _finish(path: Path, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor | None,
            test_y: torch.Tensor | None, classes: list[str], layout: str, size: tuple[int, int] | None) -> UserData:
    if size is not None:
        train_x = _resize(train_x, size)
        test_x = _resize(test_x, size) if test_x is not None else None
        layout += f", resized to {size[0]}x{size[1]}"
    if len(train_y) == 0:
        raise DataError(f"{path}: no training images")
    present = torch.unique(train_y)
    if len(present) < 2:
        raise DataError(f"{path}: every training image has label {classes[int(present[0])] if classes else 0}; "
                        "a classifier needs at least two classes")
    if test_y is not None and len(test_y) and int(test_y.max()) >= len(classes):
        bad = int((test_y >= len(classes)).nonzero()[0])
        raise DataError(f"{path}: test label {int(test_y[bad])} at index {bad} is not a training class "
                        f"(0..{len(classes) - 1})")
    if train_x.shape[1] == 4:  # RGBA arrays: the alpha channel carries no class information here
        train_x = train_x[:, :3].contiguous()
        test_x = test_x[:, :3].contiguous() if test_x is not None else None
    if test_x is None:
        kept, carved = stratified_split(train_y, TEST_SHARE)
        test_x, test_y = train_x[carved], train_y[carved]
        train_x, train_y = train_x[kept], train_y[kept]
        layout += f"; no test split: {len(carved):,} images ({TEST_SHARE:.0%} of each class) held out as the test set"
    _, c, h, w = train_x.shape
    return UserData(InputSpec(c, h, w, len(classes)), classes, train_x.contiguous(), train_y, test_x.contiguous(),
                    test_y, layout)


def load_user_data(path: str | Path, image_size: str | None = None) -> UserData:
    """Read and check a dataset folder or ``.npz`` file (module doc); raises ``DataError`` naming what is wrong."""
    path = Path(path)
    size = _size(image_size)
    if not path.exists():
        raise DataError(f"--dataset {path}: no such file or folder")
    try:
        if path.is_dir():
            return _load_folder(path, size)
        if path.suffix.lower() != ".npz":
            raise DataError(f"--dataset {path}: expected a folder (train/<class>/...) or a .npz file")
        return _load_npz(path, size)
    except PermissionError as e:
        raise DataError(f"cannot read {e.filename or path}: permission denied") from None
