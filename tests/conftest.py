import os
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def interruptible() -> None:
    """``preexec_fn`` for a command a test will Ctrl-C: SIGINT at its default, so that Python installs its handler
    even when the test runner itself was started with SIGINT ignored (a background job of a non-interactive shell)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
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


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 3 MB tmpfs at tmp_path / 'disk' (root only; skipped elsewhere): a disk that can be filled."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)],
                                           capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill_disk(folder: Path, leave: int = 0) -> None:
    """Fill the file system of ``folder`` (a ``small_disk``) to the last byte, then free about ``leave`` bytes."""
    filler = folder / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)
    if leave:
        os.truncate(filler, max(filler.stat().st_size - leave, 0))
