"""The user's own data (issue 25): image folders and .npz files, read once and checked before anything trains."""

import numpy as np
import pytest
import torch

from training import DataError, load_splits
from training.userdata import load_user_data, stratified_split


def _digits():
    sklearn = pytest.importorskip("sklearn.datasets")
    digits = sklearn.load_digits()
    return np.rint(digits.images * 255 / 16).astype(np.uint8), digits.target  # real handwritten digits, 8x8


def write_folder(root, x, y, split="train", names=None):
    """Images (N, H, W) or (N, C, H, W) uint8 as PNG files in root/split/<class>/<index>.png."""
    from torchvision.io import write_png

    for i, (image, label) in enumerate(zip(x, y)):
        folder = root / split / (names[label] if names else str(label))
        folder.mkdir(parents=True, exist_ok=True)
        image = torch.as_tensor(image)
        write_png(image[None] if image.ndim == 2 else image, str(folder / f"{i:06d}.png"))


def _by_class(x, y):
    """Images ordered by class, then by their order within it: how a folder lists them."""
    order = np.argsort(np.asarray(y), kind="stable")
    return np.asarray(x)[order], np.asarray(y)[order]


def test_digits_as_a_folder_and_as_an_npz_load_to_the_same_images(tmp_path):
    x, y = _digits()
    write_folder(tmp_path / "digits", x, y)
    np.savez(tmp_path / "digits.npz", x_train=x, y_train=y)
    folder, npz = load_user_data(tmp_path / "digits"), load_user_data(tmp_path / "digits.npz")
    assert folder.spec == npz.spec and (folder.spec.channels, folder.spec.height, folder.spec.classes) == (1, 8, 10)
    assert folder.classes == [str(i) for i in range(10)]
    assert "held out as the test set" in folder.layout and "N,H,W" in npz.layout
    for data in (folder, npz):  # 20% of each class is the test set
        counts = torch.bincount(data.test_y, minlength=10).float() / torch.bincount(
            torch.cat([data.train_y, data.test_y]), minlength=10)
        assert ((counts - 0.2).abs() < 0.02).all()
    bx, by = _by_class(x, y)
    assert sorted(map(bytes, torch.cat([folder.train_x, folder.test_x]).numpy())) == sorted(map(bytes, bx[:, None]))
    splits = load_splits(str(tmp_path / "digits"), device="cpu")
    assert len(splits.val_y) == pytest.approx(0.1 * len(folder.train_y), abs=10) and splits.classes == folder.classes
    assert set(torch.unique(splits.val_y).tolist()) == set(range(10))  # stratified


def test_npz_layouts_and_a_test_split(tmp_path):
    gen = np.random.default_rng(0)
    x = gen.random((40, 12, 10, 3)).astype(np.float32)  # NHWC floats in [0, 1]
    y = np.arange(40) % 4
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y.astype(np.float64), x_test=x[:8], y_test=y[:8],
             class_names=np.array(["a", "b", "c", "d"]))
    data = load_user_data(tmp_path / "d.npz")
    assert (data.spec.channels, data.spec.height, data.spec.width, data.spec.classes) == (3, 12, 10, 4)
    assert data.classes == ["a", "b", "c", "d"] and len(data.test_y) == 8 and "N,H,W,C" in data.layout
    assert torch.equal(data.train_x[0], torch.from_numpy(np.rint(x[0] * 255).astype(np.uint8)).permute(2, 0, 1))
    np.savez(tmp_path / "nchw.npz", x_train=(x * 255).astype(np.uint8).transpose(0, 3, 1, 2), y_train=y)
    assert load_user_data(tmp_path / "nchw.npz", image_size="6x5").spec.height == 6


def test_stratified_split_keeps_every_class_on_both_sides():
    labels = torch.tensor([0] * 50 + [1] * 10 + [2] * 3)
    kept, carved = stratified_split(labels, 0.2)
    assert torch.bincount(labels[carved]).tolist() == [10, 2, 1]
    assert sorted(kept.tolist() + carved.tolist()) == list(range(len(labels)))


