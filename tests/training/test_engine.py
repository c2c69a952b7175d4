import math
import os
import subprocess
import sys

import pytest
import torch

from blocks import Genome, load_genome
from tests.conftest import ROOT
from tests.synthetic import TINY_GENOME, tiny_splits
from training import DataError, TrainConfig, Trainer, evaluate, load_splits, resolve_device, train

FAST = dict(epochs=3, batch_size=32, lr=0.05, device="cpu")


def test_learns_the_synthetic_task():
    result = train(TINY_GENOME, tiny_splits(), TrainConfig(**FAST), progress=False)
    assert result.status == "complete" and len(result.epochs) == 3
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    assert result.best_val_acc > 90
    assert result.params == sum(p.numel() for p in result.model.parameters())
    assert result.config["batch_size"] == 32 and result.seed == 0 and result.device == "cpu"


def test_same_seed_same_numbers_on_cpu():
    runs = [train(TINY_GENOME, tiny_splits(), TrainConfig(**FAST, seed=7), progress=False) for _ in range(2)]
    assert [m.train_loss for m in runs[0].epochs] == [m.train_loss for m in runs[1].epochs]
    assert [m.val_acc for m in runs[0].epochs] == [m.val_acc for m in runs[1].epochs]
    other = train(TINY_GENOME, tiny_splits(), TrainConfig(**FAST, seed=8), progress=False)
    assert [m.train_loss for m in other.epochs] != [m.train_loss for m in runs[0].epochs]


def test_ema_evaluates_and_returns_the_averaged_weights():
    config = TrainConfig(**FAST, ema_decay=0.9)
    trainer = Trainer(TINY_GENOME, tiny_splits(), config)
    trainer.train_epoch()
    raw = dict(trainer.model.named_parameters())
    averaged = dict(trainer.ema.module.named_parameters())
    assert raw.keys() == averaged.keys()
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw)  # an average, not a copy
    assert trainer.evaluated is trainer.ema.module
    running = [b for n, b in trainer.ema.module.named_buffers() if n.endswith("running_mean")]
    assert running and any(b.abs().sum() > 0 for b in running)  # BN statistics are averaged too

    result = train(TINY_GENOME, tiny_splits(), config, progress=False)
    plain = train(TINY_GENOME, tiny_splits(), TrainConfig(**FAST), progress=False)
    assert result.best_val_acc > 90 and result.config["ema_decay"] == 0.9
    assert result.model is not None and not isinstance(result.model, torch.optim.swa_utils.AveragedModel)
    # the same training run underneath: only what is evaluated differs
    assert [m.train_loss for m in result.epochs] == [m.train_loss for m in plain.epochs]
    assert [m.val_loss for m in result.epochs] != [m.val_loss for m in plain.epochs]


def test_callback_sees_every_epoch_and_can_stop_the_run():
    seen = []

    def on_epoch(metrics):
        seen.append(metrics.epoch)
        return "pruned" if metrics.epoch == 2 else None

    result = train(TINY_GENOME, tiny_splits(), TrainConfig(**FAST), on_epoch=on_epoch, progress=False)
    assert seen == [1, 2] and result.status == "pruned" and len(result.epochs) == 2


def test_divergence_is_a_status_not_a_crash():
    config = TrainConfig(**{**FAST, "lr": 1e12, "schedule": "step"})
    genome = Genome.from_string("i1x12x12n4-conv_c8_k3_oca-flat-fc_c4")  # no norm to tame it
    result = train(genome, tiny_splits(), config, progress=False)
    assert result.status == "diverged"
    assert len(result.epochs) >= 1 and not math.isfinite(result.epochs[-1].train_loss)


def test_cuda_oom_is_a_status_not_a_crash(monkeypatch):
    def explode(self):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(Trainer, "train_epoch", explode)
    result = train(TINY_GENOME, tiny_splits(), TrainConfig(**FAST), progress=False)
    assert result.status == "oom" and result.epochs == []


@pytest.mark.parametrize("optimizer,schedule", [("adam", "onecycle"), ("adamw", "step"), ("sgd", "step")])
def test_optimizers_and_schedules(optimizer, schedule):
    config = TrainConfig(**{**FAST, "optimizer": optimizer, "schedule": schedule, "lr": 0.01,
                            "label_smoothing": 0.1})
    result = train(TINY_GENOME, tiny_splits(), config, progress=False)
    assert result.status == "complete" and result.best_val_acc > 60


def test_max_steps_and_test_evaluation():
    config = TrainConfig(**{**FAST, "max_steps": 5, "evaluate_test": True})
    result = train(TINY_GENOME, tiny_splits(), config, progress=False)
    assert len(result.epochs) == 1 and result.epochs[0].test_acc is not None


def test_evaluation_does_not_depend_on_its_batch_size():
    splits = tiny_splits()
    model = train(TINY_GENOME, splits, TrainConfig(**FAST), progress=False).model
    results = [evaluate(model, splits.val_x, splits.val_y, splits.mean, splits.std, batch_size=size)
               for size in (None, 7, len(splits.val_y))]
    assert len({acc for _, acc in results}) == 1
    assert max(loss for loss, _ in results) - min(loss for loss, _ in results) < 1e-5


def test_genome_of_another_dataset_is_rejected():
    with pytest.raises(DataError, match="does not match synthetic"):
        train(Genome.from_string("i1x28x28n10-conv_c8_k3-gap-conv_c10_k1_oc"), tiny_splits(), progress=False)


