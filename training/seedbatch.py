"""Several seeds of one genome trained as one wide model: ``train_seeds``.

A tiny net leaves most of a CPU's SIMD width idle. Here seed ``s`` owns channel block ``s`` of every layer:
a convolution with ``groups=g`` becomes one with ``S * g`` groups, a batch norm normalises ``S`` times the
channels, a linear layer becomes a batched matrix product. Blocks never mix, so each seed stays an independent
run: its own initialisation, batch order and augmentation (the same draws as ``training.train`` with that seed),
and its own dropout masks (other draws than ``train``'s, from the same distribution). Without dropout a seed
trains to the values ``train`` gives, up to floating-point rounding (tests/training/test_seedbatch.py).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, replace
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from blocks import Genome, build_model
from training.engine import (EpochMetrics, TrainConfig, Trainer, TrainResult, _Normalize, evaluation_batch,
                             make_optimizer, make_scheduler, score_of)

__all__ = ["batchable", "narrow", "train_seeds", "widen"]

# modules that act on each channel (or element) alone: a wide copy is the same module
_PER_CHANNEL = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU, nn.Hardswish, nn.Tanh, nn.Sigmoid,
                nn.Dropout, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Identity, nn.Flatten)


class _SeedLinear(nn.Module):
    """``S`` linear layers side by side: input (N, S * in) -> (N, S * out). The weight is stored (S * out, in),
    the bias (S * out,), so that parameter groups see the dimensions of the layers they came from."""

    def __init__(self, linears: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.seeds, self.in_features, self.out_features = len(linears), linears[0].in_features, linears[0].out_features
        self.weight = nn.Parameter(torch.cat([m.weight.detach() for m in linears]))
        self.bias = nn.Parameter(torch.cat([m.bias.detach() for m in linears])) if linears[0].bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, i, o = self.seeds, self.in_features, self.out_features
        y = torch.einsum("nsi,soi->nso", x.reshape(len(x), s, i), self.weight.view(s, o, i))
        if self.bias is not None:
            y = y + self.bias.view(s, o)
        return y.reshape(len(x), s * o)


class _SeedLogSoftmax(nn.Module):
    def __init__(self, seeds: int) -> None:
        super().__init__()
        self.seeds = seeds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(x.reshape(len(x), self.seeds, -1), dim=-1).reshape(x.shape)


def _cat(tensors: list[torch.Tensor | None]) -> torch.Tensor | None:
    return None if tensors[0] is None else torch.cat([t.detach() for t in tensors])


def _widen_leaf(modules: list[nn.Module]) -> nn.Module:
    first, s = modules[0], len(modules)
    if isinstance(first, nn.Conv2d):
        wide = copy.deepcopy(first)
        wide.in_channels, wide.out_channels, wide.groups = s * first.in_channels, s * first.out_channels, \
            s * first.groups
        wide.weight = nn.Parameter(_cat([m.weight for m in modules]))
        if first.bias is not None:
            wide.bias = nn.Parameter(_cat([m.bias for m in modules]))
        return wide
    if isinstance(first, nn.modules.batchnorm._BatchNorm):
        wide = copy.deepcopy(first)
        wide.num_features *= s
        if first.affine:
            wide.weight = nn.Parameter(_cat([m.weight for m in modules]))
            wide.bias = nn.Parameter(_cat([m.bias for m in modules]))
        if first.track_running_stats:
            wide.running_mean = _cat([m.running_mean for m in modules])
            wide.running_var = _cat([m.running_var for m in modules])
        return wide
    if isinstance(first, nn.Linear):
        return _SeedLinear(modules)
    if isinstance(first, nn.LogSoftmax):
        return _SeedLogSoftmax(s)
    if isinstance(first, _PER_CHANNEL):
        return copy.deepcopy(first)
    raise ValueError(f"cannot train {type(first).__name__} seed-batched")


def _leaves(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if not list(m.children())]


def widen(models: Sequence[nn.Module]) -> nn.Module:
    """One module that computes ``models`` (built from one genome) side by side: input and output channels are the
    models' own, concatenated seed by seed. Raises ValueError for a module it cannot widen (``batchable``)."""
    wide = copy.deepcopy(models[0])
    for name in _leaves(wide):
        parent, _, leaf = name.rpartition(".")
        owner = wide.get_submodule(parent) if parent else wide
        setattr(owner, leaf, _widen_leaf([m.get_submodule(name) for m in models]))
    return wide


