"""The user's own images: an ImageFolder-style folder or a ``.npz`` file, read once into uint8 tensors and checked.

    DIR/train/<class>/*.png|jpg|jpeg|bmp|gif|webp   (and optionally DIR/test/<class>/...)
    data.npz with x_train, y_train (and optionally x_test, y_test, class_names)

Every problem is found before anything trains and named in one ``DataError`` line: the file or folder, what is
wrong, what to do. Images are decoded by PIL as a viewer shows them, in 8 bits (``decode_image_file``), and resized
once, here (``image_size``), never per epoch. The memory the loading needs at its peak is checked before it is taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from blocks.genome import InputSpec
from training.data import DATASETS, DataError

__all__ = ["CHANNELS", "IMAGE_SUFFIXES", "MAX_CLASSES", "UserData", "decode_image_file", "is_user_dataset", "load_user_data",
           "npz_peak_bytes", "stratified_split"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_MEMORY_SHARE = 0.5  # refuse data whose loading peak would take more than this share of the available memory


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
    warnings: list[str] = field(default_factory=list)  # what the plan says before it starts (empty classes)


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
    """Refuse data whose loading would not fit: ``need`` bytes (the loader's peak) against the free memory."""
    from training.parallel import available_memory_gib

    available = available_memory_gib()
    if available is not None and need > _MEMORY_SHARE * available * 2 ** 30:
        raise DataError(f"{path}: loading {what} takes {need / 2 ** 30:.1f} GiB at its peak, more than half of the "
                        f"{available:.1f} GiB of free memory; use fewer images, or --image-size to shrink them")


MAX_CLASSES = 10_000  # a label above this is a mistake in the file, not a class (its list of names alone is large)


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
    if len(y) and y.min() < 0:
        bad = int(np.flatnonzero(y < 0)[0])
        raise DataError(f"{path}: {key}[{bad}] = {int(y[bad])} is negative; labels are 0..classes-1")
    if len(y) and y.max() >= MAX_CLASSES:
        bad = int(np.flatnonzero(y >= MAX_CLASSES)[0])
        raise DataError(f"{path}: {key}[{bad}] = {int(y[bad])}: labels are 0..classes-1, and more than {MAX_CLASSES:,} "
                        "classes is not a small classifier; fix that label")
    return torch.as_tensor(y.astype(np.int64))


_CHUNK_PIXELS = 1 << 22  # images converted (dtype, layout, size) this many values at a time: bounded temporaries
_WORKING_BYTES = 64 << 20  # those chunks' temporaries, and the per-channel statistics' (``training.data``)
_ALLOCATOR_SLACK = 1.15  # freed blocks the allocator has not returned yet (measured: up to 1.04x the arrays' sum)


def _layout(shape: tuple[int, ...], path: Path, key: str) -> tuple[str, int]:
    """("NHW" | "NHWC" | "NCHW", channels) of an image array's shape."""
    if len(shape) == 3:
        return "NHW", 1
    if len(shape) == 4 and shape[-1] in (1, 3, 4) and shape[1] not in (1, 3):
        return "NHWC", shape[-1]
    if len(shape) == 4 and shape[1] in (1, 3, 4):
        return "NCHW", shape[1]
    raise DataError(f"{path}: {key} has shape {shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W) with "
                    "1, 3 or 4 channels")


_LAYOUT_TEXT = {"NHW": "N,H,W (one channel)", "NHWC": "N,H,W,C with {c} channel(s)", "NCHW": "N,C,H,W with {c} channel(s)"}


def _float_scale(x, path: Path, key: str) -> float:
    """255 for floats in [0, 1], 1 for [0, 255]; refuses NaN, values outside [0, 255], and [0, 1] data with a few
    stray values above 1 (read as [0, 255] they would collapse to two or three grey levels)."""
    import numpy as np

    flat = x.reshape(len(x), -1)
    finite = np.isfinite(flat).all(axis=1)
    if not finite.all():
        raise DataError(f"{path}: {key}[{int(np.flatnonzero(~finite)[0])}] holds NaN or inf")
    low, high = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if low < 0 or high > 255:
        raise DataError(f"{path}: {key} holds floats outside [0, 255] (min {low:g}, max {high:g}); "
                        "give pixels in [0, 1] or [0, 255]")
    if high <= 1.0:
        return 255.0
    above = int(np.count_nonzero(x > 1.0))
    if high < 2.0 or above < 0.001 * x.size:
        first = int(np.flatnonzero((flat > 1.0).any(axis=1))[0])
        raise DataError(f"{path}: {key} holds floats in [0, 1] except {above:,} value(s) above 1 (max {high:g}, the "
                        f"first in {key}[{first}]); clip them to [0, 1], or give every pixel in [0, 255]")
    return 1.0


def _images(x, path: Path, key: str, size: tuple[int, int] | None = None) -> tuple[torch.Tensor, str]:
    """(uint8 NCHW tensor with 1 or 3 channels, the layout found) of an array of images: converted a chunk of
    images at a time (dtype, layout, alpha dropped, resized to ``size``), so that no full-size temporary is made."""
    import numpy as np

    layout, channels = _layout(x.shape, path, key)
    text = _LAYOUT_TEXT[layout].format(c=channels)
    scale = 1.0
    if x.dtype.kind == "f":
        scale = _float_scale(x, path, key)
        text += f", float {'[0, 1]' if scale == 255.0 else '[0, 255]'} -> uint8"
    elif x.dtype != np.uint8 and (x.dtype.kind not in "iu" or (x.size and (x.min() < 0 or x.max() > 255))):
        raise DataError(f"{path}: {key} must be uint8 pixels or floats, got dtype {x.dtype}"
                        + (f" with values in [{x.min()}, {x.max()}]" if x.dtype.kind in "iu" else ""))
    n, h, w = x.shape[0], *((x.shape[1:3]) if layout != "NCHW" else x.shape[2:4])
    keep = 3 if channels == 4 else channels  # an alpha channel carries no class information here
    oh, ow = size or (h, w)
    out = torch.empty((n, keep, oh, ow), dtype=torch.uint8)
    step = max(1, _CHUNK_PIXELS // max(1, h * w * channels))
    for a in range(0, n, step):
        chunk = x[a:a + step]
        chunk = chunk[:, None] if layout == "NHW" else chunk.transpose(0, 3, 1, 2) if layout == "NHWC" else chunk
        chunk = chunk[:, :keep]
        if x.dtype.kind == "f":
            chunk = np.rint(chunk * scale)
        part = torch.from_numpy(np.ascontiguousarray(chunk.astype(np.uint8)))
        out[a:a + step] = _resize(part, size) if size else part
    return out, text


def _npz_members(path: Path) -> dict[str, tuple[tuple[int, ...], "np.dtype"]]:
    """{key: (shape, dtype)} of a .npz's arrays, read from their headers without loading them."""
    import zipfile

    import numpy as np

    members = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as f:
                version = np.lib.format.read_magic(f)
                shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0(f))
            members[info.filename[:-4]] = (tuple(shape), np.dtype(dtype))
    return members


def npz_peak_bytes(members: dict[str, tuple[tuple[int, ...], "np.dtype"]], size: tuple[int, int] | None) -> int:
    """The most memory loading a .npz takes (``_load_npz`` then ``training.data.load_splits``), from its arrays'
    shapes and dtypes: the source array of x_train beside its uint8 copy, then the uint8 images held twice while
    the splits are carved (``BENCHMARKS.md``: measured against this)."""
    import math

    def pixels(key: str) -> tuple[int, int]:  # (source bytes, uint8 bytes after conversion and resize)
        if key not in members:
            return 0, 0
        shape, dtype = members[key]
        try:
            _, channels = _layout(shape, Path(), key)
        except DataError:  # refused with its shape when the array is read (``_images``)
            return 0, 0
        n, rest = shape[0], math.prod(shape[1:])
        hw = rest // channels
        out = n * min(channels, 3) * (size[0] * size[1] if size else hw)
        return n * rest * dtype.itemsize, out

    train_src, train = pixels("x_train")
    test_src, test = pixels("x_test")
    labels = sum(math.prod(members[k][0]) * 8 for k in ("y_train", "y_test") if k in members)
    arrays = max(train_src + train, train + test_src + test, 2 * train + test) + 2 * labels
    return int(arrays * _ALLOCATOR_SLACK) + _WORKING_BYTES


def _load_npz(path: Path, size: tuple[int, int] | None, channels: str = "auto") -> UserData:
    import numpy as np

    try:
        members = _npz_members(path)
        _check_memory(path, npz_peak_bytes(members, size), "its arrays")
        archive = np.load(path, allow_pickle=False)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})".splitlines()[0]) from None
    with archive:
        keys = set(archive.files)
        missing = [key for key in ("x_train", "y_train") if key not in keys]
        if missing:
            raise DataError(f"{path}: no {' or '.join(missing)} in it (found: {', '.join(sorted(keys)) or 'nothing'})")
        if ("x_test" in keys) != ("y_test" in keys):
            raise DataError(f"{path}: x_test and y_test come together; it has only one of them")

        def read(key: str):
            try:
                return archive[key]
            except Exception as e:
                raise DataError(f"{path}: {key} is not readable ({type(e).__name__}: {e})".splitlines()[0]) from None

        train_x, layout = _images(read("x_train"), path, "x_train", size)
        train_y = _labels(read("y_train"), path, "y_train", len(train_x))
        test_x = test_y = None
        if "x_test" in keys:
            test_x, _ = _images(read("x_test"), path, "x_test", size)
            test_y = _labels(read("y_test"), path, "y_test", len(test_x))
            if test_x.shape[1] != train_x.shape[1]:  # as a folder does: one grey split beside an RGB one becomes RGB
                layout += f"; the {'x_test' if test_x.shape[1] == 1 else 'x_train'} images are grey, read as RGB"
                if test_x.shape[1] == 1:
                    test_x = test_x.expand(-1, 3, -1, -1).contiguous()
                else:
                    train_x = train_x.expand(-1, 3, -1, -1).contiguous()
            if test_x.shape[2:] != train_x.shape[2:]:
                raise DataError(f"{path}: x_test images are {test_x.shape[2]}x{test_x.shape[3]}, x_train's "
                                f"{train_x.shape[2]}x{train_x.shape[3]}; give --image-size HxW to resize both")
        names = read("class_names") if "class_names" in keys else None
    classes_count = int(train_y.max()) + 1 if len(train_y) else 0
    if names is not None:
        if names.ndim != 1:
            raise DataError(f"{path}: class_names must be a list of names (shape (K,)), got "
                            + ("a single value" if names.ndim == 0 else f"shape {names.shape}"))
        names = [str(c) for c in names.tolist()]
        if len(names) < classes_count:
            raise DataError(f"{path}: class_names has {len(names)} names for labels up to {classes_count - 1}")
    classes = names or [str(i) for i in range(classes_count)]
    return _finish(path, train_x, train_y, test_x, test_y, classes, layout, size, channels)


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # PIL's modes of 16-bit greyscale PNGs
_GREY = ("1", "L", "LA", "La")


