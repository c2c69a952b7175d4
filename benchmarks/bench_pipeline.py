"""Training throughput: the classic course-notebook pipeline vs the BudgetNAS engine, same model, one run.

    python benchmarks/bench_pipeline.py --data-dir ../shared/data --batches 200

(a) classic: ``torchvision.datasets.MNIST`` + ``RandomRotation(7)``, ``ToTensor``, ``Normalize``, a
    ``DataLoader`` with workers, batch 128, SGD, the model with stock ``nn.Dropout`` / ``nn.MaxPool2d``;
    (b) the engine: uint8 data resident on the device, batched on-device rotation, same batch size,
    optimizer and model (zoo/mnist_8k_gap.json).
Both train for ``--batches`` steps after ``--warmup`` untimed steps. Prints images/s for each, and
the ratio engine/classic as the last line. Also times one full epoch of the engine (``--full-epoch``).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from blocks import build_model, load_genome  # noqa: E402
from training import TrainConfig, Trainer, load_splits, resolve_device  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def stock_layers(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with BudgetNAS's faster CPU layers (dropout, max pool) swapped for stock ``torch.nn`` ones."""
    from blocks.library import Dropout, MaxPool2d

    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, Dropout):
                setattr(module, name, torch.nn.Dropout(child.p))
            elif isinstance(child, MaxPool2d):
                setattr(module, name, torch.nn.MaxPool2d(child.kernel_size, child.stride, child.padding,
                                                         child.dilation, ceil_mode=child.ceil_mode))
    return model


def classic(data_dir: str, genome, device: torch.device, batches: int, warmup: int, workers: int,
            stock: bool = True) -> float:
    """Images/s of the notebook pipeline; ``stock``: with stock ``torch.nn`` layers, as a notebook has them."""
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.RandomRotation((-7.0, 7.0), fill=(0,)), transforms.ToTensor(),
                             transforms.Normalize((0.1307,), (0.3081,))])
    ds = datasets.MNIST(data_dir, train=True, download=True, transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=128, shuffle=True, num_workers=workers,
                                         pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    torch.manual_seed(0)
    model = build_model(genome)
    model = (stock_layers(model) if stock else model).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    seen, start = 0, None
    it = iter(loader)
    for step in range(warmup + batches):
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= warmup:
            seen += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def engine_run(splits, genome, config: TrainConfig, batches: int, warmup: int,
               setup: Callable[[Trainer], None] | None = None) -> tuple[float, float]:
    """(images/s, page faults per step) of the engine's timed training steps; ``setup`` changes the trainer
    first (compile, memory format). ``config.epochs`` must hold ``warmup + batches`` steps.
    """
    import resource

    trainer = Trainer(genome, splits, replace(config, max_steps=warmup + batches))
    if setup is not None:
        setup(trainer)
    trainer.total_steps = warmup  # untimed warm-up (and compilation) of this same trainer
    trainer.train_epoch()
    trainer.total_steps = warmup + batches
    if splits.device.type == "cuda":
        torch.cuda.synchronize()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    while trainer.steps_done < trainer.total_steps:
        trainer.train_epoch()
    if splits.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return batches * config.batch_size / seconds, faults / batches


def engine(splits, genome, config: TrainConfig, batches: int, warmup: int,
           setup: Callable[[Trainer], None] | None = None) -> float:
    """Images/s of the engine's training steps (``engine_run``)."""
    return engine_run(splits, genome, config, batches, warmup, setup)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--genome", default=str(ROOT / "zoo" / "mnist_8k_gap.json"))
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--full-epoch", action="store_true", help="also time one full engine epoch")
    args = parser.parse_args()
    device = resolve_device(args.device)
    genome = load_genome(args.genome)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{sum(p.numel() for p in build_model(genome).parameters()):,} params")
    config = TrainConfig(batch_size=128, lr=0.05, compile=args.compile, device=args.device)
    splits = load_splits("mnist", args.data_dir, device=device)
    ours = engine(splits, genome, config, args.batches, args.warmup)
    print(f"engine:  {ours:,.0f} images/s")
    theirs = classic(args.data_dir, genome, device, args.batches, args.warmup, args.workers)
    print(f"classic: {theirs:,.0f} images/s")
    if args.full_epoch:
        trainer = Trainer(genome, splits, config)
        start = time.perf_counter()
        trainer.train_epoch()
        if device.type == "cuda":
            torch.cuda.synchronize()
        print(f"engine full epoch ({len(splits.train_y):,} images): {time.perf_counter() - start:.2f} s")
    print(f"ratio engine/classic: {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()
