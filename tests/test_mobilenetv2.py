"""MobileNetV2 with DGC 1x1 convs (preact=False), its dense and static-group baselines."""

import pytest
import torch
from helpers import run_execution
from torch import nn

from dgc.layers import DGCConv2d, ShuffledGroupConv2d, dgc_layers, set_progress, sparsity_loss
from dgc.measure.flops import breakdown, count_flops
from dgc.models import convs, create_model, list_models
from dgc.models.mobilenetv2 import InvertedResidual, round_channels

NARROW = dict(width=0.25, blocks=(1, 1, 1, 1, 1, 1, 1), stem="cifar")


def _final_map(model, x):
    """Spatial size of the input of the last 1x1 conv (the last stage's output)."""
    seen = {}
    handle = model.conv_last.register_forward_hook(
        lambda m, a, o: seen.update(hw=tuple(a[0].shape[-2:])))
    logits = model(x)
    handle.remove()
    return logits, seen["hw"]


@pytest.mark.parametrize("name", ["mobilenetv2_dgc", "mobilenetv2", "mobilenetv2_gc"])
@pytest.mark.parametrize("stem, width, size, final", [
    ("cifar", 0.25, 32, 4),      # stem and stage 2 at stride 1: 32 / 8
    ("imagenet", 0.25, 64, 2),   # stride 32 overall
    ("imagenet", 0.5, 32, 1),
])
def test_forward_shapes_for_both_stems(name, stem, width, size, final):
    model = create_model(name, 5, stem=stem, width=width, blocks=(1, 1, 1, 2, 1, 1, 1))
    logits, hw = _final_map(model, torch.randn(2, 3, size, size))
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    assert hw == (final, final)


def test_narrow_width_rounds_every_stage_to_multiples_of_8():
    model = create_model("mobilenetv2", 10, width=0.35)
    # 32*0.35 = 11.2 -> 8 would be 29% below, so 16; 16*0.35 = 5.6 -> 8 (never below 8);
    # 320*0.35 = 112 -> 112; the last conv stays 1280 for width <= 1.
    assert model.conv_stem.out_channels == 16
    assert model.stage1[0].conv_project.out_channels == 8
    assert model.stage7[0].conv_project.out_channels == 112
    assert model.conv_last.out_channels == 1280
    assert model.stage2[0].conv_expand.out_channels == 6 * 8  # hidden = t x input


def test_round_channels_rule():
    bumped = 0
    for value in (x / 4 for x in range(1, 2000)):
        r = round_channels(value)
        assert r % 8 == 0 and r >= 8 and r >= 0.9 * value, value
        # Nearest multiple of 8, unless that is below 8 or more than 10% below value (one step up).
        nearest = int(value + 4) // 8 * 8
        assert r == nearest or (r == nearest + 8 and (nearest < 8 or nearest < 0.9 * value)), value
        bumped += r != nearest
    assert bumped > 0  # the 10% rule really fires in this range (e.g. 11.2 -> 16)


def test_full_size_dense_model_has_the_reference_parameter_count():
    # 3,504,872: the MobileNetV2 1.0 parameter count of the reference implementations (1000 classes).
    assert sum(p.numel() for p in create_model("mobilenetv2", 1000).parameters()) == 3_504_872


def test_dgc_placement():
    model = create_model("mobilenetv2_dgc", 10, **NARROW)
    layers = dgc_layers(model)
    assert len(layers) == 1 + 2 * 6  # the t = 1 first block has no expansion conv
    assert {(l.preact, l.kernel_size, l.num_heads, l.gate_factor) for l in layers} == {
        (False, (1, 1), 4, 0.5)}
    assert not any(".norm." in k for k in model.state_dict())  # preact=False: no BN inside DGC
    block = model.stage3[0]
    assert isinstance(block.conv_expand, DGCConv2d) and isinstance(block.conv_project, DGCConv2d)
    assert type(block.conv_dw) is nn.Conv2d and block.conv_dw.groups == block.conv_dw.in_channels
    assert type(model.conv_stem) is nn.Conv2d and type(model.conv_last) is nn.Conv2d
    gc = create_model("mobilenetv2_gc", 10, **NARROW)
    assert not dgc_layers(gc)
    assert isinstance(gc.stage3[0].conv_expand, ShuffledGroupConv2d)
    assert gc.stage3[0].conv_project.groups == 2
    assert type(create_model("mobilenetv2", 10, **NARROW).stage3[0].conv_expand) is nn.Conv2d


