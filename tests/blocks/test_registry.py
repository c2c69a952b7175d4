import pytest
import torch

from blocks import BLOCK_TYPES, BUILDERS, Genome, build_model, get_builder
from budgets import analyze
from budgets.costs import COST_FUNCTIONS

# One small genome per registered block, exercising the block in a typical position.
EXAMPLES = {
    "conv": "i2x12x12n10-conv_c8_k3_s2_p1_gdw_oacbd_aprelu_r0.1-conv_c10_k1_oc-gap",
    "dws": "i3x12x12n10-dws_c8_k5_s2_psame_d2_ocab_asilu_r0.1-conv_c10_k1_oc-gap",
    "res": "i3x12x12n10-res_c8_s2_obac_aprelu_r0.1-res_c8_d2-conv_c10_k1_oc-gap",
    "max": "i1x12x12n10-conv_c4_k3-max_k3_s2_p1-conv_c10_k1_oc-gap",
    "avg": "i1x12x12n10-conv_c10_k3_oc-avg_k10",
    "gap": "i1x12x12n10-conv_c6_k3-gap-conv_c10_k1_oc",
    "flat": "i1x8x8n10-conv_c4_k3-flat-fc_c10",
    "fc": "i1x8x8n10-conv_c4_k3-flat-fc_c16_ocbad_ahswish_r0.2-fc_c10",
    "lsm": "i1x12x12n10-conv_c6_k3-gap-conv_c10_k1_oc-lsm",
}


def test_every_block_type_has_a_builder_a_cost_function_and_an_example():
    assert set(BUILDERS) == set(BLOCK_TYPES) == set(COST_FUNCTIONS) == set(EXAMPLES)


def test_unknown_block_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown block 'nope'; known: avg, conv, dws"):
        get_builder("nope")


@pytest.mark.parametrize("name", sorted(BLOCK_TYPES))
def test_block_builds_to_the_analytic_shape_and_trains(name):
    torch.manual_seed(0)
    genome = Genome.from_string(EXAMPLES[name])
    assert any(layer.type == name for layer in genome.layers)
    analysis = analyze(genome)
    model = build_model(genome).train()
    shapes = []
    hooks = [module.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
             for module in list(model)[: len(genome.layers)]]
    x = torch.randn(4, genome.input.channels, genome.input.height, genome.input.width)
    out = model(x)
    for hook in hooks:
        hook.remove()
    assert shapes == [row.output_shape for row in analysis.layers]
    assert out.shape == (4, genome.input.classes)
    assert torch.isfinite(out).all()
    out.float().pow(2).mean().backward()
    assert sum(p.numel() for p in model.parameters()) == analysis.params
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def test_norm_layer_is_injectable():
    genome = Genome.from_string(EXAMPLES["res"])
    model = build_model(genome, norm_layer=lambda c: torch.nn.GroupNorm(1, c))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert sum(p.numel() for p in model.parameters()) == analyze(genome).params


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_fast_dropout_has_the_rate_and_scale_of_nn_dropout(layout):
    from blocks.library import Dropout

    torch.manual_seed(0)
    x = torch.ones(64, 8, 16, 16).contiguous(memory_format=layout)
    y = Dropout(0.2)(x)
    assert abs((y == 0).float().mean().item() - 0.2) < 0.01
    assert torch.allclose(y[y != 0], torch.tensor(1.25)) and y.is_contiguous(memory_format=layout)
    assert Dropout(0.2).eval()(x) is x
    per_channel = (y == 0).float().mean(dim=(0, 2, 3))
    assert (per_channel - 0.2).abs().max() < 0.03  # no channel left out of the draw


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_fast_dropout_mask_is_the_15_bit_draws_of_the_random_stream(layout):
    """Speed-ups of the mask must not change training results: the same seed gives the same mask."""
    from blocks.library import Dropout

    x = torch.randn(4, 3, 5, 7).contiguous(memory_format=layout).requires_grad_()
    torch.manual_seed(3)
    y = Dropout(0.3)(x)
    torch.manual_seed(3)
    words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_()
    draws = words.view(torch.int16)[:x.numel()] & 0x7FFF
    shape = (4, 5, 7, 3) if layout == torch.channels_last else (4, 3, 5, 7)  # drawn in memory order
    keep = (draws >= round(0.3 * 32768)).float().view(shape)
    keep = keep.permute(0, 3, 1, 2) if layout == torch.channels_last else keep
    assert torch.equal(y, x * (keep / 0.7))
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, keep / 0.7)