def _folder(tmp_path, sizes=((8, 8), (8, 8)), classes=("a", "b")):
    """root/train/<class>/<i>.png: one grey image of each size in each class."""
    from torchvision.io import write_png

    for c in classes:
        (tmp_path / "d" / "train" / c).mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            write_png(torch.full((1, h, w), 9 * i, dtype=torch.uint8), str(tmp_path / "d" / "train" / c / f"{i}.png"))
    return tmp_path / "d"


@pytest.mark.parametrize("make, expected", [
    (lambda p: (p / "d").mkdir(), "no train/ folder"),
    (lambda p: (p / "d" / "train").mkdir(parents=True), "no class folders in it"),
    (lambda p: _folder(p, classes=("only",)), "at least two classes"),
    (lambda p: (_folder(p), (p / "d" / "train" / "c").mkdir()), "train/c: no images"),
    (lambda p: (_folder(p), (p / "d" / "train" / "b" / "9.png").write_bytes(b"\x89PNG broken")), "9.png: cannot decode"),
    (lambda p: _folder(p, sizes=((8, 8), (9, 8))), "give --image-size HxW"),
    (lambda p: np.savez(p / "d.npz", x_train=np.zeros((5, 4, 4), np.uint8), y_train=np.zeros(4)), "4 labels for 5 images"),
    (lambda p: np.savez(p / "d.npz", x_train=np.zeros((2, 4, 4), np.uint8), y_train=[0.5, 1]), "is not an integer"),
    (lambda p: np.savez(p / "d.npz", x_train=np.zeros((2, 4, 4), np.uint8), y_train=[-1, 1]), "is negative"),
    (lambda p: np.savez(p / "d.npz", x_train=np.full((2, 4, 4), np.nan), y_train=[0, 1]), "x_train[0] holds NaN"),
    (lambda p: np.savez(p / "d.npz", y_train=[0, 1]), "no x_train in it"),
    (lambda p: np.savez(p / "d.npz", x_train=np.zeros((2, 4, 4), np.uint8), y_train=[0, 1], x_test=np.zeros((1, 4, 4)),
                        y_test=[7]), "test label 7 at index 0 is not a training class"),
    (lambda p: (p / "d.npz").write_bytes(b"not a zip"), "not a readable .npz"),
], ids=["no-train", "empty-train", "one-class", "empty-class", "corrupt-image", "mixed-sizes", "lengths",
        "float-labels", "negative-label", "nan", "no-x", "test-label", "not-npz"])
def test_bad_data_is_one_line_naming_the_file(tmp_path, make, expected):
    make(tmp_path)
    path = tmp_path / ("d.npz" if (tmp_path / "d.npz").exists() else "d")
    with pytest.raises(DataError) as info:
        load_user_data(path)
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_data_too_big_for_memory_is_refused_with_its_size(tmp_path, monkeypatch):
    import training.parallel

    np.savez(tmp_path / "d.npz", x_train=np.zeros((64, 16, 16), np.uint8), y_train=np.arange(64) % 2)
    monkeypatch.setattr(training.parallel, "available_memory_gib", lambda: 1e-5)
    with pytest.raises(DataError, match="GiB, more than half of the .* free memory; use fewer images"):
        load_user_data(tmp_path / "d.npz")


@pytest.mark.slow
def test_mnist_written_as_png_loads_bit_for_bit_like_the_idx_reader(mnist_dir, tmp_path):
    from training.data import _idx_split

    folder = mnist_dir / "MNIST" / "raw"
    sets = {"train": _idx_split(folder, "train"), "test": _idx_split(folder, "t10k")}
    keep = {"train": 3000, "test": 600}
    for split, (x, y) in sets.items():
        write_folder(tmp_path / "mnist", x[:keep[split], 0].numpy(), y[:keep[split]].numpy(), split=split)
    data = load_user_data(tmp_path / "mnist")
    for split, (x, y) in sets.items():
        bx, by = _by_class(x[:keep[split]].numpy(), y[:keep[split]].numpy())
        got_x, got_y = (data.train_x, data.train_y) if split == "train" else (data.test_x, data.test_y)
        assert torch.equal(got_x, torch.from_numpy(bx)) and torch.equal(got_y, torch.from_numpy(by))
