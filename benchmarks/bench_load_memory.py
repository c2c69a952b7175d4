"""Peak memory of loading the user's own .npz (``training.load_splits``) against the uint8 data it yields and against
the prediction the memory check uses (``training.userdata.npz_peak_bytes``). Each case runs in a fresh process; the
peak is VmHWM after /proc/self/clear_refs reset it, minus VmRSS before the load (Linux only).

    python benchmarks/bench_load_memory.py [--images 20000] [--side 64]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
_MEASURE = r"""
import sys, numpy as np
from pathlib import Path
import training.data
from training.userdata import _npz_members, _size, npz_peak_bytes
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
path, size = Path(sys.argv[1]), (sys.argv[2] if sys.argv[2] != "-" else None)
np.savez(path.with_name("warm.npz"), x_train=np.zeros((4, 8, 8), np.uint8), y_train=[0, 1, 0, 1])
training.data.load_splits(str(path.with_name("warm.npz")), device="cpu", image_size=size)  # imports first
open("/proc/self/clear_refs", "w").write("5")
before = rss("VmRSS:")
s = training.data.load_splits(str(path), device="cpu", image_size=size)
data = s.train_x.numel() + s.val_x.numel() + s.test_x.numel()
print(data, rss("VmHWM:") - before, npz_peak_bytes(_npz_members(path), _size(size)))
"""


def measure(path: Path, size: str | None = None) -> tuple[int, int, int]:
    """(uint8 bytes loaded, peak bytes above the baseline, the predicted peak) of loading ``path`` in a fresh
    process."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(path), size or "-"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    data, peak, predicted = map(int, out.stdout.split())
    return data, peak, predicted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--side", type=int, default=64)
    args = parser.parse_args()
    gen = np.random.default_rng(0)
    n, side = args.images, args.side
    with tempfile.TemporaryDirectory() as tmp:
        cases = []
        x = gen.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
        np.savez(Path(tmp) / "rgb_uint8.npz", x_train=x, y_train=np.arange(n) % 10)
        cases.append(("uint8 NHWC RGB", "rgb_uint8.npz", None))
        quarter = n // 4
        np.savez(Path(tmp) / "rgb_float.npz", x_train=x[:quarter].astype(np.float32) / 255,
                 y_train=np.arange(quarter) % 10)
        cases.append(("float32 NHWC RGB, a quarter of the images", "rgb_float.npz", None))
        np.savez(Path(tmp) / "grey_test.npz", x_train=x[..., 0], y_train=np.arange(n) % 10, x_test=x[:n // 5, ..., 0],
                 y_test=np.arange(n // 5) % 10)
        cases.append(("uint8 NHW grey with a test split", "grey_test.npz", None))
        cases.append(("uint8 NHW grey, --image-size 32x32", "grey_test.npz", "32x32"))
        del x
        print("| case | file MB | uint8 data MB | peak MB | peak / data | predicted MB | peak / predicted |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, file, size in cases:
            path = Path(tmp) / file
            data, peak, predicted = measure(path, size)
            print(f"| {name} | {path.stat().st_size / 1e6:.0f} | {data / 1e6:.0f} | {peak / 1e6:.0f} | "
                  f"{peak / data:.2f}x | {predicted / 1e6:.0f} | {peak / predicted:.2f} |")


if __name__ == "__main__":
    main()
