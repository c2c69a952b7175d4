import torch

from blocks import Genome, build_model
from blocks.library import Repeated
from budgets import analyze

SHARED = "i1x12x12n4-conv_c8_k3-dws_c8_psame_x3-res_c8_x2-gap-conv_c4_k1_oc"


def test_a_repeated_block_shares_its_weights_but_not_its_norm_statistics():
    model = build_model(Genome.from_string(SHARED))
    repeated = [m for m in model.modules() if isinstance(m, Repeated)]
    assert [len(r.applications) for r in repeated] == [3, 2]
    first, second = repeated[0].applications[0], repeated[0].applications[1]
    for (name, p), (_, q) in zip(first.named_parameters(remove_duplicate=False),
                                 second.named_parameters(remove_duplicate=False)):
        assert p is q, name
    assert sum(p.numel() for p in model.parameters()) == analyze(model.genome).params
    model.train()
    model(torch.randn(16, 1, 12, 12))
    stats = [m.running_mean for m in repeated[0].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(stats) == 6 and not torch.equal(stats[0], stats[2])  # per application (2 norms each)


def test_shared_weights_train_as_one_and_survive_a_state_dict_round_trip():
    model = build_model(Genome.from_string(SHARED))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(torch.randn(8, 1, 12, 12)).logsumexp(1).mean()
    loss.backward()
    optimizer.step()
    applications = [m for m in model.modules() if isinstance(m, Repeated)][0].applications
    assert torch.equal(applications[0][0].weight, applications[2][0].weight)  # still one tensor after a step
    copy = build_model(Genome.from_string(SHARED))
    copy.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 12, 12)
    assert torch.equal(copy.eval()(x), model.eval()(x))
    copied = [m for m in copy.modules() if isinstance(m, Repeated)][0].applications
    assert copied[0][0].weight is copied[1][0].weight
