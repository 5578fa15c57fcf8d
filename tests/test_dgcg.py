"""DGC-G: one saliency threshold over every DGC layer of a model (the paper's Sec. 6.1 variant)."""

import pytest
import torch
from torch import nn

from dgc.layers import DGCConv2d, GlobalThreshold, angle_loss, set_progress
from dgc.layers.pruning_schedule import pruned_fraction
from dgc.measure.flops import actual_flops, dgc_flops
from dgc.measure.usage import measure_usage
from dgc.models import create_model
from dgc.runtime.checkpoint import load_model, model_payload, save_checkpoint


class Parallel(nn.Module):
    """Three DGC-G layers side by side, each on its own input (one model for GlobalThreshold)."""

    def __init__(self, widths=(16, 32, 48), gate_factor=0.25):
        super().__init__()
        self.layers = nn.ModuleList(DGCConv2d(c, 8, 1, heads=2, gate_factor=gate_factor,
                                              selection="global") for c in widths)

    def forward(self, xs):
        return [layer(x) for layer, x in zip(self.layers, xs)]


def inputs(widths=(16, 32, 48), batch=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, 4, 4, generator=g) for c in widths]


def estimate(model, xs, progress):
    """Collect G on one batch, summarise it and set T at `progress`."""
    selection = GlobalThreshold(model, window=1)
    selection.before_step(progress, 0, 1)  # the epoch's last step: collect
    model(xs)
    selection.end_epoch(progress)
    return selection


def kept_counts(model, xs):
    for layer in model.layers:
        layer.report.usage = True
    model(xs)
    return [layer.report.kept for layer in model.layers]


@pytest.mark.parametrize("progress", [0.3, 0.5, 1.0])
def test_global_threshold_keeps_the_target_fraction_over_all_layers(progress):
    model = Parallel().eval()
    xs = inputs()
    estimate(model, xs, progress)
    kept = kept_counts(model, xs)
    total = sum(k.numel() for k in kept)
    target = (1 - pruned_fraction(0.25, progress)) * total
    # within one channel per layer and row (sample, head); the quantile table is 1/1000 fine
    rows = sum(k.shape[0] * k.shape[1] for k in kept)
    assert abs(sum(int(k.sum()) for k in kept) - target) <= rows / len(kept)


def test_pruning_is_uneven_across_layers_on_a_constructed_input():
    model = Parallel(widths=(16, 16, 16)).eval()
    # Saliency = fc2's bias where fc2's weight is zero: layer 0 high, layer 2 low, layer 1 between.
    for layer, (lo, hi) in zip(model.layers, [(2.0, 3.0), (1.0, 2.0), (0.0, 1.0)]):
        for head in layer.heads:
            nn.init.zeros_(head.gate.fc2.weight)
            head.gate.fc2.bias.data = torch.linspace(lo, hi, 16)
    xs = inputs(widths=(16, 16, 16))
    estimate(model, xs, 1.0)  # prune 75% of all saliencies
    fractions = [float(k.float().mean()) for k in kept_counts(model, xs)]
    # 75% of the 48 channels per row: all of layers 2 and 1 (the lowest 32), a few of layer 0.
    assert fractions[2] == 0.0 and fractions[1] == 0.0 and fractions[0] > 0.7
    assert abs(sum(fractions) / 3 - 0.25) <= 1 / 16


def test_rows_keep_different_numbers_and_every_execution_agrees():
    torch.manual_seed(0)
    layer = DGCConv2d(16, 8, 3, padding=1, heads=2, selection="global")
    x = torch.randn(4, 16, 6, 6, requires_grad=True)
    with torch.no_grad():
        layer.threshold.fill_(float(layer.saliency(torch.relu(layer.norm(x))).median()))
    outs, grads = {}, {}
    for path in ("masked", "scaled_weight", "sparse"):
        layer.execution = path
        layer.report.usage = True
        out = layer(x)
        outs[path] = out
        grads[path] = torch.autograd.grad(out.square().sum(), [x, layer.heads[0].weight,
                                                              layer.heads[1].gate.fc2.bias])
    counts = layer.report.kept.sum(dim=2)
    assert counts.unique().numel() > 1  # uneven: not a fixed number per row
    for path in ("scaled_weight", "sparse"):
        torch.testing.assert_close(outs[path], outs["masked"], rtol=1e-4, atol=1e-5)
        for a, b in zip(grads[path], grads["masked"]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_threshold_round_trips_through_a_checkpoint(tmp_path):
    model = create_model("densenet86_dgcg", 10, growth=[4, 4, 8], depth=[1, 1, 1])
    x = torch.randn(8, 3, 32, 32)
    model.train()
    selection = GlobalThreshold(model, window=1)
    set_progress(model, 0.6)
    selection.before_step(0.6, 0, 1)
    model(x)
    selection.end_epoch(0.6)
    model.eval()
    thresholds = {n: float(b) for n, b in model.named_buffers() if n.endswith("threshold")}
    assert len(thresholds) == 3 and len(set(thresholds.values())) == 1 and min(thresholds.values()) > 0
    save_checkpoint(tmp_path / "m.pt", model_payload(model))
    loaded, _ = load_model(tmp_path / "m.pt", torch.device("cpu"))
    assert {n: float(b) for n, b in loaded.named_buffers() if n.endswith("threshold")} == thresholds
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model(x))


def test_expected_flops_of_uneven_pruning_by_hand():
    model = Parallel(widths=(16, 32), gate_factor=0.25).eval()
    xs = inputs(widths=(16, 32))
    estimate(model, xs, 1.0)
    usage = measure_usage(model, [(xs, None)])
    kept = {row["name"]: row["kept_fraction"] for row in usage["layers"]}
    assert abs(kept["layers.0"] - kept["layers.1"]) > 0.01  # uneven
    # By hand: every layer's overhead + its dense 1x1 conv (C_in * 8 * 4 * 4) times its kept fraction.
    expected = 0.0
    for name, layer in zip(("layers.0", "layers.1"), model.layers):
        overhead, dense = dgc_flops(layer, (4, 4), (4, 4))
        assert dense == layer.in_channels * 8 * 16
        expected += overhead + dense * kept[name]

    class Both(nn.Module):  # actual_flops feeds one input: give both layers their own slice
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner([x[:, :16], x])

    assert actual_flops(Both(model), (32, 4, 4), {f"inner.{k}": v for k, v in kept.items()}) == round(expected)


def test_training_steps_estimate_t_from_the_window_and_the_angle_term_has_gradients():
    model = create_model("densenet86_dgcg", 10, growth=[4, 4, 8], depth=[1, 1, 1]).train()
    selection = GlobalThreshold(model, window=2)
    x = torch.randn(8, 3, 32, 32)
    thresholds = []
    for epoch in range(2):
        for i in range(4):
            p = (epoch * 4 + i) / 8
            set_progress(model, p)
            selection.before_step(p, i, 4)
            assert [layer.report.collect for layer in selection.layers] == [i >= 2] * 3
            model(x)
            loss = angle_loss(model)
            assert 0 < float(loss.detach()) <= 3  # three layers, each a mean cosine similarity in [0, 1]
            loss.backward()
        selection.end_epoch((epoch + 1) / 8 * 4 / 4)
        thresholds.append(float(selection.layers[0].threshold))
        assert all(layer.report.saliencies == [] for layer in selection.layers)
    assert selection.quantiles is not None and thresholds[-1] > 0
    assert model.features.denseblock_1.denselayer_1.conv_1.heads[0].gate.fc1.weight.grad.abs().sum() > 0
