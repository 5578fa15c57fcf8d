from pathlib import Path

import pytest
import torch
from official_layer import OfficialDGC
from torch import nn

from dgc.layers import DGCConv2d, dgc_layers
from dgc.models import create_model
from dgc.runtime.compat import OfficialCheckpointError, load_official_state_dict, translate_key

KEYS = Path(__file__).parent / "data"


def official_state_dict(path: Path, prefix: str = "", n_inactive: int = 0) -> dict:
    """A state_dict laid out as the authors' checkpoint listed in `path`, with random values."""
    state = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape = line.split("\t")
        shape = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
        if key.endswith("num_batches_tracked"):
            value = torch.tensor(7)
        elif key.endswith("_inactive_channels"):
            value = torch.full(shape, float(n_inactive))
        elif key.endswith("running_var"):
            value = torch.rand(shape) + 0.5
        else:
            value = torch.randn(shape)
        state[prefix + key] = value
    return state


@pytest.mark.parametrize("name, num_classes, keyfile", [
    ("densenet86_dgc", 10, "densenet86_dgc-cifar10.txt"),
    ("resnet18_dgc", 1000, "resnet18_dgc-imagenet.txt"),
])
@pytest.mark.parametrize("prefix", ["", "module."])
def test_authors_state_dict_round_trips_into_our_model(name, num_classes, keyfile, prefix):
    theirs = official_state_dict(KEYS / keyfile, prefix, n_inactive=3)
    model = create_model(name, num_classes)
    load_official_state_dict(model, theirs)
    ours = model.state_dict()
    assert len(ours) == len(theirs)
    for key, value in theirs.items():
        torch.testing.assert_close(ours[translate_key(key)].float(), value.reshape(ours[translate_key(key)].shape).float())
    assert {layer.n_inactive for layer in dgc_layers(model)} == {3}


def test_key_translation():
    assert translate_key("module.features.denseblock_1.denselayer_2.conv_1.headconv_3.fc2.bias") == \
        "features.denseblock_1.denselayer_2.conv_1.heads.3.gate.fc2.bias"
    assert translate_key("layer2.0.downsample.0.headconv_0.conv.weight") == "layer2.0.downsample.0.heads.0.weight"
    assert translate_key("layer1.0.conv1._inactive_channels") == "layer1.0.conv1.inactive_channels"
    assert translate_key("bn_last.weight") == "bn_last.weight"


def test_unknown_key_is_named():
    theirs = official_state_dict(KEYS / "densenet86_dgc-cifar10.txt")
    theirs["features.extra.weight"] = torch.zeros(1)
    with pytest.raises(OfficialCheckpointError, match="features.extra.weight"):
        load_official_state_dict(create_model("densenet86_dgc", 10), theirs)


def test_wrong_shape_is_named():
    theirs = official_state_dict(KEYS / "densenet86_dgc-cifar10.txt")  # 10 classes
    with pytest.raises(OfficialCheckpointError, match="classifier.weight.*\\(10, 800\\).*\\(100, 800\\)"):
        load_official_state_dict(create_model("densenet86_dgc", 100), theirs)


def test_missing_key_is_named():
    theirs = official_state_dict(KEYS / "densenet86_dgc-cifar10.txt")
    del theirs["bn_last.running_mean"]
    with pytest.raises(OfficialCheckpointError, match="bn_last.running_mean"):
        load_official_state_dict(create_model("densenet86_dgc", 10), theirs)


@pytest.mark.parametrize("c_in, c_out, k, stride, n_inactive", [
    (16, 32, 1, 1, 0), (16, 32, 1, 1, 12), (24, 8, 3, 1, 5), (64, 64, 3, 2, 35), (64, 64, 3, 1, 64),
])
def test_loaded_layer_gives_the_same_output_as_the_authors_layer(c_in, c_out, k, stride, n_inactive):
    padding = k // 2
    theirs = OfficialDGC(c_in, c_out, k, stride, padding, heads=4, hidden=max(1, c_in // 8))
    for p in theirs.parameters():
        nn.init.normal_(p, std=0.3)
    theirs.norm.running_mean.normal_()
    theirs.norm.running_var.uniform_(0.5, 2)
    theirs._inactive_channels.fill_(n_inactive)
    theirs.eval()
    ours = DGCConv2d(c_in, c_out, k, stride, padding, heads=4).eval()
    load_official_state_dict(ours, {"module." + k_: v for k_, v in theirs.state_dict().items()})
    assert ours.n_inactive == n_inactive
    x = torch.randn(3, c_in, 8, 8)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_loaded_model_matches_the_authors_layers_inside_densenet():
    theirs = official_state_dict(KEYS / "densenet86_dgc-cifar10.txt", "module.", n_inactive=12)
    model = create_model("densenet86_dgc", 10).eval()
    load_official_state_dict(model, theirs)
    layer = model.features.denseblock_1.denselayer_1.conv_1
    reference = OfficialDGC(16, 32, 1, heads=4, hidden=2).eval()
    prefix = "module.features.denseblock_1.denselayer_1.conv_1."
    reference.load_state_dict({k[len(prefix):]: v.reshape(reference.state_dict()[k[len(prefix):]].shape)
                               for k, v in theirs.items() if k.startswith(prefix)})
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(layer(x), reference(x), rtol=1e-5, atol=1e-5)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)  # random weights: values may overflow