@pytest.mark.parametrize("c_in, c_out, stride, size", [(8, 8, 1, 5), (8, 16, 2, 6)])
def test_one_block_flops_and_params_by_hand(c_in, c_out, stride, size):
    heads, g, t = 2, 0.5, 2
    factory = convs.dgc(heads, g, squeeze_rate=4, preact=False)
    hidden = t * c_in
    block = InvertedResidual(c_in, hidden, c_out, stride, factory, factory)
    assert block.use_residual == (stride == 1 and c_in == c_out)
    h_in, h_out = size, (size + 2 - 3) // stride + 1
    a_in, a_out = h_in * h_in, h_out * h_out
    # Gate hidden widths: squeeze rate 4 halved to 2 under 80 channels.
    r_exp, r_proj = c_in // 2, hidden // 2

    def dgc_overhead(c, r, area):  # no pre-ReLU (preact=False): pool + per head gate and scaling
        per_head = c * r + r + (r * c + c) + c + c  # fc1 w, fc1 ReLU, fc2 w+b, fc2 ReLU, scaling
        return c * area + heads * per_head

    expand = c_in * hidden * a_in  # 1x1 at the input resolution
    project = hidden * c_out * a_out  # 1x1 after the (strided) depthwise
    depthwise = hidden * hidden * 3 * 3 * a_out // hidden
    relu6 = hidden * a_in + hidden * a_out
    overhead = dgc_overhead(c_in, r_exp, a_in) + dgc_overhead(hidden, r_proj, a_out)
    params = (hidden * c_in + heads * (c_in * r_exp + r_exp * c_in + c_in)  # expansion DGC
              + 2 * hidden + hidden * 9 + 2 * hidden  # bn_expand, depthwise, bn_dw
              + c_out * hidden + heads * (hidden * r_proj + r_proj * hidden + hidden)  # projection
              + 2 * c_out)  # bn_project
    result = count_flops(block, (c_in, size, size))
    assert result["flops_dense"] == expand + project + depthwise + relu6 + overhead
    assert result["flops_expected"] == g * (expand + project) + depthwise + relu6 + overhead
    assert result["params"] == params
    # The 2-group baseline block costs the DGC block's expected FLOPs minus the gate overhead.
    gc_block = InvertedResidual(c_in, hidden, c_out, stride, convs.grouped(2), convs.grouped(2))
    gc_flops = count_flops(gc_block, (c_in, size, size))["flops_dense"]
    assert gc_flops == (expand + project) // 2 + depthwise + relu6