def _eight_bit(image) -> "np.ndarray":
    """The pixels a viewer shows, in 8 bits: (H, W) grey or (H, W, 3) RGB, from any PIL mode. 16-bit grey is scaled
    (65535 -> 255), alpha is dropped, palette, CMYK and YCbCr images are converted by PIL, and a palette whose
    colours are all grey stays one channel."""
    import numpy as np

    if image.mode in _SIXTEEN_BIT:
        return np.rint(np.asarray(image, dtype=np.float64).clip(0, 65535) / 257).astype(np.uint8)
    if image.mode in _GREY:
        return np.asarray(image.convert("L"))
    rgb = np.asarray(image.convert("RGB"))
    if image.mode in ("P", "PA") and (rgb[..., :1] == rgb).all():
        return rgb[..., 0]
    return rgb


def decode_image_file(path: Path) -> torch.Tensor:
    """One image file as uint8 (C, H, W), C 1 or 3: as PIL reads it and a viewer shows it (the EXIF orientation
    applied, the first frame of an animation, ``_eight_bit``); a file PIL cannot read is one ``DataError`` line."""
    import warnings

    import numpy as np
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's advice on palette transparency, EXIF oddities
            with Image.open(path) as image:
                image.seek(0)
                image.load()
                pixels = _eight_bit(ImageOps.exif_transpose(image))
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError, ... on bad files
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:300] if str(e) else type(e).__name__
        raise DataError(f"{path}: cannot decode this image ({reason})") from None
    tensor = torch.from_numpy(np.array(pixels))  # PIL's arrays are read-only
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


