"""Each behaviour of docs/design.md's DGC section, one test each."""

import pytest
import torch
from torch import nn

from dgc.layers import DGCConv2d, set_progress, sparsity_loss
from dgc.layers.dgc_conv import rank_keys
from helpers import run_execution


def make_layer(c_in=16, c_out=8, k=1, heads=4, g=0.25, **kw):
    layer = DGCConv2d(c_in, c_out, k, padding=k // 2, heads=heads, gate_factor=g, **kw)
    return layer


def test_output_shape_follows_conv_arithmetic():
    layer = DGCConv2d(16, 32, 3, stride=2, padding=1, heads=4)
    assert layer(torch.randn(2, 16, 9, 9)).shape == (2, 32, 5, 5)


def test_every_sample_and_head_keeps_c_in_minus_n_in_channels():
    layer = make_layer(c_in=16)
    layer.set_progress(0.5)
    assert layer.n_inactive == 8
    x = torch.relu(torch.randn(5, 16, 6, 6))
    keep = layer.keep_mask(layer.saliency(x))
    assert keep.shape == (5, 4, 16)
    assert (keep.sum(dim=2) == 16 - 8).all()


def test_the_smallest_saliencies_are_the_ones_pruned():
    layer = make_layer(c_in=16)
    layer.set_inactive(5)
    s = torch.rand(3, 4, 16)
    keep = layer.keep_mask(s)
    kept_min = torch.where(keep, s, torch.inf).amin(dim=2)
    dropped_max = torch.where(keep, -torch.inf, s).amax(dim=2)
    assert (dropped_max < kept_min).all()


def test_heads_choose_different_channels_for_different_samples():
    layer = make_layer(c_in=32, c_out=8)
    layer.set_progress(1.0)
    keep = layer.keep_mask(layer.saliency(torch.relu(torch.randn(8, 32, 4, 4))))
    assert not torch.equal(keep[0], keep[1])  # per sample
    assert not torch.equal(keep[:, 0], keep[:, 1])  # per head


def test_pruned_channels_receive_zero_gradient_and_kept_ones_do_not():
    layer = make_layer(c_in=16, c_out=8, k=1)
    layer.eval()  # fixed BN statistics so the input gradient maps channel to channel
    layer.execution = "masked"
    layer.set_inactive(12)
    x = torch.randn(1, 16, 5, 5, requires_grad=True)
    # Grab the exact selection made inside forward.
    captured = {}
    original = layer.select

    def spy(s):
        keep, kept = original(s)
        captured["keep"] = keep
        return keep, kept

    layer.select = spy
    y = layer(x)
    # Only head 0's outputs (channels 0, 4 with interleaving) and no saliency path to the input
    # through other heads: look at the conv branch gradient of head 0's weight.
    y[:, 0::4].sum().backward()
    w_grad = layer.heads[0].weight.grad  # (2, 16, 1, 1)
    kept = captured["keep"][0, 0]
    assert torch.count_nonzero(w_grad[:, ~kept]) == 0
    assert (w_grad[:, kept].abs().sum(dim=(0, 2, 3)) > 0).all()
    # Other heads' weights are untouched by head 0's outputs.
    assert torch.count_nonzero(layer.heads[1].weight.grad) == 0


def test_saliency_of_kept_channels_is_not_detached():
    layer = make_layer(c_in=16, c_out=8)
    layer.set_inactive(4)
    layer(torch.randn(4, 16, 5, 5)).sum().backward()
    assert layer.heads[0].gate.fc2.weight.grad.abs().sum() > 0
    assert layer.heads[3].gate.fc1.weight.grad.abs().sum() > 0


def test_outputs_are_interleaved_head_by_head():
    layer = make_layer(c_in=8, c_out=12, k=3, heads=4, g=1.0)
    layer.eval()
    x = torch.randn(2, 8, 6, 6)
    y = layer(x)
    a = torch.relu(layer.norm(x))
    s = layer.saliency(a)  # (B, H, C)
    for i, head in enumerate(layer.heads):
        out_i = nn.functional.conv2d(a * s[:, i, :, None, None], head.weight, padding=1)  # (B, 3, h, w)
        for j in range(3):
            torch.testing.assert_close(y[:, j * 4 + i], out_i[:, j], rtol=1e-5, atol=1e-5)


def test_sparsity_term_is_mean_saliency_summed_over_heads_before_pruning():
    layer = make_layer(c_in=16)
    layer.set_progress(1.0)
    x = torch.randn(3, 16, 4, 4)
    layer(x)
    s = layer.saliency(torch.relu(layer.norm(x)))  # batch stats as in the train-mode forward
    expected = sum(s[:, i].mean() for i in range(4))
    torch.testing.assert_close(layer.sparsity, expected)
    torch.testing.assert_close(sparsity_loss(layer), expected)


def test_sparsity_loss_sums_over_layers_of_a_model():
    model = nn.Sequential(make_layer(16, 16), make_layer(16, 8))
    model(torch.randn(2, 16, 4, 4))
    torch.testing.assert_close(sparsity_loss(model), model[0].sparsity + model[1].sparsity)


def test_sparsity_loss_of_a_plain_model_is_zero():
    assert float(sparsity_loss(nn.Conv2d(3, 3, 1))) == 0.0


def test_saliency_generator_shapes_and_init_follow_the_authors():
    small, large = make_layer(c_in=16), make_layer(c_in=352, c_out=128)
    assert small.heads[0].gate.fc1.weight.shape == (2, 16)  # s halved to 8 under 80 channels
    assert large.heads[0].gate.fc1.weight.shape == (22, 352)  # s = 16
    assert small.heads[0].gate.fc1.bias is None
    assert torch.equal(small.heads[0].gate.fc2.bias, torch.ones(16))
    assert len(small.heads) == 4 and small.heads[0].weight.shape == (2, 16, 1, 1)


def test_inactive_count_is_a_buffer_saved_and_restored():
    a, b = make_layer(), make_layer()
    a.set_progress(0.75)
    state = a.state_dict()
    assert int(state["inactive_channels"]) == 12
    b.load_state_dict(state)
    assert b.n_inactive == 12
    torch.testing.assert_close(b.eval()(torch.ones(1, 16, 3, 3)), a.eval()(torch.ones(1, 16, 3, 3)))


def test_set_progress_updates_every_layer_of_a_model():
    model = nn.Sequential(make_layer(16, 16), nn.ReLU(), make_layer(16, 8, g=0.5))
    assert set_progress(model, 1.0) == [12, 8]
    assert [model[0].n_inactive, model[2].n_inactive] == [12, 8]


def test_two_layers_progress_independently():
    a, b = make_layer(), make_layer()
    a.set_progress(1.0)
    assert b.n_inactive == 0  # no shared class- or module-level state


@pytest.mark.parametrize("kwargs, name", [
    (dict(heads=3), "heads"),
    (dict(c_out=6, heads=4), "heads"),
    (dict(g=0.0), "gate_factor"),
    (dict(g=1.5), "gate_factor"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_layer(**kwargs)


def test_set_progress_outside_unit_interval_raises():
    with pytest.raises(ValueError, match="progress"):
        set_progress(make_layer(), 1.5)


def test_no_pruning_at_gate_one_equals_a_dense_conv_on_scaled_input():
    layer = make_layer(c_in=8, c_out=8, k=3, g=1.0)
    layer.set_progress(1.0)
    assert layer.n_inactive == 0
    assert layer(torch.randn(2, 8, 5, 5)).shape == (2, 8, 5, 5)


def test_all_channels_pruned_gives_zero_output():
    layer = make_layer(c_in=8, c_out=8)
    layer.set_inactive(8)
    assert torch.count_nonzero(layer(torch.randn(2, 8, 3, 3))) == 0


def _rel(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@pytest.mark.parametrize("c_in, c_out, k, stride, padding, heads, g, progress", [
    (16, 8, 1, 1, 0, 4, 0.25, 1.0),
    (16, 16, 1, 2, 0, 2, 0.5, 0.5),
    (24, 12, 3, 1, 1, 4, 0.25, 0.0),   # n_in = 0
    (32, 32, 3, 2, 1, 4, 0.25, 1.0),
    (8, 8, 3, 1, 2, 1, 0.5, 1.0),
    (16, 32, 5, 1, 2, 8, 0.75, 0.3),
])
def test_scaled_weight_path_equals_the_masked_path_with_gradients(c_in, c_out, k, stride, padding,
                                                                   heads, g, progress):
    layer = DGCConv2d(c_in, c_out, k, stride, padding, heads=heads, gate_factor=g).double()
    layer.set_progress(progress)
    x = torch.randn(3, c_in, 9, 9, dtype=torch.float64)
    ref = run_execution(layer, x, "masked")
    fast = run_execution(layer, x, "scaled_weight")
    assert _rel(fast[0], ref[0]) < 1e-10 and _rel(fast[1], ref[1]) < 1e-10
    for name in ref[2]:
        assert _rel(fast[2][name], ref[2][name]) < 1e-10, name


def test_scaled_weight_path_in_float32_and_channels_last():
    layer = DGCConv2d(32, 16, 1, heads=4)
    layer.set_inactive(31)  # the largest count that keeps one channel
    x = torch.randn(4, 32, 6, 6).contiguous(memory_format=torch.channels_last)
    ref = run_execution(layer, x, "masked")
    fast = run_execution(layer, x, "scaled_weight")
    assert _rel(fast[0], ref[0]) < 1e-5 and _rel(fast[1], ref[1]) < 1e-5
    assert all(_rel(fast[2][n], ref[2][n]) < 1e-5 for n in ref[2])


def test_auto_execution_picks_by_memory():
    layer = DGCConv2d(512, 512, 3, padding=1, heads=4)
    assert layer.execution_path(torch.empty(1, 512, 4, 4)) == "masked"
    assert layer.execution_path(torch.empty(1, 512, 64, 64)) == "scaled_weight"
    layer.set_progress(1.0)
    assert layer.execution_path(torch.empty(1, 512, 4, 4)) == "masked"  # weights too big to gather
    assert layer.execution_path(torch.empty(1, 512, 64, 64)) == "sparse"
    assert DGCConv2d(512, 512, 1).execution_path(torch.empty(1, 512, 1, 1)) == "scaled_weight"


@pytest.mark.parametrize("c_in, c_out, k, stride, padding, heads, g, n_in", [
    (16, 8, 1, 1, 0, 4, 0.25, 12),
    (16, 16, 1, 2, 0, 2, 0.5, 8),
    (24, 12, 3, 1, 1, 4, 0.25, 0),     # n_in = 0
    (32, 32, 3, 2, 1, 4, 0.25, 24),
    (8, 8, 3, 1, 2, 1, 0.5, 7),        # the largest n_in that keeps a channel
    (16, 32, 5, 1, 2, 8, 0.75, 16),    # n_in = C_in: nothing kept
    (12, 8, 1, 1, 1, 4, 0.5, 6),       # 1x1 with padding goes the general way
])
def test_sparse_path_equals_the_masked_path_with_gradients(c_in, c_out, k, stride, padding, heads, g, n_in):
    layer = DGCConv2d(c_in, c_out, k, stride, padding, heads=heads, gate_factor=g)
    layer.set_inactive(n_in)
    x = torch.randn(3, c_in, 9, 9)
    ref = run_execution(layer, x, "masked")
    sparse = run_execution(layer, x, "sparse")
    assert sparse[0].shape == ref[0].shape
    if n_in == c_in:
        assert torch.count_nonzero(sparse[0]) == 0
        return
    assert _rel(sparse[0], ref[0]) < 1e-5 and _rel(sparse[1], ref[1]) < 1e-5
    for name in ref[2]:
        assert _rel(sparse[2][name], ref[2][name]) < 1e-5, name


def test_ties_at_the_boundary_drop_the_lowest_channel_indices():
    layer = make_layer(c_in=8, c_out=4, heads=2)
    layer.set_inactive(3)
    s = torch.tensor([[[0.5, 1.0, 1.0, 0.2, 1.0, 1.0, 2.0, 3.0], [1.0] * 8]])  # (1, 2, 8)
    keep = layer.keep_mask(s)
    assert keep[0, 0].tolist() == [False, False, True, False, True, True, True, True]  # 0.2, 0.5, first 1.0
    assert keep[0, 1].tolist() == [False] * 3 + [True] * 5


def test_rank_keys_order_like_a_stable_sort_of_the_saliencies():
    gen = torch.Generator().manual_seed(0)
    s = torch.relu(torch.randn(6, 3, 36, generator=gen))  # about half exact zeros: many ties
    s[0, 0, 5:20] = 0.25
    s[1, 1] = torch.tensor([-0.0, 0.0] * 17 + [1.0, 2.0])  # -0.0 ties with 0.0
    s[2, 2, :10] = -torch.rand(10, generator=gen)  # negatives rank below zero
    s[3, 0, :4] = float("inf")
    order = rank_keys(s).argsort(dim=2)
    assert torch.equal(order, (s + 0.0).argsort(dim=2, stable=True))
    assert (rank_keys(s).sort(dim=2).values.diff(dim=2) > 0).all()  # unique within every row
    layer = DGCConv2d(36, 6, 1, heads=3, squeeze_rate=4)
    for n in (0, 1, 18, 35, 36):
        layer.set_inactive(n)
        keep, kept = layer.select(s)
        expected = torch.ones_like(keep).scatter_(2, order[..., :n], False)
        assert torch.equal(keep, expected), n
        if kept is not None:
            assert torch.equal(kept.sort(dim=2).values, order[..., n:].sort(dim=2).values), n


def test_sparse_and_masked_paths_agree_when_saliencies_tie():
    layer = DGCConv2d(8, 4, 1, heads=2)
    layer.set_inactive(2)
    for head in layer.heads:  # saliency = fc2 bias: channels 2-5 tie at 1.0 across the boundary
        torch.nn.init.zeros_(head.gate.fc2.weight)
        with torch.no_grad():
            head.gate.fc2.bias.copy_(torch.tensor([0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.5, 2.0]))
    layer.set_inactive(4)
    x = torch.randn(2, 8, 3, 3)
    layer.eval()
    assert layer.execution_path(x) == "sparse"
    with torch.no_grad():
        outs = {}
        for path in ("sparse", "masked"):
            layer.execution = path
            outs[path] = layer(x)
    torch.testing.assert_close(outs["sparse"], outs["masked"])


def test_auto_execution_uses_the_sparse_path_when_channels_are_pruned():
    layer = DGCConv2d(16, 16, 3, padding=1)
    x = torch.randn(1, 16, 8, 8)
    layer.eval()
    assert layer.execution_path(x) != "sparse"  # n_in = 0: nothing to skip
    layer.set_progress(1.0)
    assert layer.execution_path(x) == "sparse"
    layer.train()
    assert layer.execution_path(x) == "sparse"  # k x k, a quarter kept: the sparse path trains faster
    layer.gate_factor = 0.5
    layer.set_progress(1.0)
    assert layer.execution_path(x) == "scaled_weight"  # half kept: per-sample weights train faster
    one = DGCConv2d(16, 16, 1)
    one.set_progress(1.0)
    assert one.execution_path(x) == "scaled_weight"  # 1x1 training: batched matmul
    one.eval()
    assert one.execution_path(x) == "sparse"


def test_batched_saliency_equals_each_heads_generator():
    layer = DGCConv2d(40, 8, 1, heads=4)
    x = torch.relu(torch.randn(5, 40, 3, 3))
    expected = torch.stack([head.gate(x.mean(dim=(2, 3))) for head in layer.heads], dim=1)
    torch.testing.assert_close(layer.saliency(x), expected)
