"""Latency per runtime (dgc/measure/runtimes.py) and where the evaluate stage records it."""

import pytest
import torch

from dgc.config import ConfigError, load_params
from dgc.measure.runtimes import fastest, runtimes_to_time
from dgc.stages.train import train_model


def test_fastest_picks_the_smallest_per_batch_size_and_names_its_runtime():
    ms = {"eager": {"batch_1": 3.0, "batch_64": 1.0}, "onnxruntime": {"batch_1": 2.0, "batch_64": 1.5},
          "compiled": {"batch_64": 1.0, "batch_1": 4.0}}
    assert fastest(ms) == ({"batch_1": 2.0, "batch_64": 1.0}, {"batch_1": "onnxruntime", "batch_64": "eager"})


@pytest.mark.parametrize("runtimes, setting, device, expected", [
    (("eager", "onnxruntime"), "auto", "cpu", ["eager", "onnxruntime"]),  # auto stays eager on the CPU
    (("eager", "onnxruntime"), "auto", "cuda", ["eager", "onnxruntime", "compiled"]),  # as before runtimes
    (("eager",), "default", "cpu", ["eager", "compiled"]),  # a mode compiles
    (("compiled", "eager"), "off", "cpu", ["compiled", "eager"]),  # asked for: mode 'default'
])
def test_the_runtimes_timed(runtimes, setting, device, expected):
    assert runtimes_to_time(runtimes, setting, torch.device(device)) == expected


@pytest.mark.parametrize("value, message", [
    (["eager", "tensorrt"], "evaluate.runtimes: unknown runtime 'tensorrt'"),
    ([], "evaluate.runtimes must be a non-empty list"),
    (["eager", "eager"], "evaluate.runtimes must be a non-empty list of distinct runtimes"),
])
def test_bad_runtimes_are_named(value, message, tiny_params_file):
    with pytest.raises(ConfigError, match=message):
        load_params(tiny_params_file, {"evaluate.runtimes": value})


@pytest.mark.slow
def test_evaluate_times_every_runtime_and_records_the_fastest(tmp_path, tiny_params_file, one_torch_thread):
    from dgc.config import with_overrides
    from dgc.stages.evaluate import evaluate_run

    params = load_params(tiny_params_file, {"train.epochs": 1, "evaluate.device": "cpu",
                                            "evaluate.latency_batch_sizes": [1, 3], "evaluate.latency_repeats": 2})
    train_model("digits", "resnet18_dgc", params, tmp_path, log=lambda s: None)
    result = evaluate_run("digits", "resnet18_dgc", params, tmp_path, log=lambda s: None)
    metrics, info = result["metrics"], result["info"]
    by_runtime = metrics["latency_ms_per_image_by_runtime"]
    assert list(by_runtime) == ["eager", "onnxruntime"] == info["latency_runtimes"]
    for batch in ("batch_1", "batch_3"):
        runtime = info["latency_runtime"][batch]
        assert metrics["latency_ms_per_image"][batch] == by_runtime[runtime][batch]
        assert by_runtime[runtime][batch] == min(row[batch] for row in by_runtime.values()) > 0
    assert info["latency_compile"] == "off" and info["latency_skipped"] == {}
    assert 0 <= info["latency_onnx_max_rel_diff"] < 1e-4  # ONNX Runtime timed the same model
    eager_only = evaluate_run("digits", "resnet18_dgc", with_overrides(params, "evaluate", runtimes=("eager",)),
                              tmp_path, log=lambda s: None)
    assert list(eager_only["metrics"]["latency_ms_per_image_by_runtime"]) == ["eager"]
    assert eager_only["info"]["latency_runtime"] == {"batch_1": "eager", "batch_3": "eager"}
    assert eager_only["info"]["latency_onnx_max_rel_diff"] is None