_FOLDER_PEAK = 2  # decoded images and their stacked copy, then twice the stack while the splits are carved


def _split_entries(split: Path) -> tuple[list[Path], list[str]]:
    """(class folders, names of other files) of a split folder; an image file where a class folder should be is
    refused (its class is unknown), hidden files are ignored."""
    entries = [p for p in split.iterdir() if not p.name.startswith(".")]
    stray = sorted(p for p in entries if not p.is_dir() and p.suffix.lower() in IMAGE_SUFFIXES)
    if stray:
        raise DataError(f"{stray[0]}: an image outside a class folder ({len(stray)} in {split}); put each image in "
                        f"{split}/<class>/, the folder's name being its class")
    folders = sorted(p for p in entries if p.is_dir())
    if not folders:
        raise DataError(f"{split}: no class folders in it; expected {split}/<class>/<image files>")
    return folders, sorted(p.name for p in entries if not p.is_dir())


def _read_folder(split: Path, classes: list[str], size: tuple[int, int] | None
                 ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Images of ``split/<class>/`` as uint8 (N, C, H, W) in one size; labels by ``classes``; the channels found."""
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        folder = split / name
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        if not found:
            raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this class folder")
        files += [(p, label) for p in found]
    images = []
    for path, _ in files:
        image = decode_image_file(path)
        if not images:
            first_path, first = path, tuple(image.shape[-2:])
            h, w = size or first
            _check_memory(split, len(files) * 3 * h * w * _FOLDER_PEAK, f"{len(files):,} images")
        if size is None and tuple(image.shape[-2:]) != first:
            raise DataError(f"{path}: {image.shape[-2]}x{image.shape[-1]} pixels, but {first_path} is "
                            f"{first[0]}x{first[1]}; give --image-size HxW to resize every image once at load")
        images.append(_resize(image, size) if size else image)
    channels = 3 if any(image.shape[0] == 3 for image in images) else 1
    out = torch.empty((len(images), channels, *images[0].shape[-2:]), dtype=torch.uint8)
    for i, image in enumerate(images):
        out[i] = image  # a grey image among colour ones is broadcast to three equal channels
    return out, torch.tensor([label for _, label in files], dtype=torch.int64), channels


def _load_folder(root: Path, size: tuple[int, int] | None, channels: str = "auto") -> UserData:
    train = root / "train"
    if not train.is_dir():
        raise DataError(f"{root}: no train/ folder; expected {root}/train/<class>/<image files> "
                        "(and optionally test/<class>/...)")
    folders, ignored = _split_entries(train)
    classes = [p.name for p in folders]
    channels_mode = channels
    train_x, train_y, channels = _read_folder(train, classes, size)
    test_x = test_y = None
    test = root / "test"
    if test.is_dir():
        test_folders, test_ignored = _split_entries(test)
        ignored += test_ignored
        extra = sorted(set(p.name for p in test_folders) - set(classes))
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
    layout = "image folder"
    if ignored:
        layout += f"; not images, ignored: {', '.join(ignored[:3])}{', ...' if len(ignored) > 3 else ''}"
    return _finish(root, train_x, train_y, test_x, test_y, classes, layout, size, channels_mode)


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


CHANNELS = ("auto", "gray", "rgb")


def _colour_images(x: torch.Tensor, chunk: int = 4096) -> int:
    """How many of the (N, 3, H, W) images have a pixel whose channels differ."""
    return sum(int(((part[:, 0] != part[:, 1]) | (part[:, 1] != part[:, 2])).flatten(1).any(1).sum())
               for part in (x[a:a + chunk] for a in range(0, len(x), chunk)))


def _luma(x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """(N, 3, H, W) uint8 RGB -> (N, 1, H, W) grey, as PIL's ``convert("L")`` computes it (ITU-R 601-2 luma)."""
    out = torch.empty((len(x), 1, *x.shape[2:]), dtype=torch.uint8)
    for a in range(0, len(x), chunk):
        part = x[a:a + chunk].to(torch.int32)
        out[a:a + chunk, 0] = ((part[:, 0] * 19595 + part[:, 1] * 38470 + part[:, 2] * 7471 + 0x8000) >> 16).to(torch.uint8)
    return out


def _apply_channels(train_x: torch.Tensor, test_x: torch.Tensor | None, mode: str
                    ) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """The images with the channels ``mode`` asks for, and the reason, for the plan line. auto: three channels when
    any image is in colour, else one (also for grey images stored as RGB: a grey sensor should not pay for three)."""
    both = [x for x in (train_x, test_x) if x is not None]
    total = sum(len(x) for x in both)
    colour = sum(_colour_images(x) for x in both) if train_x.shape[1] == 3 else 0
    if mode == "rgb":
        out = [x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x for x in both]
        reason = "3 channels (--channels rgb)"
    elif mode == "gray" or not colour:
        out = [_luma(x) if x.shape[1] == 3 else x for x in both]
        reason = ("1 channel (--channels gray" + (f": {colour:,} colour images converted to grey by luma)" if colour
                                                   else ")") if mode == "gray" else
                  "1 channel (auto: no image is in colour" + (", the RGB files hold greys)" if train_x.shape[1] == 3
                                                                else ")"))
    else:
        out = both
        reason = f"3 channels (auto: {colour:,} of {total:,} images are in colour; --channels gray makes them grey)"
    return out[0], (out[1] if test_x is not None else None), reason


def _finish(path: Path, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor | None,
            test_y: torch.Tensor | None, classes: list[str], layout: str, size: tuple[int, int] | None,
            channels: str = "auto") -> UserData:
    train_x, test_x, reason = _apply_channels(train_x, test_x, channels)
    layout += f"; {reason}"
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
    warnings = []
    empty = sorted(set(range(len(classes))) - set(present.tolist()))
    if empty:
        names = ", ".join(classes[i] for i in empty[:5]) + (", ..." if len(empty) > 5 else "")
        warnings.append(f"{path}: {len(empty)} of {len(classes)} classes have no training image ({names}): gaps in the "
                        "labels or extra class_names; the model still gets an output for each, which it never predicts")
    if test_x is None:
        kept, carved = stratified_split(train_y, TEST_SHARE)
        test_x, test_y = train_x[carved], train_y[carved]
        train_x, train_y = train_x[kept], train_y[kept]
        layout += f"; no test split: {len(carved):,} images ({TEST_SHARE:.0%} of each class) held out as the test set"
    _, c, h, w = train_x.shape
    return UserData(InputSpec(c, h, w, len(classes)), classes, train_x.contiguous(), train_y, test_x.contiguous(),
                    test_y, layout, warnings)


def load_user_data(path: str | Path, image_size: str | None = None, channels: str = "auto") -> UserData:
    """Read and check a dataset folder or ``.npz`` file (module doc); raises ``DataError`` naming what is wrong.
    ``channels``: auto (three when any image is in colour, else one), gray or rgb (``_apply_channels``)."""
    path = Path(path)
    size = _size(image_size)
    if channels not in CHANNELS:
        raise DataError(f"--channels {channels!r}: choose from {', '.join(CHANNELS)}")
    if not path.exists():
        raise DataError(f"--dataset {path}: no such file or folder")
    try:
        if path.is_dir():
            return _load_folder(path, size, channels)
        if path.suffix.lower() != ".npz":
            raise DataError(f"--dataset {path}: expected a folder (train/<class>/...) or a .npz file")
        return _load_npz(path, size, channels)
    except PermissionError as e:
        raise DataError(f"cannot read {e.filename or path}: permission denied") from None
