"""The training engine: data resident on the device, batched augmentation, one config dataclass.

    result = train(genome, splits, TrainConfig(epochs=15), on_epoch=callback)

``on_epoch(metrics)`` is called after every epoch; returning a string (e.g. ``"pruned"``) stops the
run with that status. A non-finite loss ends the run as ``diverged``, CUDA out-of-memory as ``oom``;
neither raises.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from blocks import Genome, build_model
from training.augment import augment_batch
from training.data import Splits, check_genome_fits

__all__ = ["AUGMENTATIONS", "METRICS", "EpochMetrics", "TrainConfig", "TrainResult", "Trainer", "augmentation", "evaluate", "predict",
           "evaluation_batch", "keep_freed_memory", "make_optimizer", "make_scheduler", "parameter_groups",
           "progress_enabled", "resolve_device", "train", "training_layout"]


AUGMENTATIONS = ("auto", "none", "affine", "crop", "cropflip")


@dataclass
class TrainConfig:
    """Every training knob, with units. Recorded with every result (``asdict``)."""

    epochs: int = 15
    batch_size: int = 128  # images per optimizer step
    optimizer: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.1  # peak learning rate (onecycle) or initial one (step); measured in BENCHMARKS.md
    momentum: float = 0.9  # sgd only
    nesterov: bool = True  # sgd only
    weight_decay: float = 1e-4  # L2 for sgd/adam, decoupled for adamw; conv / linear weights only
    decay_norm_bias: bool = False  # also decay BatchNorm / PReLU weights and biases (off: nanoGPT-style groups)
    schedule: str = "onecycle"  # onecycle | step
    warmup_frac: float = 0.25  # onecycle: share of steps spent rising to the peak
    step_epochs: int = 5  # step: decay every this many epochs
    step_gamma: float = 0.1  # step: multiply the LR by this at each decay
    label_smoothing: float = 0.0
    ema_decay: float = 0.0  # evaluate (and keep) an exponential moving average of the weights and BN statistics; 0 = off
    augment: str = "auto"  # auto | none | affine | crop | cropflip ; ``augmentation()`` says what auto means
    rotation_deg: float = 7.0  # affine: uniform rotation in [-deg, deg]
    translate_px: float = 0.0  # affine: uniform shift in [-px, px] per axis
    scale_frac: float = 0.0  # affine: zoom by a uniform factor in [1 - frac, 1 + frac]
    crop_pad_px: int | None = None  # crop(flip): integer shift in [-px, px], zero fill; None = 1/8 of the side (32 -> 4)
    seed: int = 0  # model init, batch order, augmentation, dropout
    device: str = "auto"  # auto | cuda | mps | cpu ; auto = cuda, then mps, then cpu
    amp: bool = True  # CUDA only: bf16 autocast
    channels_last: bool = True  # NHWC activations where they pay: CUDA, and CPU with one thread (``training_layout``)
    compile: bool = False  # torch.compile the model (CUDA; pays off only for long runs)
    eval_batch_size: int | None = None  # images per evaluation batch; None = the device's default (``evaluate``)
    evaluate_test: bool = False  # also evaluate the test set every epoch (final evaluation only)
    max_steps: int | None = None  # stop after this many optimizer steps (benchmarks, smoke tests)
    metric: str = "accuracy"  # what val_acc / test_acc measure: accuracy, or balanced (the mean of the classes' recalls)

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1, "batch_size": self.batch_size >= 2, "lr": self.lr > 0,
            "optimizer": self.optimizer in ("sgd", "adam", "adamw"), "schedule": self.schedule in ("onecycle", "step"),
            "augment": self.augment in AUGMENTATIONS,
            "device": self.device in ("auto", "cuda", "mps", "cpu"),
            "label_smoothing": 0 <= self.label_smoothing < 1, "ema_decay": 0 <= self.ema_decay < 1,
            "weight_decay": self.weight_decay >= 0, "metric": self.metric in METRICS,
            "warmup_frac": 0 < self.warmup_frac < 1, "scale_frac": 0 <= self.scale_frac < 1,
            "eval_batch_size": self.eval_batch_size is None or self.eval_batch_size >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid training config field '{bad[0]}': {getattr(self, bad[0])!r}")


@dataclass
class EpochMetrics:
    epoch: int  # 1-based
    train_loss: float
    train_acc: float  # percent, on augmented batches as seen during the epoch
    val_loss: float | None
    val_acc: float | None  # percent
    test_loss: float | None = None
    test_acc: float | None = None
    seconds: float = 0.0  # wall time of the epoch (training + evaluation)
    lr: float = 0.0  # learning rate at the end of the epoch
    eval_seconds: float = 0.0  # of ``seconds``, the validation / test evaluation


@dataclass
class TrainResult:
    status: str  # complete | pruned | diverged | oom | <whatever on_epoch returned>
    epochs: list[EpochMetrics]
    seconds: float
    device: str
    seed: int
    params: int
    config: dict
    model: nn.Module | None = field(default=None, repr=False)
    setup_seconds: float = 0.0  # model build, optimizer and schedule, before the first step

    @property
    def best_val_acc(self) -> float | None:
        accs = [m.val_acc for m in self.epochs if m.val_acc is not None]
        return max(accs) if accs else None

    @property
    def best_epoch(self) -> int | None:
        best = self.best_val_acc
        return next((m.epoch for m in self.epochs if m.val_acc == best), None) if best is not None else None


def parameter_groups(model: nn.Module, weight_decay: float, decay_norm_bias: bool = False) -> list[dict]:
    """Optimizer groups: weight decay on conv / linear weights (2+ dims) only, unless ``decay_norm_bias``.

    BatchNorm scales and shifts, biases and PReLU slopes (1-d or scalar) get none: on a 4k-param net they
    are a large share of the parameters, and decaying them only fights the normalisation.
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 or decay_norm_bias else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``config`` names, over ``parameter_groups``."""
    params = parameter_groups(model, config.weight_decay, config.decay_norm_bias)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr)
    return torch.optim.AdamW(params, lr=config.lr)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule ``config`` names, stepped once per optimizer step."""
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                   total_steps=max(total_steps, math.ceil(3 / config.warmup_frac)),
                                                   pct_start=config.warmup_frac, anneal_strategy="cos",
                                                   cycle_momentum=config.optimizer == "sgd")
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_epochs * steps_per_epoch,
                                           gamma=config.step_gamma)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda, then mps, then cpu; an unavailable explicit choice raises ValueError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("--device mps: no MPS device is available")
    return torch.device(name)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
