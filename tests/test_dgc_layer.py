"""Each behaviour of docs/design.md's DGC section, one test each."""

import pytest
import torch
from helpers import run_execution
from torch import nn

from dgc.kernels import cpu
from dgc.kernels.cpu_layers import FUSED_CPU, use_cpu_kernels
from dgc.kernels.fused_triton import FUSED, fused_available, use_fused_kernel
from dgc.layers import DGC_EXECUTIONS, DGCConv2d, choose, set_progress, sparsity_loss
from dgc.layers.dgc_conv import rank_keys
from dgc.layers.executions import GATHER_DEVICES

# Every execution of a DGC layer: the layer's own (PyTorch) and those the kernels add to a model.
EXECUTIONS = DGC_EXECUTIONS.extended(FUSED_CPU, FUSED)


def make_layer(c_in=16, c_out=8, k=1, heads=4, g=0.25, **kw):
    layer = DGCConv2d(c_in, c_out, k, padding=k // 2, heads=heads, gate_factor=g, **kw)
    return layer


def every_execution(layer):
    """`layer` with every execution in its table (the kernels' too), as the tests below run it."""
    return use_fused_kernel(use_cpu_kernels(layer))


def test_the_executions_are_the_layers_and_the_kernels():
    assert set(DGC_EXECUTIONS) == {"masked", "scaled_weight", "sparse"}  # no kernel unless asked for
    assert set(EXECUTIONS) == {"masked", "scaled_weight", "sparse", "fused", "fused_cpu"}
    assert set(every_execution(make_layer()).executions) == set(EXECUTIONS)


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
    torch.testing.assert_close(layer.report.sparsity, expected)
    torch.testing.assert_close(sparsity_loss(layer), expected)


def test_sparsity_loss_sums_over_layers_of_a_model():
    model = nn.Sequential(make_layer(16, 16), make_layer(16, 8))
    model(torch.randn(2, 16, 4, 4))
    torch.testing.assert_close(sparsity_loss(model), model[0].report.sparsity + model[1].report.sparsity)


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


def _assert_agrees_with_masked(layer, x, name, tol):
    """Execution `name` gives the masked execution's output and, where it is differentiable, its
    input and parameter gradients (relative error < tol); skipped where it does not apply."""
    execution = EXECUTIONS[name]
    with torch.set_grad_enabled(execution.differentiable):
        if not execution.applies(layer, x):
            pytest.skip(f"{name} does not apply here: it needs {execution.needs}")
    ref = run_execution(layer, x, "masked")
    if execution.differentiable:
        got = run_execution(layer, x, name)
        assert layer.execution_path(x) == name  # it ran, no fallback
    else:  # forward only: the output, autograd off
        layer.execution = name
        with torch.no_grad():
            assert layer.execution_path(x) == name
            got = (layer(x),)
    assert got[0].shape == ref[0].shape
    assert _rel(got[0], ref[0]) < tol
    if execution.differentiable:
        assert _rel(got[1], ref[1]) < tol
        for param in ref[2]:
            assert _rel(got[2][param], ref[2][param]) < tol, param
    return got[0]


# Every execution of the table against the masked one (the authors' way), in float64 with the
# pruning schedule's n_in (inside the ramp too, where only the executions without a fixed n_in apply)
# and in float32 at a given n_in. The Triton `fused` execution runs on the CPU only under
# TRITON_INTERPRET=1: tests/test_fused_triton.py checks it there against `masked` in a child process.
@pytest.mark.parametrize("name", list(EXECUTIONS))
@pytest.mark.parametrize("c_in, c_out, k, stride, padding, heads, g, progress", [
    (16, 8, 1, 1, 0, 4, 0.25, 1.0),
    (16, 16, 1, 2, 0, 2, 0.5, 0.5),
    (24, 12, 3, 1, 1, 4, 0.25, 0.0),   # n_in = 0
    (32, 32, 3, 2, 1, 4, 0.25, 1.0),
    (8, 8, 3, 1, 2, 1, 0.5, 1.0),
    (16, 32, 5, 1, 2, 8, 0.75, 0.3),
])
def test_every_execution_equals_the_masked_one_in_float64(name, c_in, c_out, k, stride, padding,
                                                          heads, g, progress):
    layer = every_execution(DGCConv2d(c_in, c_out, k, stride, padding, heads=heads, gate_factor=g).double())
    layer.set_progress(progress)
    x = torch.randn(3, c_in, 9, 9, dtype=torch.float64)
    _assert_agrees_with_masked(layer, x, name, 1e-10)


@pytest.mark.parametrize("name", list(EXECUTIONS))
@pytest.mark.parametrize("c_in, c_out, k, stride, padding, heads, g, n_in", [
    (16, 8, 1, 1, 0, 4, 0.25, 12),
    (16, 16, 1, 2, 0, 2, 0.5, 8),
    (24, 12, 3, 1, 1, 4, 0.25, 0),     # n_in = 0
    (32, 32, 3, 2, 1, 4, 0.25, 24),
    (8, 8, 3, 1, 2, 1, 0.5, 7),        # the largest n_in that keeps a channel
    (16, 32, 5, 1, 2, 8, 0.75, 16),    # n_in = C_in: nothing kept
    (12, 8, 1, 1, 1, 4, 0.5, 6),       # 1x1 with padding goes the general way
    (8, 8, 1, 1, 0, 2, 0.5, 8),        # 1x1, nothing kept
])
def test_every_execution_equals_the_masked_one_in_float32(name, c_in, c_out, k, stride, padding,
                                                          heads, g, n_in):
    layer = every_execution(DGCConv2d(c_in, c_out, k, stride, padding, heads=heads, gate_factor=g))
    layer.set_inactive(n_in)
    x = torch.randn(3, c_in, 9, 9)
    out = _assert_agrees_with_masked(layer, x, name, 1e-5)
    if n_in == c_in:  # nothing kept: zeros (and zero gradients) from every execution
        assert torch.count_nonzero(out) == 0


@pytest.mark.parametrize("name", list(EXECUTIONS))
def test_every_execution_in_float32_and_channels_last(name):
    layer = every_execution(DGCConv2d(32, 16, 1, heads=4))
    layer.set_inactive(31)  # the largest count that keeps one channel
    x = torch.randn(4, 32, 6, 6).contiguous(memory_format=torch.channels_last)
    _assert_agrees_with_masked(layer, x, name, 1e-5)


def test_auto_execution_picks_by_memory():
    layer = DGCConv2d(512, 512, 3, padding=1, heads=4)
    assert layer.execution_path(torch.empty(1, 512, 4, 4)) == "masked"
    assert layer.execution_path(torch.empty(1, 512, 64, 64)) == "scaled_weight"
    layer.set_progress(1.0)
    assert layer.execution_path(torch.empty(1, 512, 4, 4)) == "masked"  # weights too big to gather
    assert layer.execution_path(torch.empty(1, 512, 64, 64)) == "sparse"
    assert DGCConv2d(512, 512, 1).execution_path(torch.empty(1, 512, 1, 1)) == "scaled_weight"


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
    s[3, 1, :6] = torch.tensor([float("inf"), 3.4028234663852886e38] * 3)  # inf above the largest float32
    s[4, 0, :6] = torch.tensor([1e-45, 0.0, 1e-45, 2e-45, -1e-45, 0.0])  # subnormals around zero
    s[4, 1, :4] = -float("inf")
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


def test_every_execution_agrees_with_masked_when_saliencies_tie():
    layer = every_execution(DGCConv2d(8, 4, 1, heads=2))
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
        for name, execution in EXECUTIONS.items():  # fused_cpu: its own (C++) top-k, the same ties
            if execution.applies(layer, x):
                layer.execution = name
                outs[name] = layer(x)
        layer.execution = "auto"  # the whole-layer kernel (its own C++ selection), where it applies
        if layer.execution_path(x) == "fused_layer_cpu":
            outs["fused_layer_cpu"] = layer(x)
    assert {"masked", "scaled_weight", "sparse"} <= set(outs)
    for name in outs:
        torch.testing.assert_close(outs[name], outs["masked"], msg=lambda m: f"{name}: {m}")


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


# expected: the execution of the steps (`choose`); path: what runs (`execution_path`): at CPU inference
# with n_in fixed, eval-mode BatchNorm and the kernels built, the whole layer in one C++ call.
@pytest.mark.parametrize("k, training, grad, progress, expected, path", [
    (1, False, False, 0.0, "scaled_weight", "fused_layer_cpu"),  # n_in = 0: nothing to skip
    (3, False, False, 0.0, "scaled_weight", "fused_layer_cpu"),  # per-sample weights no larger than the H copies
    (1, False, False, 1.0, "fused_cpu", "fused_layer_cpu"),  # CPU inference of a pruned 1x1: the C++ kernel
    (3, False, False, 1.0, "sparse", "fused_layer_cpu"),     # ... of a pruned k x k: fused_cpu falls back to sparse
    (1, False, True, 1.0, "sparse", "sparse"),           # eval with autograd on: fused_cpu falls back to sparse
    (1, True, False, 1.0, "fused_cpu", "fused_cpu"),     # train mode under no_grad is inference (batch statistics)
    (1, True, True, 1.0, "scaled_weight", "scaled_weight"),  # 1x1 training: one batched matmul
    (3, True, True, 1.0, "sparse", "sparse"),            # k x k training keeping a quarter
    (1, False, False, 0.5, "scaled_weight", "scaled_weight"),  # inside the pruning ramp: no gather
    (3, True, True, 0.5, "scaled_weight", "scaled_weight"),
])
def test_choose_auto_on_cpu_follows_the_documented_rules(k, training, grad, progress, expected, path):
    layer = use_cpu_kernels(DGCConv2d(16, 16, k, padding=k // 2)).train(training)
    layer.set_progress(progress)
    x = torch.randn(2, 16, 8, 8)
    if not cpu.cpu_kernels_available():  # no C++ kernels here: fused_cpu falls back, the steps run
        expected = "sparse" if expected == "fused_cpu" else expected
        path = expected if path in ("fused_cpu", "fused_layer_cpu") else path
    with torch.set_grad_enabled(grad):
        assert choose(layer, x).name == expected
        assert layer.execution_path(x) == path


def test_choose_auto_without_a_kernel_runs_the_pytorch_executions():
    """A layer not given the CPU kernels (a training run's) runs `sparse` where fused_cpu would."""
    layer = DGCConv2d(16, 16, 1).eval()
    layer.set_progress(1.0)
    with torch.no_grad():
        assert choose(layer, torch.randn(2, 16, 8, 8)).name == "sparse"


def test_choose_auto_on_a_device_that_does_not_gather():
    """A device type missing from GATHER_DEVICES (CUDA so far) runs scaled_weight or masked only."""
    assert "meta" not in GATHER_DEVICES and "cuda" not in GATHER_DEVICES
    one = every_execution(DGCConv2d(512, 512, 1)).eval()
    three = every_execution(DGCConv2d(512, 512, 3, padding=1)).eval()
    for layer in (one, three):
        layer.set_progress(1.0)
    with torch.no_grad():
        assert choose(one, torch.empty(1, 512, 64, 64, device="meta")).name == "scaled_weight"
        assert choose(three, torch.empty(1, 512, 64, 64, device="meta")).name == "scaled_weight"
        assert choose(three, torch.empty(1, 512, 4, 4, device="meta")).name == "masked"
        assert choose(three, torch.empty(1, 512, 64, 64)).name == "sparse"  # the same on the CPU


def test_choose_falls_back_where_an_execution_does_not_apply():
    for execution in EXECUTIONS.values():  # every fallback is in the table and always applies
        if execution.fallback is not None:
            assert EXECUTIONS[execution.fallback].fallback is None
    x = torch.randn(2, 16, 6, 6)
    one, three = every_execution(DGCConv2d(16, 8, 1)).eval(), every_execution(DGCConv2d(16, 8, 3, padding=1)).eval()
    for layer in (one, three):
        layer.set_inactive(12)
    one.execution = three.execution = "fused_cpu"
    with torch.no_grad():
        assert choose(three, x).name == "sparse"  # fused_cpu: 1x1 convs only
        assert choose(one, x.double()).name == "sparse"  # float32 only
    assert choose(one, x).name == "sparse"  # forward only: not with autograd on
    one.execution = three.execution = "fused"
    assert choose(three, x).name == "scaled_weight"  # fused: 1x1 convs only
    assert choose(one, x.double()).name == "scaled_weight"  # no float64 kernel
    # on the CPU the Triton kernel needs TRITON_INTERPRET=1 (tests/test_fused_triton.py)
    assert choose(one, x).name == ("fused" if fused_available("cpu") else "scaled_weight")
    one.set_progress(0.5)  # inside the pruning ramp: n_in not fixed, no gather
    assert choose(one, x).name == "scaled_weight"
    one.execution = "sparse"  # no fallback: it says what it needs
    with pytest.raises(RuntimeError, match="the sparse execution needs a fixed n_in"):
        one(x)
    one.execution = "fused_cpu"
    with torch.no_grad(), pytest.raises(RuntimeError, match="fixed n_in.*asked for: 'fused_cpu'"):
        choose(one, x)
    one.execution = "dense"
    with pytest.raises(ValueError, match="unknown execution 'dense'"):
        one(x)


def test_batched_saliency_equals_each_heads_generator():
    layer = DGCConv2d(40, 8, 1, heads=4)
    x = torch.relu(torch.randn(5, 40, 3, 3))
    expected = torch.stack([head.gate(x.mean(dim=(2, 3))) for head in layer.heads], dim=1)
    torch.testing.assert_close(layer.saliency(x), expected)
