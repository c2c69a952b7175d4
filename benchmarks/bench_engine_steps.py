"""Engine steps on CPU: each candidate speed-up as a ratio against the classic pipeline, in one run.

    python benchmarks/bench_engine_steps.py --data-dir ../shared/data --batches 200

Training (images/s over ``--batches`` timed steps after ``--warmup`` untimed ones, same model, SGD):
the classic torchvision + DataLoader pipeline (``bench_pipeline.classic``; the baseline with stock
``torch.nn`` layers, as in a notebook, then with BudgetNAS's dropout and max pool), then the engine at batch
128 (the default; its layout is ``training.engine.training_layout``: channels_last with one thread, NCHW
with more), 256 and 512, in NCHW and in channels_last explicitly, and with ``torch.compile`` in the modes of
``--compile-modes``, and last the classic pipeline again, now under the engine's allocator setting
(``keep_freed_memory``, which the first engine run turned on for the process). GFLOP/s counts a training
step as 3 x the forward MACs x 2. Validation (images/s over the 5,000-image validation split,
``--eval-repeats`` passes): the engine's ``evaluate`` at batch 2,000 (its former default) and at the
device's default batch (``no_grad``),
under ``inference_mode``, and with BatchNorm folded into the convolutions
(``torch.fx.experimental.optimization.fuse``), each checked to give the same predictions.
Run it alone on the machine: the ratios are only comparable within one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.bench_pipeline import classic, engine  # noqa: E402
from blocks import build_model, load_genome  # noqa: E402
from budgets import totals  # noqa: E402
from training import TrainConfig, Trainer, load_splits  # noqa: E402
from training.engine import evaluate  # noqa: E402


def channels_last(trainer: Trainer) -> None:
    """Switch a CPU trainer to channels_last (the engine picks it only in a single-threaded process)."""
    trainer.model.to(memory_format=torch.channels_last)
    trainer.normalize.memory_format = torch.channels_last


def eval_rate(model: Callable, splits, repeats: int, inference: bool, batch_size: int | None = None) -> float:
    """Images/s of ``evaluate`` on the validation split."""
    context = torch.inference_mode if inference else torch.no_grad
    with context():
        evaluate(model, splits.val_x, splits.val_y, splits.mean, splits.std, batch_size=batch_size)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            evaluate(model, splits.val_x, splits.val_y, splits.mean, splits.std, batch_size=batch_size)
    return repeats * len(splits.val_y) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--genome", default=str(ROOT / "zoo" / "mnist_8k_gap.json"))
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--loader-workers", type=int, default=2, help="DataLoader workers of the classic pipeline")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--compile-modes", nargs="*", default=["default", "max-autotune-no-cudagraphs"])
    parser.add_argument("--eval-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; a search worker has 1)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    genome = load_genome(args.genome)
    macs = totals(genome).macs
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {genome.to_string()}, "
          f"{totals(genome).params:,} params, {macs:,} MACs/img")
    splits = load_splits("mnist", args.data_dir, device=device)
    config = TrainConfig(device="cpu", epochs=5)  # enough steps for --batches at any batch size
    base = classic(args.data_dir, genome, device, args.batches, args.warmup, args.loader_workers)
    ours = classic(args.data_dir, genome, device, args.batches, args.warmup, args.loader_workers, stock=False)

    def row(name: str, rate: float) -> None:
        print(f"| {name} | {rate:,.0f} | {rate * macs * 6 / 1e9:.1f} | {rate / base:.2f}x |", flush=True)

    print("| training | images/s | GFLOP/s | vs classic |\n| --- | ---: | ---: | ---: |")
    row("classic (DataLoader, batch 128, stock torch.nn layers)", base)
    row("classic, with BudgetNAS's dropout and max pool", ours)
    for size in args.batch_sizes:
        row(f"engine, batch {size}", engine(splits, genome, replace(config, batch_size=size), args.batches,
                                                args.warmup))
    row("engine, batch 128, NCHW (channels_last=False)", engine(splits, genome, replace(config, channels_last=False),
                                                                 args.batches, args.warmup))
    row("engine, batch 128, channels_last forced", engine(splits, genome, config, args.batches, args.warmup,
                                                             setup=channels_last))
    for mode in args.compile_modes:
        try:
            rate = engine(splits, genome, config, args.batches, args.warmup,
                              setup=lambda t, mode=mode: setattr(t, "forward", torch.compile(t.model, mode=mode)))
        except Exception as e:  # a compiler missing on this machine is a result, not a crash
            print(f"| engine, torch.compile {mode} | failed: {type(e).__name__}: {str(e).splitlines()[0][:120]} | | |")
            continue
        row(f"engine, torch.compile {mode}", rate)
    # the engine's allocator setting (training.engine.keep_freed_memory) now holds for the whole process
    row("classic again (BudgetNAS's layers), with the engine's allocator setting",
        classic(args.data_dir, genome, device, args.batches, args.warmup, args.loader_workers, stock=False))

    from torch.fx.experimental.optimization import fuse

    model = build_model(genome).eval()
    torch.manual_seed(0)
    for m in model.modules():  # non-trivial BN statistics, so folding is really checked
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    folded = fuse(model)
    x = splits.val_x[:256].float().div(255)
    same = bool((model(x).argmax(1) == folded(x).argmax(1)).all())
    variants = [("evaluate, batch 2,000 (before)", model, False, 2000),
                ("evaluate (no_grad, device default batch: today)", model, False, None),
                ("evaluate under inference_mode", model, True, None),
                ("BN folded (fx fuse), no_grad", folded, False, None),
                ("BN folded + inference_mode", folded, True, None)]
    print(f"\nBN folding gives the same predictions on 256 images: {same}")
    print("| validation (5,000 images) | images/s | vs today |\n| --- | ---: | ---: |")
    today = None
    for name, net, inference, batch_size in variants:
        rate = eval_rate(net, splits, args.eval_repeats, inference, batch_size)
        today = today or rate
        print(f"| {name} | {rate:,.0f} | {rate / today:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
