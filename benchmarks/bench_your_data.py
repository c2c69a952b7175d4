"""Searches on data that is not MNIST's 28x28 set, end to end through the command line.

    python benchmarks/bench_your_data.py digits --out /tmp/yd -- --budget 2000 --target 98 --seeds 5
    python benchmarks/bench_your_data.py coloured-mnist --data-dir ../shared/data --out /tmp/yd -- \\
        --budget 8000 --max-ram 32768 --augment cropflip --trials 20

``digits``: scikit-learn's 1,797 real handwritten 8x8 digits (pixels 0-16 scaled to 0-255), written as a .npz
with no test split, so the tool carves a stratified 20% test set; scikit-learn's ``SVC()`` is trained on the
same training images (validation included) and scored on the same test images, as the classic baseline.
``coloured-mnist``: real MNIST digits (the first ``--train`` / ``--test`` of each split, only ``--digits`` if given)
composited on a random background colour with a random stroke colour at least 0.4 apart in RGB, resized to
``--size`` (default 32), as an RGB .npz with a test split: the RGB case that can be built from data reachable here.

    python benchmarks/bench_your_data.py coloured-mnist --digits 0,1,4,7 --size 24 --train 4000 --test 1000 \
        --out /tmp/yd -- --budget 8000 --target 99      # the easy case of issue 36
The search's finalists (chosen on validation) are printed with their test accuracy over the seeds: mean, std,
min, and a one-sided 95% lower bound (Student's t).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reports.verdict import lower_bound  # noqa: E402  (the one verdict rule's bound)

import numpy as np  # noqa: E402


def write_digits(path: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.savez(path, x_train=np.rint(digits.images * 255 / 16).astype(np.uint8), y_train=digits.target)


def write_coloured_mnist(path: Path, data_dir: str, n_train: int, n_test: int, size: int, seed: int = 0,
                         digits: list[int] | None = None) -> None:
    import torch
    from torchvision.transforms.v2.functional import resize

    from training.data import _idx_split

    gen = np.random.default_rng(seed)
    arrays = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x, y = _idx_split(Path(data_dir) / "MNIST" / "raw", prefix)
        if digits:  # only these digits, labelled 0..len(digits)-1 in that order
            keep = torch.isin(y, torch.tensor(digits))
            x, y = x[keep], torch.tensor([digits.index(int(d)) for d in y[keep]])
        ink = x[:n].float().div(255).numpy()  # (n, 1, 28, 28) stroke coverage
        background = gen.random((n, 3, 1, 1))
        stroke = gen.random((n, 3, 1, 1))
        close = np.linalg.norm((stroke - background).reshape(n, 3), axis=1) < 0.4
        while close.any():  # redraw strokes too close to their background
            stroke[close] = gen.random((int(close.sum()), 3, 1, 1))
            close = np.linalg.norm((stroke - background).reshape(n, 3), axis=1) < 0.4
        rgb = torch.from_numpy(np.rint(255 * (background * (1 - ink) + stroke * ink)).astype(np.uint8))
        arrays[f"x_{split}"] = resize(rgb, [size, size], antialias=True).permute(0, 2, 3, 1).numpy()  # NHWC
        arrays[f"y_{split}"] = y[:n].numpy()
    if digits:
        arrays["class_names"] = np.array([str(d) for d in digits])
    np.savez(path, **arrays)


def svc_baseline(dataset: Path) -> float:
    from sklearn.svm import SVC

    from training import load_splits

    splits = load_splits(str(dataset), val_size=0)
    flat = lambda x: x.reshape(len(x), -1).float().numpy() / 255  # noqa: E731
    model = SVC().fit(flat(splits.train_x), splits.train_y.numpy())
    return 100.0 * float((model.predict(flat(splits.test_x)) == splits.test_y.numpy()).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=["digits", "coloured-mnist"])
    parser.add_argument("--out", default="runs/your-data")
    parser.add_argument("--data-dir", default="../shared/data", help="MNIST for coloured-mnist")
    parser.add_argument("--train", type=int, default=12000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--digits", help="coloured-mnist: only these digits as the classes, e.g. 0,1,4,7")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    flags = argv[split + 1:]  # run_search.py's own flags
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    digits = [int(d) for d in args.digits.split(",")] if args.digits else None
    name = f"coloured_mnist_{args.size}" + (f"_digits{''.join(map(str, digits))}_{args.train}" if digits else "")
    dataset = out / ("digits.npz" if args.case == "digits" else f"{name}.npz")
    if not dataset.is_file():
        if args.case == "digits":
            write_digits(dataset)
        else:
            write_coloured_mnist(dataset, args.data_dir, args.train, args.test, args.size, digits=digits)
    command = [sys.executable, str(ROOT / "run_search.py"), "--dataset", str(dataset), "--out", str(out), *flags]
    print("$", " ".join(command[1:]), flush=True)
    started = time.monotonic()
    code = subprocess.call(command)
    print(f"exit code {code} after {time.monotonic() - started:.0f} s")
    study = next((flags[i + 1] for i, a in enumerate(flags) if a == "--study"), None)
    run_dirs = [out / study] if study else sorted(p.parent for p in out.glob("*/finals.json"))
    for run_dir in run_dirs:
        finals = json.loads((run_dir / "finals.json").read_text()) if (run_dir / "finals.json").is_file() else {}
        board = {int(r.split(",")[1]): r for r in (run_dir / "leaderboard.csv").read_text().splitlines()[1:]}
        for trial, final in finals.items():
            accs = [run[-1] for run in final["per_epoch_test_acc"] if run and run[-1] is not None]
            params = board[int(trial)].split(",")[4]
            print(f"{run_dir.name} trial {trial}: {params} params, test {statistics.fmean(accs):.2f} ± "
                  f"{statistics.stdev(accs) if len(accs) > 1 else 0:.2f}% (min {min(accs):.2f}, 95% lower bound "
                  f"{lower_bound(accs):.2f}) over {len(accs)} seeds")
    if args.case == "digits":
        print(f"SVC() on the same split: {svc_baseline(dataset):.2f}% test")


if __name__ == "__main__":
    main()
