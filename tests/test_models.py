import pytest
import torch

from dgc.layers import BNReLUConv2d, ShuffledGroupConv2d, dgc_layers
from dgc.models import create_model, list_models

# Tiny variants: what the tests and the offline profile use on CPU.
TINY = {
    "densenet86_dgc": dict(growth=[4, 4, 8], depth=[2, 2, 2]),
    "densenet86": dict(growth=[4, 4, 8], depth=[2, 2, 2]),
    "densenet86_gc": dict(growth=[4, 4, 8], depth=[2, 2, 2]),
    "densenet86_dgcg": dict(growth=[4, 4, 8], depth=[2, 2, 2]),
    "condensenet74_dgc": dict(growth=[4, 4, 8, 8, 8], depth=[1, 1, 1, 1, 1]),
    "condensenet74_dgcg": dict(growth=[4, 4, 8, 8, 8], depth=[1, 1, 1, 1, 1]),
    "resnet18_dgc": dict(width=8, blocks=[1, 1, 1, 1], stem="cifar"),
    "resnet18": dict(width=8, blocks=[1, 1, 1, 1], stem="cifar"),
    "resnet18_gc": dict(width=8, blocks=[1, 1, 1, 1], stem="cifar"),
    "mobilenetv2_dgc": dict(width=0.25, blocks=[1, 1, 1, 1, 1, 1, 1], stem="cifar"),
    "mobilenetv2": dict(width=0.25, blocks=[1, 1, 1, 1, 1, 1, 1], stem="cifar"),
    "mobilenetv2_gc": dict(width=0.25, blocks=[1, 1, 1, 1, 1, 1, 1], stem="cifar"),
}


def test_the_name_table_is_the_factories_names_and_signatures():
    """dgc/model_names.py (what params.yaml is checked against, without importing any model) says
    what the factories take."""
    import inspect

    from dgc.model_names import MODEL_SETTINGS
    from dgc.models.registry import MODELS

    assert list(MODEL_SETTINGS) == list(MODELS)
    for name, factory in MODELS.items():
        assert list(inspect.signature(factory).parameters)[1:] == list(MODEL_SETTINGS[name]), name


def test_registry_lists_the_paper_models_and_their_baselines():
    assert set(TINY) <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_and_classifies_two_images(name):
    model = create_model(name, num_classes=7)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", list_models())
def test_tiny_variants_train_one_step(name):
    model = create_model(name, num_classes=3, **TINY[name])
    loss = model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name, num_classes, params", [
    ("densenet86_dgc", 10, 4_264_810),
    ("densenet86_dgc", 100, 4_336_900),
    ("condensenet74_dgc", 1000, 24_060_664),
    ("resnet18_dgc", 1000, 12_335_144),
    ("densenet86_dgcg", 10, 4_264_810),  # DGC-G adds no parameter (its threshold is a buffer)
])
def test_parameter_counts_equal_the_authors(name, num_classes, params):
    model = create_model(name, num_classes)
    assert sum(p.numel() for p in model.parameters()) == params


def test_dense_resnet18_has_torchvisions_parameter_count():
    assert sum(p.numel() for p in create_model("resnet18", 1000).parameters()) == 11_689_512


def test_densenet86_dgc_has_42_dgc_layers_with_the_paper_settings():
    layers = dgc_layers(create_model("densenet86_dgc", 10))
    assert len(layers) == 42
    assert {(l.num_heads, l.gate_factor, l.kernel_size) for l in layers} == {(4, 0.25, (1, 1))}


def test_resnet18_dgc_replaces_every_3x3_and_downsample_conv():
    model = create_model("resnet18_dgc", 1000)
    layers = dgc_layers(model)
    assert len(layers) == 16 + 3
    assert {l.gate_factor for l in layers} == {0.45}
    assert model.layer2[0].downsample[0].kernel_size == (1, 1)


def test_baselines_swap_only_the_dgc_convs():
    plain = create_model("densenet86", 10)
    gc = create_model("densenet86_gc", 10)
    assert not dgc_layers(plain) and not dgc_layers(gc)
    conv_1 = gc.features.denseblock_2.denselayer_1.conv_1
    assert isinstance(conv_1, BNReLUConv2d) and conv_1.conv.groups == 4 and conv_1.shuffle
    rgc = create_model("resnet18_gc", 10)
    assert isinstance(rgc.layer1[0].conv1, ShuffledGroupConv2d) and rgc.layer1[0].conv1.groups == 4


def test_stems():
    cifar = create_model("resnet18", 10, stem="cifar")
    imagenet = create_model("resnet18", 10)
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert isinstance(cifar.maxpool, torch.nn.Identity)
    assert imagenet.conv1.kernel_size == (7, 7) and isinstance(imagenet.maxpool, torch.nn.MaxPool2d)
    assert create_model("densenet86_dgc", 10).features.init_conv.stride == (1, 1)
    assert create_model("condensenet74_dgc", 10).features.init_conv.stride == (2, 2)


def test_dgc_overrides_reach_every_layer():
    model = create_model("densenet86_dgc", 10, heads=2, gate_factor=0.5, squeeze_rate=4,
                         **TINY["densenet86_dgc"])
    assert {(l.num_heads, l.gate_factor, l.squeeze_rate) for l in dgc_layers(model)} == {(2, 0.5, 4)}


def test_width_and_depth_overrides_shrink_the_model():
    tiny = create_model("densenet86_dgc", 10, **TINY["densenet86_dgc"])
    assert len(dgc_layers(tiny)) == 6 and tiny.num_features == 8 + 2 * 4 + 2 * 4 + 2 * 8
    assert create_model("resnet18", 10, width=16).fc.in_features == 128


def test_model_remembers_its_constructor_arguments():
    model = create_model("resnet18_dgc", 10, gate_factor=0.5, blocks=(1, 1, 1, 1))
    assert model.model_name == "resnet18_dgc"
    assert model.model_args == {"num_classes": 10, "gate_factor": 0.5, "blocks": [1, 1, 1, 1]}
    rebuilt = create_model(model.model_name, **model.model_args)
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in model.parameters())


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown model 'densenet99'.*densenet86_dgc"):
        create_model("densenet99", 10)


def test_unknown_setting_is_named():
    with pytest.raises(ValueError, match="'gate'"):
        create_model("densenet86_dgc", 10, gate=0.5)
    with pytest.raises(ValueError, match="heads"):
        create_model("resnet18", 10, heads=4)  # a dense model has no DGC settings


def test_bad_dgc_setting_fails_at_construction():
    with pytest.raises(ValueError, match="gate_factor"):
        create_model("densenet86_dgc", 10, gate_factor=0)
    with pytest.raises(ValueError, match="stem"):
        create_model("resnet18_dgc", 10, stem="tiny")
