import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ZOO = sorted((ROOT / "zoo").glob("*.json"))


def real_data_dir() -> Path | None:
    """Real MNIST for end-to-end checks: $BUDGETNAS_DATA, else ../shared/data beside the checkout."""
    for candidate in (os.environ.get("BUDGETNAS_DATA"), ROOT.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
            return Path(candidate)
    return None


@pytest.fixture
def mnist_dir() -> Path:
    path = real_data_dir()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("real MNIST not found: set BUDGETNAS_DATA (CI must provide it)")
        pytest.skip("real MNIST not found (set BUDGETNAS_DATA)")
    return path
