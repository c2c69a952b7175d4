"""Equal results across memory layouts: the same design, recipe and seeds trained in NCHW and in channels_last.

    python benchmarks/bench_layout.py --data-dir ../shared/data --layout channels_last --seeds 3 4 5 &
    python benchmarks/bench_layout.py --data-dir ../shared/data --layout nchw --seeds 3 4 5
    python benchmarks/bench_layout.py --table

Each run trains ``--genome`` on the full training set for ``--epochs`` with one thread (a search worker's
setting) and the default TrainConfig, evaluating the test set at the end of every epoch, and writes one JSON
per finished run to ``--out`` (a stopped benchmark resumes where it was). ``--table`` pairs the runs by seed.
The two layouts compute the same function with a different float summation order, so a seed's accuracy moves
a little; the question is whether the mean over seeds moves more than the seeds scatter.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAYOUTS = ("nchw", "channels_last")


def _table(out: Path) -> str:
    runs = {(r["layout"], r["seed"]): r for r in (json.loads(p.read_text()) for p in sorted(out.glob("*.json")))}
    seeds = sorted({seed for _, seed in runs})
    lines = ["| seed | " + " | ".join(LAYOUTS) + " |", "| ---: | " + " | ".join("---:" for _ in LAYOUTS) + " |"]
    for seed in seeds:
        lines.append(f"| {seed} | " + " | ".join(f"{runs[(layout, seed)]['test_acc'][-1]:.2f}"
                                                 if (layout, seed) in runs else "" for layout in LAYOUTS) + " |")
    for layout in LAYOUTS:
        accs = [runs[(layout, seed)]["test_acc"][-1] for seed in seeds if (layout, seed) in runs]
        if len(accs) >= 2:
            lines.append(f"{layout}: {statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f} % "
                         f"(min {min(accs):.2f}) over {len(accs)} seeds")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--genome", default=str(ROOT / "zoo" / "mnist_5k_search.json"))
    parser.add_argument("--layout", choices=LAYOUTS, default="channels_last")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "layout")
    parser.add_argument("--table", action="store_true", help="only print the table of the runs in --out")
    args = parser.parse_args()
    if args.table:
        print(_table(args.out))
        return
    import torch

    from blocks import load_genome
    from training import TrainConfig, load_splits, train

    torch.set_num_threads(1)
    genome = load_genome(args.genome)
    full = load_splits("mnist", args.data_dir, device=torch.device("cpu"), val_size=0)
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        path = args.out / f"{Path(args.genome).stem}-{args.layout}-seed{seed}-e{args.epochs}.json"
        if path.is_file():
            continue
        config = TrainConfig(device="cpu", epochs=args.epochs, seed=seed, evaluate_test=True,
                             channels_last=args.layout == "channels_last")
        result = train(genome, full, config, progress=False)
        run = {"genome": genome.to_string(), "layout": args.layout, "seed": seed, "epochs": args.epochs,
               "threads": 1, "status": result.status, "seconds": round(result.seconds, 1),
               "test_acc": [m.test_acc for m in result.epochs]}
        path.write_text(json.dumps(run, indent=1))
        print(f"{args.layout} seed {seed}: test {run['test_acc'][-1]:.2f}% in {run['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