def narrow(wide: nn.Module, models: Sequence[nn.Module]) -> None:
    """Copy each seed's block of ``wide``'s parameters and buffers back into ``models`` (in place)."""
    s = len(models)
    with torch.no_grad():
        wide_state = wide.state_dict()
        for i, model in enumerate(models):
            for key, value in model.state_dict().items():
                block = wide_state[key]
                if value.dim() == 0:  # num_batches_tracked: the same for every seed
                    value.copy_(block)
                else:
                    value.copy_(block.view(s, *value.shape)[i])


def batchable(genome: Genome, config: TrainConfig | None = None) -> str | None:
    """Why ``genome`` (with ``config``) cannot train seed-batched, or None when it can."""
    if config is not None and config.ema_decay:
        return "ema_decay is not supported seed-batched; the seeds train one by one"
    shared = [i for i, layer in enumerate(genome.layers) if (layer.repeat or 1) > 1]
    if shared:  # widening copies each leaf separately, which would untie the shared weights
        return f"layer {shared[0]} shares its weights (repeat); shared blocks train one seed at a time"
    try:
        widen([build_model(genome)])
    except ValueError as e:
        return str(e)
    return None


class _SeedBatch:
    """Per-seed ``Trainer``s for the draws (init, batch order, augmentation); one wide model and optimizer."""

    def __init__(self, genome: Genome, splits, configs: Sequence[TrainConfig]) -> None:
        self.seeds = [Trainer(genome, splits, c, optimize=False) for c in configs]
        lead = self.seeds[0]
        self.config, self.splits, self.device = lead.config, splits, lead.device
        self.memory_format = lead.memory_format
        self.model = widen([t.model for t in self.seeds]).to(self.device, memory_format=self.memory_format)
        self.steps_per_epoch, self.total_steps = lead.steps_per_epoch, lead.total_steps
        self.optimizer = make_optimizer(self.model, self.config)
        self.scheduler = make_scheduler(self.optimizer, self.config, self.total_steps, self.steps_per_epoch)
        self.steps_done = 0

    def train_epoch(self) -> tuple[list[float], list[float]]:
        c, s, n_seeds = self.config, self.splits, len(self.seeds)
        self.model.train()
        n = len(s.train_y)
        orders = [torch.randperm(n, device=self.device, generator=t.generator) for t in self.seeds]
        loss_sum = torch.zeros(n_seeds, device=self.device)
        correct = torch.zeros(n_seeds, device=self.device, dtype=torch.int64)
        seen = 0
        for step in range(self.steps_per_epoch):
            if self.steps_done >= self.total_steps:
                break
            idx = [order[step * c.batch_size:(step + 1) * c.batch_size] for order in orders]
            x = torch.cat([t._prepare(s.train_x[i]) for t, i in zip(self.seeds, idx)], 1)
            y = torch.stack([s.train_y[i] for i in idx], 1)  # (B, S)
            logits = self.model(x.contiguous(memory_format=self.memory_format)).view(len(y), n_seeds, -1)
            losses = F.cross_entropy(logits.permute(0, 2, 1), y, label_smoothing=c.label_smoothing,
                                     reduction="none").mean(0)  # (S,): each seed's own mean loss
            self.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            self.optimizer.step()
            self.scheduler.step()
            self.steps_done += 1
            loss_sum += losses.detach() * len(y)
            correct += (logits.argmax(2) == y).sum(0)
            seen += len(y)
        return (loss_sum / max(seen, 1)).tolist(), (100.0 * correct / max(seen, 1)).tolist()

    @torch.no_grad()
    def evaluate(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[list[float], list[float]]:
        """Each seed's (mean loss, accuracy %) on the same images, without augmentation."""
        self.model.eval()
        n_seeds, sp = len(self.seeds), self.splits
        batch_size = evaluation_batch(self.device, self.config.eval_batch_size)
        normalize = _Normalize(sp.mean, sp.std, self.device, torch.contiguous_format)
        loss_sum = torch.zeros(n_seeds, device=self.device)
        k = self.splits.spec.classes
        hits = torch.zeros(n_seeds, k, device=self.device, dtype=torch.int64)
        counts = torch.bincount(labels, minlength=k)
        for start in range(0, len(labels), batch_size):
            x = normalize(images[start:start + batch_size].float().div_(255)).repeat(1, n_seeds, 1, 1)
            y = labels[start:start + batch_size]
            logits = self.model(x.contiguous(memory_format=self.memory_format)).view(len(y), n_seeds, -1).float()
            loss_sum += F.cross_entropy(logits.permute(0, 2, 1), y[:, None].expand(-1, n_seeds),
                                        reduction="none").sum(0)
            right = logits.argmax(2) == y[:, None]
            for s in range(n_seeds):
                hits[s] += torch.bincount(y[right[:, s]], minlength=k)
        return (loss_sum / len(labels)).tolist(), [score_of(hits[s], counts, self.config.metric) for s in range(n_seeds)]


def train_seeds(genome: Genome, splits, configs: Sequence[TrainConfig],
                on_epoch: Callable[[int, EpochMetrics], str | None] | None = None) -> list[TrainResult]:
    """Train ``genome`` once per config (configs that differ in ``seed`` only) as one wide model; one
    ``TrainResult`` per config, as ``training.train`` would return it. ``on_epoch(index, metrics)`` sees each
    seed's epochs; returning a string stops that seed (its status). A seed whose loss is not finite ends as
    ``diverged``; the others go on. Raises ValueError when the genome cannot be batched (``batchable``)."""
    if any(replace(c, seed=0) != replace(configs[0], seed=0) for c in configs):
        raise ValueError("train_seeds: the configs must differ in their seed only")
    if configs[0].ema_decay:
        raise ValueError(f"train_seeds: {batchable(genome, configs[0])}")
    start = time.perf_counter()
    batch = _SeedBatch(genome, splits, configs)
    setup_seconds = time.perf_counter() - start
    n_seeds, config = len(configs), batch.config
    histories: list[list[EpochMetrics]] = [[] for _ in configs]
    statuses: list[str | None] = [None] * n_seeds  # None: still training
    for epoch in range(1, config.epochs + 1):
        if batch.steps_done >= batch.total_steps or all(statuses):
            break
        t0 = time.perf_counter()
        train_loss, train_acc = batch.train_epoch()
        t_eval = time.perf_counter()
        val = batch.evaluate(splits.val_x, splits.val_y) if len(splits.val_y) else None
        test = batch.evaluate(splits.test_x, splits.test_y) if config.evaluate_test else None
        now, lr = time.perf_counter(), batch.optimizer.param_groups[0]["lr"]
        seconds, eval_seconds = now - t0, now - t_eval
        for i in range(n_seeds):
            if statuses[i]:
                continue
            if not math.isfinite(train_loss[i]):
                histories[i].append(EpochMetrics(epoch, train_loss[i], train_acc[i], None, None, seconds=seconds))
                statuses[i] = "diverged"
                continue
            metrics = EpochMetrics(epoch, train_loss[i], train_acc[i], val[0][i] if val else None,
                                   val[1][i] if val else None, test[0][i] if test else None,
                                   test[1][i] if test else None, seconds, lr, eval_seconds)
            histories[i].append(metrics)
            if on_epoch is not None:
                statuses[i] = on_epoch(i, metrics) or None
    models = [t.model for t in batch.seeds]
    narrow(batch.model, models)
    seconds = time.perf_counter() - start
    return [TrainResult(statuses[i] or "complete", histories[i], seconds, str(batch.device), c.seed, batch.seeds[i].params,
                        asdict(c), models[i].eval(), setup_seconds) for i, c in enumerate(configs)]