_allocator_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse instead of returning it to the OS; once per process.

    By default glibc unmaps large freed blocks (``mmap`` threshold, heap trimming), so every training step
    faults its activation maps back in page by page: 1,600-7,000 page faults per step of a 7k-param net,
    and two processes faulting side by side slowed each other down (BENCHMARKS.md, "page faults").
    With a 1 GiB trim threshold and a 32 MiB mmap threshold (glibc's maximum) a step faults none; the
    process keeps its peak working set. Returns whether the setting took effect (False off glibc).
    """
    global _allocator_kept
    if _allocator_kept is None:
        _allocator_kept = False
        if sys.platform.startswith("linux"):
            import ctypes
            try:
                mallopt = ctypes.CDLL("libc.so.6").mallopt
            except (OSError, AttributeError):
                return False
            # both: a trim threshold alone turns glibc's dynamic mmap threshold off and makes it worse
            _allocator_kept = bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    return _allocator_kept


def training_layout(device: torch.device) -> torch.memory_format:
    """The activations' memory format that trains fastest on ``device`` with this process's thread count.

    channels_last on CUDA, and on a CPU process with one thread (a search worker): oneDNN's NHWC
    convolutions need no reorders, 1.1-1.4x per step. With more CPU threads NCHW wins, 1.1-1.9x: PyTorch's
    channels_last batch norm gets slower, not faster, with a second thread (BENCHMARKS.md).
    """
    if device.type == "cpu" and torch.get_num_threads() > 1:
        return torch.contiguous_format
    return torch.channels_last


class _Normalize:
    """Per-channel ``(x - mean) / std`` of a float batch in [0, 1], in the training memory layout."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device,
                 memory_format: torch.memory_format) -> None:
        shape = (1, len(mean), 1, 1)
        self.mean = torch.tensor(list(mean), device=device).view(shape)
        self.std = torch.tensor(list(std), device=device).view(shape)
        self.memory_format = memory_format

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)


def augmentation(config: TrainConfig, splits: Splits) -> tuple[str, dict]:
    """The augmentation a run uses: its mode and ``augment_batch``'s arguments.

    ``auto``: the built-in datasets as always (affine rotation for one channel, MNIST-like; crop and flip for
    CIFAR-10); the user's own data gets ``none``: no transformation is known to keep its labels (a flip changes
    text and digits, a rotation or a shift moves a spectrogram's axes), and on scikit-learn's 8x8 digits a shift
    cost accuracy (BENCHMARKS.md). ``crop`` is a shift by up to 1/8 of the side with no flip.
    """
    mode = config.augment
    if mode == "auto":
        mode = "none" if splits.user_data else "affine" if splits.spec.channels == 1 else "cropflip"
    pad = config.crop_pad_px if config.crop_pad_px is not None else max(1, round(min(splits.spec.height,
                                                                                     splits.spec.width) / 8))
    return mode, {
        "none": {},
        "affine": {"rotation_deg": config.rotation_deg, "translate_px": config.translate_px,
                   "scale_frac": config.scale_frac},
        "crop": {"crop_pad_px": pad},
        "cropflip": {"crop_pad_px": pad, "hflip": True},
    }[mode]


