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
    with pytest.raises(DataError, match="GiB at its peak, more than half of the .* free memory; use fewer images"):
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


# --- Reliability, round four (issue 38): every image mode PIL reads, as a viewer shows it; bounded memory ---

def _pil_modes(root):
    """root/train/<mode>/<i>.<ext>: the same kind of content saved in each of PIL's modes a user's folder may hold;
    returns {path: the RGB pixels PIL shows for it}."""
    from PIL import Image, ImageOps

    gen = np.random.default_rng(0)
    rgb = gen.integers(0, 256, (6, 12, 10, 3), dtype=np.uint8)
    grey = rgb[..., 0]
    made = {}

    def save(mode, i, image, ext="png", **kw):
        folder = root / "train" / mode
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i}.{ext}"
        image.save(path, **kw)
        with Image.open(path) as opened:
            shown = ImageOps.exif_transpose(opened)
            if shown.mode in ("I;16", "I;16B", "I;16L", "I"):
                made[path] = np.repeat(np.rint(np.asarray(shown, dtype=np.float64) / 257)[..., None], 3, -1)
            else:
                made[path] = np.asarray(shown.convert("RGB")).astype(np.float64)
        return path

    for i in range(2):
        save("palette", i, Image.fromarray(rgb[i]).convert("P", palette=Image.Palette.ADAPTIVE, colors=40))
        save("palette-grey", i, Image.fromarray(grey[i]).convert("P"))
        transparent = Image.fromarray(rgb[i]).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        save("palette-alpha", i, transparent, transparency=3)
        save("sixteen-bit", i, Image.fromarray(grey[i].astype(np.uint16) * 257))
        save("cmyk", i, Image.new("CMYK", (10, 12), (0, 0, 0, 200 + i * 40)), ext="jpg")
        save("grey-alpha", i, Image.fromarray(np.stack([grey[i], grey[i + 2]], -1), mode="LA"))
        save("bilevel", i, Image.fromarray(grey[i] > 127))
        frames = [Image.fromarray(rgb[i + k]).convert("P") for k in range(3)]
        save("animated", i, frames[0], ext="gif", save_all=True, append_images=frames[1:], loop=0, duration=50)
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to show
        save("exif-rotated", i, Image.fromarray(rgb[i][:10, :12]), ext="jpg", exif=exif.tobytes(), quality=95)
    return made


def test_every_pil_mode_loads_as_pil_shows_it_in_eight_bits(tmp_path):
    made = _pil_modes(tmp_path / "d")
    data = load_user_data(tmp_path / "d", image_size="12x10")
    again = load_user_data(tmp_path / "d", image_size="12x10")
    assert torch.equal(data.train_x, again.train_x) and data.spec.channels == 3  # no uninitialised memory
    from training.userdata import decode_image_file

    for path, shown in made.items():
        got = decode_image_file(path)
        assert got.dtype == torch.uint8 and got.shape[0] in (1, 3), path
        rgb = got.expand(3, -1, -1).permute(1, 2, 0).numpy().astype(np.float64)
        assert rgb.shape == shown.shape and np.abs(rgb - shown).max() <= 0, path
    sixteen = decode_image_file(sorted(made)[0].parent.parent / "sixteen-bit" / "0.png")
    assert sixteen.shape[0] == 1 and int(sixteen.max()) > 200  # scaled from 16 bits, not clipped or 257x off
    assert decode_image_file(tmp_path / "d" / "train" / "palette-grey" / "0.png").shape[0] == 1
    assert decode_image_file(tmp_path / "d" / "train" / "cmyk" / "0.jpg").float().mean() < 128  # the K ink shows


def test_a_sixteen_bit_png_among_eight_bit_ones_gives_the_same_pixels(tmp_path):
    from PIL import Image

    x, _ = _digits()
    for c in ("a", "b"):
        (tmp_path / "d" / "train" / c).mkdir(parents=True)
    Image.fromarray(x[0]).save(tmp_path / "d" / "train" / "a" / "0.png")
    Image.fromarray(x[1].astype(np.uint16) * 257).save(tmp_path / "d" / "train" / "a" / "1.png")
    Image.fromarray(x[2]).save(tmp_path / "d" / "train" / "b" / "0.png")
    Image.fromarray(x[3].astype(np.uint16) * 257).save(tmp_path / "d" / "train" / "b" / "1.png")
    data = load_user_data(tmp_path / "d")
    both = torch.cat([data.train_x, data.test_x])[:, 0]
    assert sorted(map(bytes, both.numpy())) == sorted(map(bytes, x[:4]))
    assert load_splits(str(tmp_path / "d"), device="cpu").mean[0] <= 1.0  # [0, 1] units, not 257 times off


def test_an_npz_with_grey_test_and_colour_train_images_reads_both_as_colour(tmp_path):
    gen = np.random.default_rng(0)
    x = gen.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(20) % 2, x_test=x[:6, ..., 0], y_test=np.arange(6) % 2)
    data = load_user_data(tmp_path / "d.npz")
    assert data.spec.channels == 3 and data.test_x.shape == (6, 3, 8, 8) and "grey, read as RGB" in data.layout
    assert torch.equal(data.test_x[:, 1], torch.from_numpy(x[:6, ..., 0]))
    resized = load_user_data(tmp_path / "d.npz", image_size="6x6")  # was: searched, then failed in the finals
    assert resized.train_x.shape[1:] == resized.test_x.shape[1:] == (3, 6, 6)