def test_preact_false_layer_has_no_norm_and_convolves_the_raw_input():
    layer = DGCConv2d(8, 12, 3, padding=1, heads=4, gate_factor=1.0, preact=False)
    with_preact = DGCConv2d(8, 12, 3, padding=1, heads=4, gate_factor=1.0)
    assert not hasattr(layer, "norm") and not hasattr(layer, "relu")
    assert set(with_preact.state_dict()) - set(layer.state_dict()) == {
        k for k in with_preact.state_dict() if k.startswith("norm.")}
    assert "preact=False" in repr(layer) and "preact" not in repr(with_preact)
    x = torch.randn(2, 8, 6, 6)  # signed: a hidden ReLU would change the result
    s = layer.saliency(x)
    y = layer(x)
    for i, head in enumerate(layer.heads):
        out_i = nn.functional.conv2d(x * s[:, i, :, None, None], head.weight, padding=1)
        for j in range(3):
            torch.testing.assert_close(y[:, j * 4 + i], out_i[:, j], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("c_in, c_out, k, stride, padding, n_in", [
    (24, 16, 1, 1, 0, 12),
    (16, 24, 1, 1, 0, 0),
    (16, 16, 3, 2, 1, 10),
])
def test_preact_false_executions_agree_in_output_and_gradients(c_in, c_out, k, stride, padding, n_in):
    layer = DGCConv2d(c_in, c_out, k, stride, padding, heads=4, gate_factor=0.5, preact=False).double()
    layer.set_inactive(n_in)
    x = torch.randn(3, c_in, 7, 7, dtype=torch.float64)
    ref = run_execution(layer, x, "masked")
    for path in ("scaled_weight", "sparse"):
        out = run_execution(layer, x, path)
        torch.testing.assert_close(out[0], ref[0])
        torch.testing.assert_close(out[1], ref[1])
        for name in ref[2]:
            torch.testing.assert_close(out[2][name], ref[2][name], msg=f"{path}: {name}")


def test_narrow_dgc_model_trains_one_step_with_pruning():
    torch.manual_seed(0)
    model = create_model("mobilenetv2_dgc", 4, **NARROW)
    counts = set_progress(model, 0.9)
    assert all(n > 0 for n in counts)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    loss = nn.functional.cross_entropy(model(x), y) + 1e-4 * sparsity_loss(model)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.stage4[0].conv_project.heads[0].gate.fc1.weight.grad.abs().sum() > 0


def test_dgc_expected_flops_equal_the_gc_budget_plus_the_gate_overhead():
    size = (3, 32, 32)
    settings = dict(width=0.5, blocks=(1, 2, 1, 1, 1, 1, 1), stem="cifar")
    dgc = create_model("mobilenetv2_dgc", 10, **settings)
    dense = create_model("mobilenetv2", 10, **settings)
    gc = create_model("mobilenetv2_gc", 10, **settings)
    p_dgc, p_dense, p_gc = count_flops(dgc, size), count_flops(dense, size), count_flops(gc, size)
    b_dgc, b_dense, b_gc = breakdown(dgc, size), breakdown(dense, size), breakdown(gc, size)
    assert p_dgc["flops_expected"] < p_dense["flops_dense"]
    # The 1x1 convs' dense cost: what the 2-group baseline saves over the dense model, twice.
    saved_by_gc = b_dense["conv"] - b_gc["conv"]
    assert b_dgc["dgc_conv_dense"] == 2 * saved_by_gc
    assert b_dgc["dgc_conv_expected"] == saved_by_gc
    overhead = b_dgc["dgc_overhead"]
    assert 0 < overhead < saved_by_gc
    assert p_dgc["flops_expected"] == p_gc["flops_dense"] + overhead
    assert p_dgc["flops_dense"] == p_dense["flops_dense"] + overhead
    assert p_gc["params"] < p_dense["params"] < p_dgc["params"]


def test_registry_lists_the_three_models():
    assert {"mobilenetv2_dgc", "mobilenetv2", "mobilenetv2_gc"} <= set(list_models())


@pytest.mark.parametrize("name, setting, value, match", [
    ("mobilenetv2_dgc", "heads", 3, "heads=3 must divide"),
    ("mobilenetv2_dgc", "heads", 16, "heads=16 must divide.*8"),  # 8-channel stage at width 0.25
    ("mobilenetv2_dgc", "heads", 0, "heads must be a positive integer"),
    ("mobilenetv2_gc", "groups", 3, "groups=3 must divide"),
])
def test_bad_heads_or_groups_raise(name, setting, value, match):
    with pytest.raises(ValueError, match=match):
        create_model(name, 10, width=0.25, **{setting: value})


@pytest.mark.parametrize("overrides, match", [
    (dict(width=0), "width"),
    (dict(blocks=(1, 2, 3)), "blocks"),
    (dict(blocks=(1, 2, 3, 0, 3, 3, 1)), "blocks"),
    (dict(stem="tiny"), "stem"),
])
def test_bad_layout_settings_raise(overrides, match):
    with pytest.raises(ValueError, match=match):
        create_model("mobilenetv2", 10, **overrides)
