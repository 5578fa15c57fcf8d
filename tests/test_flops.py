import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dgc.kernels.cpu import kernels_off
from dgc.measure.flops import breakdown, count_flops
from dgc.models import create_model


@pytest.mark.parametrize("name, num_classes, overrides, size, dense, expected, params", [
    ("densenet86_dgc", 10, {}, 32, 182_513_854, 71_037_118, 4_264_810),
    ("densenet86_dgc", 100, {}, 32, 182_585_944, 71_109_208, 4_336_900),
    ("densenet86_dgc", 10, {"gate_factor": 1.0}, 32, 182_513_854, 182_513_854, 4_264_810),
    ("condensenet74_dgc", 1000, {}, 224, None, 549_273_592, 24_060_664),
    ("resnet18_dgc", 1000, {}, 224, 1_822_947_848, 890_396_782, 12_335_144),
    ("resnet18_dgc", 1000, {"gate_factor": 1.0}, 224, 1_822_947_848, 1_822_947_848, 12_335_144),
])
def test_flops_equal_the_authors_counter(name, num_classes, overrides, size, dense, expected, params):
    result = count_flops(create_model(name, num_classes, **overrides), (3, size, size))
    assert result["flops_expected"] == expected
    assert result["params"] == params
    if dense is not None:
        assert result["flops_dense"] == dense


def _torch_counts(model, size):
    with FlopCounterMode(display=False) as counter:
        model.eval()
        with torch.no_grad(), kernels_off():  # the counter sees PyTorch ops only
            model(torch.zeros(1, 3, size, size))
    counts = counter.get_flop_counts()["Global"]
    conv = sum(v for op, v in counts.items() if "convolution" in str(op))
    mm = sum(v for op, v in counts.items() if "mm" in str(op))
    return conv, mm


@pytest.mark.parametrize("name, size", [("densenet86", 32), ("densenet86_gc", 32),
                                        ("resnet18", 224), ("resnet18_gc", 64)])
def test_dense_count_agrees_with_torch_flop_counter(name, size):
    model = create_model(name, 10)
    ours = breakdown(model, (3, size, size))
    conv, mm = _torch_counts(model, size)
    # torch counts 2 FLOPs per multiply-add, and no bias adds, activations or pooling.
    assert ours["conv"] == conv // 2
    biases = model.fc.out_features if hasattr(model, "fc") else model.classifier.out_features
    assert ours["linear"] - biases == mm // 2


def test_expected_flops_fall_linearly_with_the_gate_factor():
    counts = [count_flops(create_model("densenet86_dgc", 10, gate_factor=g))["flops_expected"]
              for g in (0.25, 0.5, 1.0)]
    assert counts[1] - counts[0] == pytest.approx((counts[2] - counts[0]) / 3, abs=1)


def test_profile_leaves_the_model_mode_alone():
    model = create_model("resnet18", 10, width=8, stem="cifar")
    model.train()
    count_flops(model)
    assert model.training


def test_bad_input_size_is_rejected():
    with pytest.raises(ValueError, match="input_size"):
        count_flops(create_model("resnet18", 10, width=8), (32, 32))