@pytest.mark.parametrize("make, expected", [
    (lambda p: np.savez(p / "d.npz", x_train=np.zeros((3, 4, 4), np.uint8), y_train=[0, 1, 10 ** 9]),
     "y_train[2] = 1000000000: labels are 0..classes-1, and more than 10,000 classes"),
    (lambda p: np.savez(p / "d.npz", x_train=np.zeros((3, 4, 4), np.uint8), y_train=[0, 1, 1],
                        class_names=np.array("digits")), "class_names must be a list of names (shape (K,)), got a single"),
    (lambda p: np.savez(p / "d.npz", x_train=np.full((3, 4, 4), 0.5, np.float32) + np.eye(4, dtype=np.float32) * 0.5001,
                        y_train=[0, 1, 1]), "floats in [0, 1] except 12 value(s) above 1 (max 1.0001"),
    (lambda p: (_folder(p), (p / "d" / "train" / "stray.png").write_bytes(b"")), "stray.png: an image outside a class"),
], ids=["label-1e9", "scalar-class-names", "float-above-one", "image-outside-class"])
def test_round_four_bad_data_is_one_line(tmp_path, make, expected):
    make(tmp_path)
    path = tmp_path / ("d.npz" if (tmp_path / "d.npz").exists() else "d")
    with pytest.raises(DataError) as info:
        load_user_data(path)
    assert expected in str(info.value) and "\n" not in str(info.value) and str(path) in str(info.value)


def test_empty_classes_and_other_files_are_said(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((4, 4, 4), np.uint8), y_train=[0, 2, 0, 2],
             class_names=np.array(["a", "b", "c", "d"]))
    data = load_user_data(tmp_path / "d.npz")
    assert data.spec.classes == 4 and data.warnings and "2 of 4 classes have no training image (b, d)" in data.warnings[0]
    folder = _folder(tmp_path)
    (folder / "train" / "README.txt").write_text("my digits")
    assert "not images, ignored: README.txt" in load_user_data(folder).layout and not load_user_data(folder).warnings


def test_image_size_is_checked_against_memory_before_resizing(tmp_path, monkeypatch):
    import training.parallel

    x, y = _digits()
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    monkeypatch.setattr(training.parallel, "available_memory_gib", lambda: 16.0)
    with pytest.raises(DataError, match=r"d.npz: loading its arrays takes \d+\.\d GiB at its peak"):
        load_user_data(tmp_path / "d.npz", image_size="5000x5000")  # was: a 45 GB allocation and a traceback
    write_folder(tmp_path / "f", x[:20], y[:20])
    with pytest.raises(DataError, match=r"loading 20 images takes"):
        load_user_data(tmp_path / "f", image_size="30000x30000")


@pytest.mark.parametrize("dtype, layout, size", [("uint8", "NHWC", None), ("float32", "NHW", None),
                                                 ("uint8", "NHW", "40x40")])
def test_the_npz_memory_check_predicts_the_measured_peak(tmp_path, dtype, layout, size):
    """Loading a .npz and carving its splits peaks within the prediction that the memory check uses, and the
    prediction is not wildly above it (it was 4.3 times the uint8 data, checked against a half-share of it)."""
    from pathlib import Path

    from benchmarks.bench_load_memory import measure

    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to measure the peak")
    gen = np.random.default_rng(0)
    n = 6000
    shape = (n, 64, 64, 3) if layout == "NHWC" else (n, 64, 64)
    x = gen.integers(0, 256, shape, dtype=np.uint8)
    x = x.astype(np.float32) / 255 if dtype == "float32" else x
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(n) % 10)
    del x
    _, measured, predicted = measure(tmp_path / "d.npz", size)
    assert measured <= predicted * 1.05 + 16 * 2 ** 20, (measured, predicted)
    assert predicted <= 3 * measured, (measured, predicted)


def test_channels_auto_gray_and_rgb_say_why(tmp_path):
    """Issue 39 item 2: one RGB file made the whole set 3xHxW and the plan said only '3 channel(s)'."""
    from PIL import Image

    gen = np.random.default_rng(0)
    grey = gen.integers(0, 256, (6, 8, 8), dtype=np.uint8)
    colour = gen.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    for c in ("a", "b"):
        (tmp_path / "d" / "train" / c).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(grey[i]).save(tmp_path / "d" / "train" / "a" / f"{i}.png")
        Image.fromarray(np.repeat(grey[3 + i][..., None], 3, -1)).save(tmp_path / "d" / "train" / "b" / f"{i}.png")
    auto = load_user_data(tmp_path / "d")  # greys, some stored as RGB: one channel
    assert auto.spec.channels == 1 and "1 channel (auto: no image is in colour, the RGB files hold greys)" in auto.layout
    Image.fromarray(colour).save(tmp_path / "d" / "train" / "b" / "9.png")
    auto = load_user_data(tmp_path / "d")
    assert auto.spec.channels == 3 and "3 channels (auto: 1 of 7 images are in colour" in auto.layout
    gray = load_user_data(tmp_path / "d", channels="gray")
    assert gray.spec.channels == 1 and "1 colour images converted to grey by luma" in gray.layout
    both = torch.cat([gray.train_x, gray.test_x])
    shown = torch.from_numpy(np.asarray(Image.fromarray(colour).convert("L")))
    assert any(torch.equal(image[0], shown) for image in both)  # the same grey as PIL's
    assert load_user_data(tmp_path / "d", channels="rgb").spec.channels == 3
    np.savez(tmp_path / "g.npz", x_train=grey, y_train=[0, 1, 0, 1, 0, 1])
    assert load_user_data(tmp_path / "g.npz", channels="rgb").spec.channels == 3
    with pytest.raises(DataError, match="--channels 'cmyk': choose from auto, gray, rgb"):
        load_user_data(tmp_path / "g.npz", channels="cmyk")