@pytest.mark.parametrize("kernel,stride,padding,ceil_mode", [(2, 2, 0, False), (2, 2, 0, True), (3, 2, 1, False),
                                                            (3, 1, 1, True), (3, 3, 0, False)])
def test_fast_max_pool_gives_nn_max_pools_outputs_and_gradients(kernel, stride, padding, ceil_mode):
    from blocks.library import MaxPool2d

    torch.manual_seed(0)
    x = torch.randint(0, 3, (4, 5, 11, 11)).float().requires_grad_()  # many ties: they go to the first maximum
    reference = torch.nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode)(x)
    grad = torch.randn_like(reference)
    expected_grad, = torch.autograd.grad(reference, x, grad)
    fast = MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode)
    y = fast(x)
    assert y.grad_fn is not None and "ChannelsLastMaxPool" in type(y.grad_fn).__name__  # the fast path ran
    assert torch.equal(y, reference) and y.is_contiguous()
    assert torch.equal(torch.autograd.grad(y, x, grad)[0], expected_grad)
    assert torch.equal(fast.eval()(x), reference)


@pytest.mark.parametrize("cin,cout,stride,size", [(6, 12, 2, 10), (3, 5, 3, 11), (8, 4, 2, 7)])
def test_strided_pointwise_conv_gives_nn_conv2ds_outputs_and_gradients(cin, cout, stride, size):
    from blocks.library import Conv2d

    torch.manual_seed(0)
    reference = torch.nn.Conv2d(cin, cout, 1, stride)
    conv = Conv2d(cin, cout, 1, stride)
    conv.load_state_dict(reference.state_dict())
    x = torch.randn(4, cin, size, size, requires_grad=True)
    expected = reference(x)
    y = conv(x)
    assert y.shape == expected.shape and torch.allclose(y, expected, atol=1e-6)
    grad = torch.randn_like(y)
    for got, want in zip(torch.autograd.grad(y, [x, conv.weight, conv.bias], grad),
                         torch.autograd.grad(expected, [x, reference.weight, reference.bias], grad)):
        assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("genome", [
    "i1x12x12n10-conv_c6_k3-res_c6_oacb-res_c8_s2-dws_c8_oacb-gap-conv_c10_k1_b0_oc",
    "i1x12x12n10-conv_c6_k3_ocabd_r0.1-res_c6_ocab-dws_c8-conv_c8_k3_oabcd_r0.1-flat-fc_c10_ocba",
])
@pytest.mark.parametrize("training", [True, False])
def test_in_place_relus_give_the_values_of_out_of_place_ones(genome, training):
    import copy

    torch.manual_seed(0)
    model = build_model(Genome.from_string(genome)).train(training)
    relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    assert any(m.inplace for m in relus) and not all(m.inplace for m in relus)  # a unit starting with 'a' keeps its input
    reference = copy.deepcopy(model)
    for m in reference.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    x = torch.randn(8, 1, 12, 12)
    outputs = []
    for net in (model, reference):
        torch.manual_seed(1)  # the same dropout masks
        out = net(x.clone())
        out.pow(2).mean().backward()
        outputs.append((out.detach(), [p.grad for p in net.parameters()]))
    assert torch.equal(outputs[0][0], outputs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(outputs[0][1], outputs[1][1]))