@pytest.mark.parametrize("field,value", [("optimizer", "lbfgs"), ("schedule", "cosine"), ("epochs", 0),
                                         ("device", "tpu"), ("augment", "mixup"),
                                         ("eval_batch_size", 0), ("ema_decay", 1.0)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"invalid training config field '{field}'"):
        TrainConfig(**{field: value})


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


@pytest.mark.slow
def test_real_mnist_two_short_epochs(mnist_dir):
    splits = load_splits("mnist", mnist_dir).subset(10_000)
    genome = load_genome(ROOT / "zoo" / "mnist_8k_gap.json")
    result = train(genome, splits, TrainConfig(epochs=2, device="cpu"), progress=False)
    assert result.status == "complete" and result.best_val_acc > 90  # 95.2% measured on the dev box


def test_weight_decay_skips_norm_and_bias_parameters():
    from blocks import Genome, build_model
    from training import parameter_groups

    model = build_model(Genome.from_string("i1x12x12n4-conv_c8_k3_b1-conv_c8_k3_aprelu-gap-conv_c4_k1_oc"))
    decay, no_decay = parameter_groups(model, 1e-4)
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 4 for p in decay["params"])  # conv kernels only
    assert sum(p.numel() for p in no_decay["params"]) == 8 + 2 * 8 + 2 * 8 + 1 + 4  # biases, 2 BatchNorms, PReLU
    everything, _ = parameter_groups(model, 1e-4, decay_norm_bias=True)
    assert len(everything["params"]) == len(list(model.parameters()))


_LAYOUT_SCRIPT = """
import torch
from blocks import Genome, InputSpec, build_model
from budgets import Limits
from search.space import random_designs
from training import TrainConfig, train
from tests.synthetic import tiny_splits
torch.set_num_threads(1)
g = Genome.from_string("i1x12x12n4-conv_c6_k3-res_c12_s2-gap-conv_c4_k1_oc")
print(train(g, tiny_splits(), TrainConfig(device="cpu", epochs=2, batch_size=128), progress=False).status)
for g in random_designs(InputSpec(1, 28, 28, 10), [Limits(max_params=b) for b in (3000, 5000, 8000, 20000) * 10], 1):
    model = build_model(g).to(memory_format=torch.channels_last)
    for _ in range(2):
        model(torch.randn(32, 1, 28, 28).contiguous(memory_format=torch.channels_last)).sum().backward()
print("designs ok")
"""


@pytest.mark.slow
def test_channels_last_training_on_the_avx2_kernels_keeps_the_heap_intact():
    """oneDNN's AVX2 backward of a strided 1x1 conv with < 8 input channels in channels_last corrupted the heap
    (torch 2.14.1). The AVX2 kernels are forced on any x86 CPU, and glibc checks the heap on every free."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MALLOC_CHECK_": "3"}
    out = subprocess.run([sys.executable, "-c", _LAYOUT_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and out.stdout.split() == ["complete", "designs", "ok"], out.stderr[-500:]


_FAULTS_SCRIPT = """
import resource, sys, torch
sys.path.insert(0, {root!r})
if {keep}:
    from training import TrainConfig, Trainer
    from tests.synthetic import TINY_GENOME, tiny_splits
    Trainer(TINY_GENOME, tiny_splits(), TrainConfig(device="cpu"))  # a CPU trainer sets the allocator up
def cycle():  # activation-sized blocks, touched, then freed, as in a training step
    blocks = [torch.ones(10 << 18) for _ in range(3)]  # 3 x 10 MiB
    del blocks
for _ in range(2):
    cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator setting")
def test_a_cpu_trainer_stops_freed_memory_from_faulting_back_in():
    def faults(keep: bool) -> int:
        out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT.format(root=str(ROOT), keep=keep)],
                             capture_output=True, text=True, check=True, cwd=ROOT)
        return int(out.stdout.split()[-1])

    # 20 cycles of 30 MiB are 153,600 pages; glibc's default unmaps them again and again (12,800+ faults
    # measured), while a kept heap faults at most a stray block once (0-2,560 measured)
    assert faults(keep=False) > 10_000
    assert faults(keep=True) < 5_000


def test_channels_last_on_cpu_only_in_a_single_threaded_process():
    from training.engine import training_layout

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert training_layout(torch.device("cpu")) == torch.channels_last
        trainer = Trainer(TINY_GENOME, tiny_splits(), TrainConfig(device="cpu"))
        assert trainer.memory_format == torch.channels_last
        torch.set_num_threads(2)
        assert training_layout(torch.device("cpu")) == torch.contiguous_format
        assert Trainer(TINY_GENOME, tiny_splits(), TrainConfig(device="cpu")).memory_format == torch.contiguous_format
        assert Trainer(TINY_GENOME, tiny_splits(), TrainConfig(device="cpu", channels_last=False)).memory_format \
            == torch.contiguous_format
    finally:
        torch.set_num_threads(threads)


def test_balanced_accuracy_weighs_every_class_alike():
    """Issue 39 item 1: with one class at 5% of the images, never predicting it still scores 95% accuracy."""
    from torch import nn

    from training.engine import evaluate, score_of

    labels = torch.tensor([0] * 19 + [1])
    always_zero = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        always_zero[1].weight.zero_()
        always_zero[1].bias.copy_(torch.tensor([1.0, 0.0]))
    images = torch.zeros(20, 1, 2, 2, dtype=torch.uint8)
    assert evaluate(always_zero, images, labels, [0.0], [1.0])[1] == pytest.approx(95.0)
    assert evaluate(always_zero, images, labels, [0.0], [1.0], metric="balanced")[1] == pytest.approx(50.0)
    assert score_of(torch.tensor([3, 0, 0]), torch.tensor([4, 2, 0]), "balanced") == pytest.approx(37.5)
    with pytest.raises(ValueError, match="metric"):
        TrainConfig(metric="f1")
