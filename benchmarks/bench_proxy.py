"""Proxy validity: how well cheap training runs rank designs against their 15-epoch validation accuracy.

    python benchmarks/bench_proxy.py --data-dir ../shared/data --out benchmarks/results/proxy [--shard 0/2]
    python benchmarks/bench_proxy.py --out benchmarks/results/proxy --table      # Spearman / Kendall (scipy: [bench])

Samples ``--designs`` genomes from the search space (random sampler, fixed seed, budgets spread over
3k-8k params), then trains each at every proxy setting and at the full 15 epochs. One JSON per finished
run, so a stopped benchmark resumes where it was. Proxies:
  - ``full15@eK``: the validation accuracy at epoch K of the 15-epoch schedule (what successive halving
    over epochs sees at its rungs; free once the full run exists);
  - ``eN``: a separate N-epoch run (its own one-cycle schedule) on all 55,000 training images;
  - ``eN-sub10k``: the same on a fixed 10,000-image subset.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.resumable import add_arguments, pending, save  # noqa: E402

# in run order: the 15-epoch runs first (they are the reference, and the rung proxies come free with them)
PROXIES = {"full15": (15, None), "e1-sub10k": (1, 10000), "e3-sub10k": (3, 10000), "e1": (1, None), "e3": (3, None)}
RUNGS = (1, 3, 9)


def designs(n: int, out: Path, seed: int = 0) -> list[str]:
    """The benchmark's designs, sampled once and kept in ``out/designs.json`` so a resumed run (even after a
    change to the search space) trains the same genomes."""
    saved = out / "designs.json"
    if saved.exists():
        return json.loads(saved.read_text())[:n]
    from blocks import InputSpec
    from budgets import Limits
    from search.space import random_designs

    budgets = [3000 + (5000 * i) // max(n - 1, 1) for i in range(n)]  # 3,000 .. 8,000
    genomes = [g.to_string() for g in random_designs(InputSpec(1, 28, 28, 10), [Limits(max_params=b) for b in budgets],
                                                     seed)]
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(genomes, indent=1))
    return genomes


def _table(out: Path) -> str:
    try:
        from scipy.stats import kendalltau, spearmanr
    except ImportError:
        raise SystemExit("--table needs scipy: pip install -e '.[bench]'") from None

    runs = [json.loads(p.read_text()) for p in sorted(out.glob("d*__*.json"))]
    full = {r["design"]: r for r in runs if r["proxy"] == "full15"}
    lines = ["| proxy | designs | Spearman | Kendall | CPU s per design (mean) |", "| --- | ---: | ---: | ---: | ---: |"]
    candidates = {**{f"full15@e{k}": ("full15", k) for k in RUNGS}, **{p: (p, None) for p in PROXIES if p != "full15"}}
    for name, (proxy, epoch) in candidates.items():
        pairs, seconds = [], []
        for r in runs:
            if r["proxy"] != proxy or r["design"] not in full:
                continue
            value = r["val"][epoch - 1] if epoch else r["val"][-1]
            pairs.append((value, full[r["design"]]["val"][-1]))
            seconds.append(r["seconds"] * (epoch / 15 if epoch else 1))
        if len(pairs) >= 3:
            x, y = zip(*pairs)
            lines.append(f"| {name} | {len(pairs)} | {spearmanr(x, y)[0]:.2f} | {kendalltau(x, y)[0]:.2f} | "
                         f"{sum(seconds) / len(seconds):.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, "benchmarks/results/proxy")
    parser.add_argument("--designs", type=int, default=12)
    parser.add_argument("--proxies", nargs="+", choices=list(PROXIES), default=list(PROXIES),
                        help="run only these settings (e.g. the cheap ones in a second process)")
    args = parser.parse_args()
    out = Path(args.out)
    if args.table:
        print(_table(out))
        return
    import torch

    from blocks import Genome
    from training import TrainConfig, load_splits, train

    torch.set_num_threads(1)
    splits = load_splits("mnist", args.data_dir)
    jobs = ((f"d{i:02d}__{p}", (i, g, p)) for p in args.proxies for i, g in enumerate(designs(args.designs, out)))
    for path, (i, genome, proxy) in pending(jobs, out, args.shard):
        epochs, subset = PROXIES[proxy]
        start = time.time()
        result = train(Genome.from_string(genome), splits.subset(subset, seed=0), TrainConfig(epochs=epochs,
                       device="cpu"), progress=False)
        run = {"design": i, "genome": genome, "params": result.params, "proxy": proxy, "epochs": epochs,
               "images": subset or len(splits.train_y), "val": [m.val_acc for m in result.epochs],
               "seconds": round(time.time() - start, 1), "status": result.status, "date": time.strftime("%Y-%m-%d")}
        save(path, run)
        print(f"design {i} ({result.params:,} params) {proxy}: val {run['val'][-1]:.2f} ({run['seconds']:.0f} s)",
              flush=True)


if __name__ == "__main__":
    main()