class Trainer:
    """Owns the model, optimizer, schedule and RNG of one run over resident ``Splits``; ``optimize=False``: no
    optimizer or schedule (``training.seedbatch`` trains the model inside a wider one)."""

    def __init__(self, genome: Genome, splits: Splits, config: TrainConfig, optimize: bool = True) -> None:
        check_genome_fits(genome, splits.spec, splits.name)
        self.genome, self.splits, self.config = genome, splits, config
        self.device = splits.device
        self.cuda = self.device.type == "cuda"
        if self.device.type == "cpu":
            keep_freed_memory()
        torch.manual_seed(config.seed)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.model = build_model(genome).to(self.device)
        self.memory_format = training_layout(self.device) if config.channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        self.forward = torch.compile(self.model) if config.compile else self.model
        self.params = sum(p.numel() for p in self.model.parameters())
        n = len(splits.train_y)
        self.steps_per_epoch = n // config.batch_size + (1 if n % config.batch_size >= 2 else 0)
        self.total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        # the averaged copy, updated after every optimizer step; it is what ``evaluate`` and ``train`` return
        self.ema = (torch.optim.swa_utils.AveragedModel(
            self.model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
            if config.ema_decay and optimize else None)
        if optimize:
            self.optimizer = make_optimizer(self.model, config)
            self.scheduler = make_scheduler(self.optimizer, config, self.total_steps, self.steps_per_epoch)
        self.steps_done = 0
        self.normalize = _Normalize(splits.mean, splits.std, self.device, self.memory_format)
        self.augment = augmentation(config, splits)[1]

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().div_(255)  # (N, C, H, W) in [0, 1]
        if self.augment:
            x = augment_batch(x, self.generator, **self.augment)
        return self.normalize(x)

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda and self.config.amp)

    def train_epoch(self) -> tuple[float, float]:
        """One pass over the training split; returns (mean loss, accuracy %); loss is NaN if it diverged."""
        c, s = self.config, self.splits
        self.model.train()
        n = len(s.train_y)
        order = torch.randperm(n, device=self.device, generator=self.generator)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        seen = 0
        for step in range(self.steps_per_epoch):
            if self.steps_done >= self.total_steps:
                break
            idx = order[step * c.batch_size:(step + 1) * c.batch_size]
            x, y = self._prepare(s.train_x[idx]), s.train_y[idx]
            with self._autocast():
                logits = self.forward(x)  # (B, classes)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=c.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            self.steps_done += 1
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
        return (loss_sum / max(seen, 1)).item(), 100.0 * correct.item() / max(seen, 1)

    @property
    def evaluated(self) -> nn.Module:
        """The model that is evaluated and returned: the weights' moving average with ``ema_decay``, else the model."""
        return self.ema.module if self.ema is not None else self.forward

    def evaluate(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        """(mean loss, accuracy %) of ``evaluated`` without augmentation."""
        return evaluate(self.evaluated, images, labels, self.splits.mean, self.splits.std,
                        batch_size=self.config.eval_batch_size, amp=self.cuda and self.config.amp,
                        memory_format=self.memory_format, metric=self.config.metric)


def evaluation_batch(device: torch.device, requested: int | None = None) -> int:
    """Images per evaluation batch: ``requested``, else 2,000 on CUDA and 256 elsewhere (``evaluate``)."""
    return requested or (2000 if device.type == "cuda" else 256)


@torch.no_grad()
def _batched_logits(model: nn.Module, images: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                    batch_size: int | None, amp: bool, memory_format: torch.memory_format):
    """(logits, batch start) of ``model`` on uint8 ``images``, batch by batch, in eval mode (``evaluate``)."""
    model.eval()
    device = images.device
    batch_size = evaluation_batch(device, batch_size)
    normalize = _Normalize(mean, std, device, memory_format)
    for start in range(0, len(images), batch_size):
        x = normalize(images[start:start + batch_size].float().div_(255))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            yield model(x), start


METRICS = ("accuracy", "balanced")


def score_of(hits: torch.Tensor, counts: torch.Tensor, metric: str = "accuracy") -> float:
    """Percent from per-class hits and image counts: accuracy (all hits over all images), or balanced (the mean of
    the recalls of the classes that have images)."""
    if metric == "balanced":
        present = counts > 0
        return 100.0 * (hits[present].double() / counts[present].double()).mean().item() if present.any() else 0.0
    return 100.0 * hits.sum().item() / max(int(counts.sum()), 1)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean: Sequence[float],
             std: Sequence[float], *, batch_size: int | None = None, amp: bool = False,
             memory_format: torch.memory_format = torch.contiguous_format,
             metric: str = "accuracy") -> tuple[float, float]:
    """(mean loss, accuracy %) of ``model`` on uint8 ``images`` normalised with per-channel ``mean`` / ``std``;
    ``metric`` balanced: the mean of the classes' recalls instead of the accuracy (``score_of``).

    The model is put in eval mode; it must be on the images' device. ``batch_size`` None: 2,000 images on
    CUDA, 256 elsewhere (on CPU a batch whose feature maps fit the caches ran 2x faster: BENCHMARKS.md).
    """
    device = images.device
    loss_sum = torch.zeros((), device=device)
    hits = counts = None
    for logits, start in _batched_logits(model, images, mean, std, batch_size, amp, memory_format):
        y = labels[start:start + len(logits)]
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        k = logits.shape[1]
        batch_hits = torch.bincount(y[logits.argmax(1) == y], minlength=k)
        batch_counts = torch.bincount(y, minlength=k)
        hits = batch_hits if hits is None else hits + batch_hits
        counts = batch_counts if counts is None else counts + batch_counts
    if hits is None:
        return float("nan"), 0.0
    return (loss_sum / len(labels)).item(), score_of(hits, counts, metric)


