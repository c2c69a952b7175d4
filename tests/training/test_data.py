import subprocess
import sys
from pathlib import Path

import pytest
import torch

from blocks import Genome
from training import DataError, check_genome_fits, load_splits
from tests.synthetic import write_idx

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_mnist(tmp_path):
    write_idx(tmp_path / "MNIST" / "raw")
    return tmp_path


def test_loads_uint8_splits_with_a_fixed_validation_split(fake_mnist):
    splits = load_splits("mnist", fake_mnist, val_size=30, download=False)
    assert splits.train_x.dtype == torch.uint8 and splits.train_x.shape == (70, 1, 28, 28)
    assert splits.val_x.shape == (30, 1, 28, 28) and splits.test_x.shape == (20, 1, 28, 28)
    again = load_splits("mnist", fake_mnist, val_size=30, download=False)
    assert torch.equal(splits.val_x, again.val_x) and torch.equal(splits.train_y, again.train_y)
    other = load_splits("mnist", fake_mnist, val_size=30, split_seed=1, download=False)
    assert not torch.equal(splits.val_x, other.val_x)
    # the validation images are carved out of the training set: disjoint, and together all 100
    train_rows = {bytes(x.numpy()) for x in splits.train_x}
    val_rows = {bytes(x.numpy()) for x in splits.val_x}
    assert not train_rows & val_rows and len(train_rows | val_rows) == 100
    assert len(splits.mean) == 1 and 0.3 < splits.mean[0] < 0.7  # uniform random pixels


def test_subset_is_fixed_and_smaller(fake_mnist):
    splits = load_splits("mnist", fake_mnist, val_size=30, download=False)
    sub = splits.subset(10)
    assert len(sub.train_y) == 10 and torch.equal(sub.train_x, splits.subset(10).train_x)
    assert splits.subset(None) is splits


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'svhn'; known: mnist, fashion-mnist, cifar10"):
        load_splits("svhn", "data")


def test_data_dir_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(DataError, match="is a file, not a directory"):
        load_splits("mnist", path)


def test_missing_files_without_download_name_the_expected_files(tmp_path):
    with pytest.raises(DataError, match=r"mnist files missing: expected train-images-idx3-ubyte.* in .*MNIST/raw"):
        load_splits("mnist", tmp_path, download=False)


def test_failed_download_is_one_clear_error(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried mirrors, all failed")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError) as info:
        load_splits("mnist", tmp_path)
    message = str(info.value)
    assert "MNIST not found and the download failed" in message and "\n" not in message
    assert "train-images-idx3-ubyte" in message and str(tmp_path / "MNIST" / "raw") in message


def test_truncated_file(fake_mnist):
    path = fake_mnist / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"corrupt data file .*train-images-idx3-ubyte: 1,000 bytes, expected 78,416"):
        load_splits("mnist", fake_mnist, download=False)


def test_bad_magic(fake_mnist):
    path = fake_mnist / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x00\x07" + path.read_bytes()[4:])
    with pytest.raises(DataError, match="magic number 7, expected 2049"):
        load_splits("mnist", fake_mnist, download=False)


def test_label_count_must_match_the_image_count(fake_mnist):
    path = fake_mnist / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    raw = path.read_bytes()
    path.write_bytes(raw[:4] + (19).to_bytes(4, "big") + raw[8:-1])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte has 19 labels for 20 images in t10k-images-idx3"):
        load_splits("mnist", fake_mnist, download=False)


def test_mnist_loads_without_importing_torchvision(fake_mnist):
    """torchvision's import costs more than a second in each search worker; IDX files are read directly."""
    code = ("import sys; from training import load_splits; "
            f"s = load_splits('mnist', {str(fake_mnist)!r}, val_size=30, download=False); "
            "assert s.train_x.shape == (70, 1, 28, 28), s.train_x.shape; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_validation_size_out_of_range(fake_mnist):
    with pytest.raises(DataError, match="validation size 100 must be in"):
        load_splits("mnist", fake_mnist, val_size=100, download=False)


def test_genome_must_match_the_dataset():
    from training import DATASETS

    cifar = Genome.from_string("i3x32x32n10-conv_c8_k3-gap-conv_c10_k1_oc")
    with pytest.raises(DataError, match=r"genome input 3x32x32 with 10 classes does not match mnist \(1x28x28"):
        check_genome_fits(cifar, DATASETS["mnist"].spec, "mnist")


@pytest.mark.slow
def test_real_mnist_loads(mnist_dir):
    splits = load_splits("mnist", mnist_dir)
    assert len(splits.train_y) == 55_000 and len(splits.val_y) == 5_000 and len(splits.test_y) == 10_000
    assert abs(splits.mean[0] - 0.1307) < 0.002 and abs(splits.std[0] - 0.3081) < 0.002
    assert torch.bincount(splits.test_y).tolist()[:3] == [980, 1135, 1032]  # official test label counts


@pytest.mark.slow
def test_real_mnist_reads_as_torchvision_reads_it(mnist_dir):
    import torchvision

    splits = load_splits("mnist", mnist_dir, val_size=0)
    train, test = (torchvision.datasets.MNIST(str(mnist_dir), train=t, download=False) for t in (True, False))
    assert torch.equal(splits.test_x[:, 0], test.data) and torch.equal(splits.test_y, test.targets)
    order = torch.randperm(60_000, generator=torch.Generator().manual_seed(0))  # load_splits' split order
    assert torch.equal(splits.train_x[:, 0], train.data[order]) and torch.equal(splits.train_y, train.targets[order])
