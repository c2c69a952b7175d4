import pytest
import torch

from blocks import Genome, build_model
from tests.synthetic import tiny_splits
from training import TrainConfig, train
from training.seedbatch import batchable, narrow, train_seeds, widen

# every block kind that widens: conv (strided, grouped), residual with a projection, depthwise-separable,
# average pooling, flatten, fc with a 1-d batch norm, log-softmax
GENOME = Genome.from_string("i1x12x12n4-conv_c8_k3_psame-max_k2-res_c8-dws_c12_s2-avg_k2-flat-fc_c6_ocba-fc_c4-lsm")
DROPOUT = Genome.from_string("i1x12x12n4-conv_c8_k3_psame_r0.5-max_k2-flat-fc_c4")
FAST = dict(epochs=2, batch_size=32, lr=0.05, device="cpu")


def _models(genome, seeds):
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(build_model(genome))
    return models


def test_a_seed_trains_as_it_would_alone():
    splits = tiny_splits()
    configs = [TrainConfig(**FAST, seed=seed) for seed in (3, 4, 5)]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        batched = train_seeds(GENOME, splits, configs)
        alone = [train(GENOME, splits, c, progress=False) for c in configs]
    finally:
        torch.set_num_threads(threads)
    for b, a in zip(batched, alone):
        assert b.status == "complete" and b.seed == a.seed and b.params == a.params
        assert [m.train_loss for m in b.epochs] == pytest.approx([m.train_loss for m in a.epochs], rel=1e-4)
        assert [m.val_loss for m in b.epochs] == pytest.approx([m.val_loss for m in a.epochs], rel=1e-4)
        for key, value in a.model.state_dict().items():
            assert torch.allclose(b.model.state_dict()[key].float(), value.float(), atol=1e-4), key
    assert alone[0].epochs[-1].train_loss != pytest.approx(alone[1].epochs[-1].train_loss, rel=1e-3)


def test_widen_computes_each_model_on_its_own_channels_and_narrow_gives_them_back():
    models = [m.eval() for m in _models(GENOME, (0, 1))]
    wide = widen(models).eval()
    x = torch.randn(5, 2, 12, 12)
    out = wide(x)
    assert torch.allclose(out[:, :4], models[0](x[:, :1]), atol=1e-5)
    assert torch.allclose(out[:, 4:], models[1](x[:, 1:]), atol=1e-5)
    with torch.no_grad():
        for p in wide.parameters():
            p.add_(1.0)
    copies = _models(GENOME, (7, 8))
    narrow(wide, copies)
    assert torch.allclose(wide(x)[:, 4:], copies[1].eval()(x[:, 1:]), atol=1e-5)


def test_seeds_do_not_see_each_other_in_training_mode():
    """Batch norm statistics, gradients and outputs of a seed stay its own, even when another seed's input is NaN."""
    clean_x = torch.randn(8, 2, 12, 12)
    poisoned_x = clean_x.clone()
    poisoned_x[:, 1] = float("nan")
    grads = []
    for x in (clean_x, poisoned_x):
        wide = widen(_models(GENOME, (0, 1))).train()
        out = wide(x)
        out[:, :4].sum().backward(retain_graph=True)
        grads.append([p.grad.view(2, -1)[0].clone() for p in wide.parameters()])
        if x is poisoned_x:
            assert out[:, 4:].isnan().all() and out[:, :4].isfinite().all()
    for clean, poisoned in zip(*grads):
        assert torch.equal(clean, poisoned)


def test_each_seed_draws_its_own_dropout_mask():
    same = _models(DROPOUT, (0, 0))
    wide = widen(same).train()
    x = torch.randn(64, 1, 12, 12)
    out = wide(torch.cat([x, x], 1))
    assert not torch.allclose(out[:, :4], out[:, 4:])
    wide.eval()
    out = wide(torch.cat([x, x], 1))
    assert torch.allclose(out[:, :4], out[:, 4:])


def test_a_stopped_seed_keeps_its_status_and_the_others_go_on():
    configs = [TrainConfig(**{**FAST, "epochs": 3}, seed=seed) for seed in (0, 1)]
    seen = []

    def on_epoch(index, metrics):
        seen.append((index, metrics.epoch))
        return "pruned" if index == 0 and metrics.epoch == 1 else None

    results = train_seeds(GENOME, tiny_splits(), configs, on_epoch=on_epoch)
    assert [r.status for r in results] == ["pruned", "complete"]
    assert [len(r.epochs) for r in results] == [1, 3] and (0, 2) not in seen


def test_what_cannot_be_batched_is_named():
    assert batchable(GENOME) is None
    assert "PReLU" in batchable(Genome.from_string("i1x12x12n4-conv_c8_k3_aprelu-flat-fc_c4"))
    assert "layer 1 shares its weights" in batchable(Genome.from_string("i1x12x12n4-conv_c8_k3-conv_c8_k3_psame_x2-gap-conv_c4_k1_oc"))
    with pytest.raises(ValueError, match="seed only"):
        train_seeds(GENOME, tiny_splits(), [TrainConfig(**FAST), TrainConfig(**{**FAST, "lr": 0.1})])
