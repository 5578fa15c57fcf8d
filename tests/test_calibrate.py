"""What is timed produces finite outputs: BatchNorm statistics are calibrated before any timing."""

import pytest
import torch

from dgc.bench.speed import bench_models
from dgc.layers import set_progress
from dgc.measure.calibrate import calibrate_batchnorm, check_finite, ready_for_timing
from dgc.measure.latency import inference_latency
from dgc.models import create_model


def untrained(name):
    torch.manual_seed(0)
    model = create_model(name, 10, stem="cifar")
    set_progress(model, 1.0)
    return model.eval()


def test_untrained_dgc_model_overflows_in_eval_mode_and_calibration_fixes_it():
    model = untrained("densenet86_dgc")
    x = torch.randn(4, 3, 32, 32)
    assert not check_finite(model, x)  # the failure the calibration exists for
    calibrate_batchnorm(model, steps=2, batch_size=8)
    assert not model.training and check_finite(model, x)
    bn = model.features.denseblock_3.denselayer_14.conv_1.norm
    assert bn.momentum == 0.1 and bn.num_batches_tracked == 2  # averaged over 2 batches, then restored


def test_timing_refuses_a_model_with_non_finite_outputs():
    with pytest.raises(ValueError, match="non-finite"):
        ready_for_timing(untrained("resnet18_dgc"), (3, 32, 32), torch.device("cpu"), calibrate=False)
    with pytest.raises(ValueError, match="non-finite"):
        inference_latency(untrained("resnet18_dgc"), torch.device("cpu"), 2, repeats=1)


def test_bench_models_times_calibrated_models_with_finite_outputs(monkeypatch):
    import dgc.bench.speed as bench

    monkeypatch.setattr(bench, "MODEL_PAIRS", [("resnet18_dgc", "resnet18")])
    timed = []
    original = bench.ready_for_timing

    def spy(model, *args, **kwargs):
        out = original(model, *args, **kwargs)
        timed.append(check_finite(out, torch.randn(3, 3, 32, 32)))
        return out

    monkeypatch.setattr(bench, "ready_for_timing", spy)
    rows = bench_models(torch.device("cpu"), batches=(2,), repeats=1, log=lambda _: None)
    assert timed == [True, True] and [r["model"] for r in rows] == ["resnet18_dgc", "resnet18"]
    assert all(r["ms_per_image"]["2"] > 0 for r in rows)