def predict(model: nn.Module, images: torch.Tensor, mean: Sequence[float], std: Sequence[float], *,
            batch_size: int | None = None) -> torch.Tensor:
    """The predicted class of each uint8 image (int64, on the images' device), as ``evaluate`` scores them."""
    if not len(images):
        return torch.zeros(0, dtype=torch.int64, device=images.device)
    return torch.cat([logits.argmax(1) for logits, _ in _batched_logits(model, images, mean, std, batch_size, False,
                                                                         torch.contiguous_format)])


def progress_enabled() -> bool:
    """Whether live progress is shown: on a terminal, and not under CI (the engine's bar, the search's display)."""
    return sys.stdout.isatty() and not os.environ.get("CI") and os.environ.get("BUDGETNAS_QUIET") != "1"


def train(genome: Genome, splits: Splits, config: TrainConfig | None = None,
          on_epoch: Callable[[EpochMetrics], str | None] | None = None, progress: bool | None = None) -> TrainResult:
    """Train ``genome`` on ``splits``; never raises for divergence or CUDA OOM (see module doc)."""
    config = config or TrainConfig()
    start = time.perf_counter()
    trainer = Trainer(genome, splits, config)
    setup_seconds = time.perf_counter() - start
    history: list[EpochMetrics] = []
    status = "complete"
    show = progress_enabled() if progress is None else progress
    bar = task = None
    if show:
        from rich.progress import Progress
        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task(f"training {trainer.params:,} params", total=config.epochs)
    try:
        for epoch in range(1, config.epochs + 1):
            if trainer.steps_done >= trainer.total_steps:
                break
            t0 = time.perf_counter()
            train_loss, train_acc = trainer.train_epoch()
            if not math.isfinite(train_loss):
                history.append(EpochMetrics(epoch, train_loss, train_acc, None, None,
                                            seconds=time.perf_counter() - t0))
                status = "diverged"
                break
            val_loss = val_acc = test_loss = test_acc = None
            t_eval = time.perf_counter()
            if len(splits.val_y):
                val_loss, val_acc = trainer.evaluate(splits.val_x, splits.val_y)
            if config.evaluate_test:
                test_loss, test_acc = trainer.evaluate(splits.test_x, splits.test_y)
            metrics = EpochMetrics(epoch, train_loss, train_acc, val_loss, val_acc, test_loss, test_acc,
                                   time.perf_counter() - t0, trainer.optimizer.param_groups[0]["lr"],
                                   time.perf_counter() - t_eval)
            history.append(metrics)
            if bar is not None:
                shown = f"val {val_acc:.2f}%" if val_acc is not None else f"test {test_acc or 0:.2f}%"
                bar.update(task, advance=1, description=f"epoch {epoch}: {shown}")
            if on_epoch is not None:
                stop = on_epoch(metrics)
                if stop:
                    status = stop
                    break
    except torch.cuda.OutOfMemoryError:
        status = "oom"
        torch.cuda.empty_cache()
    finally:
        if bar is not None:
            bar.stop()
    return TrainResult(status, history, time.perf_counter() - start, str(trainer.device), config.seed,
                       trainer.params, asdict(config), trainer.ema.module if trainer.ema is not None else trainer.model,
                       setup_seconds)
