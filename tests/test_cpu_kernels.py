"""The C++ CPU inference kernels (dgc/kernels/cpu.py) against the PyTorch executions they replace."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dgc.kernels import cpu
from dgc.kernels.cpu_layers import use_cpu_kernels
from dgc.layers import AvgPool2x2, BNReLUConv2d, DGCConv2d, executions, set_progress
from dgc.layers.dgc_conv import rank_keys
from dgc.measure.calibrate import ready_for_timing
from dgc.models import create_model

needs_kernels = pytest.mark.skipif(not cpu.cpu_kernels_available(),
                                   reason=f"CPU kernels unavailable: {cpu.unavailable_reason()}")


def _kernel(module: torch.nn.Module, x: torch.Tensor) -> str | None:
    """The kernel execution a BNReLUConv2d given the CPU kernels runs x with, or None (PyTorch's)."""
    name = module.executions.choose(module, x).name
    return None if name == "plain" else name


def _randomise_bn(norm: torch.nn.BatchNorm2d) -> None:
    norm.running_mean.normal_()
    norm.running_var.uniform_(0.5, 2.0)
    norm.weight.data.normal_()
    norm.bias.data.normal_()


def _pruned_layer(c_in: int, c_out: int, heads: int, n_in: int, stride: int = 1) -> DGCConv2d:
    layer = DGCConv2d(c_in, c_out, 1, stride=stride, heads=heads, gate_factor=0.25)
    _randomise_bn(layer.norm)
    layer.set_inactive(n_in)
    return use_cpu_kernels(layer.eval())


@needs_kernels
@pytest.mark.parametrize("b,c_in,c_out,heads,n_in,size", [
    (3, 16, 8, 4, 12, 8),     # Co = 2 per head: scalar output channels only
    (2, 32, 32, 4, 24, 9),    # 81 positions: 24-wide tiles, an 8-wide tile and a scalar tail
    (1, 24, 48, 2, 5, 5),     # fewer positions than one vector
    (4, 12, 20, 4, 0, 6),     # nothing pruned (K = C_in), Co = 5: one 4-tile and a scalar row
    (2, 8, 8, 2, 8, 4),       # everything pruned: zeros
])
def test_fused_1x1_matches_sparse_execution(b, c_in, c_out, heads, n_in, size):
    torch.manual_seed(0)
    layer = _pruned_layer(c_in, c_out, heads, n_in)
    x = torch.relu(torch.randn(b, c_in, size, size))
    with torch.inference_mode():
        saliency = layer.saliency(x)
        keep, kept = layer.select(saliency)
        if kept is None:
            kept = torch.arange(c_in).expand_as(saliency).contiguous()
        expected = executions.sparse(layer, x, saliency, keep, kept)
        weight = layer.head_weights().flatten(2)  # (H, Co, C_in)
        got = cpu.fused_1x1(x, weight, kept, (saliency * keep).gather(2, kept))
    assert got.shape == expected.shape == (b, c_out, size, size)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    if n_in == c_in:
        assert not got.any()


@needs_kernels
@pytest.mark.parametrize("stride", [1, 2])
def test_dgc_layer_picks_the_kernel_at_inference_and_matches_masked(stride):
    torch.manual_seed(1)
    layer = _pruned_layer(32, 16, 4, 24, stride)
    x = torch.randn(2, 32, 10, 10)
    layer.report.usage = True
    with torch.no_grad():
        assert layer.execution_path(x) == "fused_layer_cpu"  # auto: the whole layer in one call
        got = {"fused_layer_cpu": layer(x)}
        reports = {"fused_layer_cpu": (layer.report.kept, layer.report.active, layer.report.sparsity)}
        for name in ("fused_cpu", "masked"):  # the steps, with the kernel's conv and the authors'
            layer.execution = name
            assert layer.execution_path(x) == name
            got[name] = layer(x)
            reports[name] = (layer.report.kept, layer.report.active, layer.report.sparsity)
    for name in ("fused_layer_cpu", "fused_cpu"):
        torch.testing.assert_close(got[name], got["masked"], rtol=1e-5, atol=1e-5)
        kept, active, sparsity = reports[name]
        assert torch.equal(kept, reports["masked"][0]) and torch.equal(active, reports["masked"][1])
        torch.testing.assert_close(sparsity, reports["masked"][2])
        assert int(kept.sum()) == 2 * 4 * 8  # K = 32 - 24 per sample and head
    layer.execution = "auto"
    # with autograd on, the kernel does not apply: the layer runs 'sparse' and stays differentiable
    assert layer.execution_path(x) == "sparse"
    x.requires_grad_()
    layer(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@needs_kernels
@pytest.mark.parametrize("c_in,c_out,k,stride,pad,heads,preact,n_in,b,size", [
    (16, 8, 1, 1, 0, 4, True, 12, 3, 9),      # densenet's DGC 1x1: the kept rows read in place
    (16, 16, 1, 2, 0, 2, False, 8, 2, 9),     # strided 1x1 without pre-activation (im2col)
    (32, 32, 3, 1, 1, 4, True, 18, 1, 8),     # resnet's 3x3 at batch 1
    (32, 32, 3, 2, 1, 4, True, 18, 2, 9),     # strided 3x3
    (24, 12, 3, 1, 1, 4, True, 0, 2, 5),      # n_in = 0: every channel kept
    (8, 8, 1, 1, 0, 2, True, 8, 2, 4),        # everything pruned: zeros
    (48, 64, 5, 1, 2, 4, False, 20, 2, 4),    # 5x5, 16 outputs per head on 16 positions
    (64, 48, 3, 1, 0, 2, True, 35, 1, 7),     # no padding, odd output size
])
def test_the_whole_layer_kernel_matches_masked(c_in, c_out, k, stride, pad, heads, preact, n_in, b, size):
    torch.manual_seed(3)
    layer = DGCConv2d(c_in, c_out, k, stride, pad, heads=heads, preact=preact)
    if preact:
        _randomise_bn(layer.norm)
    layer = use_cpu_kernels(layer.eval())
    layer.set_inactive(n_in)
    layer.report.usage = True
    x = torch.randn(b, c_in, size, size)
    with torch.no_grad():
        assert layer.execution_path(x) == "fused_layer_cpu"
        got, kept, sparsity = layer(x), layer.report.kept, layer.report.sparsity
        layer.execution = "masked"
        expected = layer(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(kept, layer.report.kept)
    assert (kept.sum(dim=2) == c_in - n_in).all()
    torch.testing.assert_close(sparsity, layer.report.sparsity)
    if n_in == c_in:
        assert not got.any()


@needs_kernels
@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_the_whole_layer_kernel_follows_its_weights_and_statistics(mode):
    """Its packed weights are rebuilt when a weight or a BatchNorm statistic changes in place; weights
    made under inference_mode have no version counter and are packed at every call (they made
    `Inference tensors do not track version counter`)."""
    torch.manual_seed(4)
    with mode():
        layer = use_cpu_kernels(DGCConv2d(16, 16, 3, padding=1, heads=4).eval())
        layer.set_inactive(8)
        x = torch.randn(2, 16, 6, 6)
        before = layer(x)
        layer.heads[1].weight.mul_(2.0)
        layer.heads[2].gate.fc2.bias.add_(0.5)
        layer.norm.running_mean.add_(0.1)
        after = layer(x)
        layer.execution = "masked"
        expected = layer(x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5)


@needs_kernels
def test_the_whole_layer_kernel_applies_at_cpu_inference_only():
    layer = use_cpu_kernels(DGCConv2d(16, 16, 1, heads=4).eval())
    x = torch.randn(2, 16, 6, 6)
    layer.set_progress(0.5)  # inside the pruning ramp: the steps, from the n_in buffer
    with torch.no_grad():
        assert layer.execution_path(x) != "fused_layer_cpu"
    layer.set_progress(1.0)
    assert layer.execution_path(x) == "sparse"  # autograd on
    with torch.no_grad():
        assert layer.execution_path(x) == "fused_layer_cpu"
        assert layer.execution_path(x.contiguous(memory_format=torch.channels_last)) == "fused_cpu"
        layer.train()  # batch statistics: the steps
        assert layer.execution_path(x) == "fused_cpu"
        layer.eval()
        layer.execution = "sparse"  # an execution asked for runs in the steps
        assert layer.execution_path(x) == "sparse"
        with cpu.kernels_off():
            layer.execution = "auto"
            assert layer.execution_path(x) == "sparse"


@needs_kernels
def test_dgc_layer_kernel_falls_back_where_it_does_not_apply():
    layer = use_cpu_kernels(DGCConv2d(16, 8, 3, padding=1, heads=4, gate_factor=0.25).eval())
    layer.set_inactive(12)
    layer.execution = "fused_cpu"  # a 3x3 layer: runs 'sparse', the same maths
    x = torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        assert layer.execution_path(x) == "sparse"
        got = layer(x)
        layer.execution = "sparse"
        torch.testing.assert_close(got, layer(x))


@needs_kernels
@pytest.mark.parametrize("c_in,c_out,k,pad,groups,shuffle,size", [
    (32, 8, 3, 1, 4, False, 32),   # densenet86's first block
    (64, 16, 3, 1, 4, True, 17),   # shuffled output, a 16-wide tile and a scalar tail
    (24, 12, 5, 2, 3, False, 9),   # 5x5, cout per group 4 then the 2-wide narrow-map path
    (16, 6, 3, 0, 2, False, 11),   # no padding, 3 channels per group (a 2-tile and a 1-tile)
    (32, 32, 1, 0, 4, True, 8),    # the GC baseline's shuffled 1x1 group conv
])
def test_bnrelu_group_conv_matches_pytorch(c_in, c_out, k, pad, groups, shuffle, size):
    torch.manual_seed(2)
    module = use_cpu_kernels(BNReLUConv2d(c_in, c_out, k, padding=pad, groups=groups, shuffle=shuffle))
    _randomise_bn(module.norm)
    module.eval()
    x = torch.randn(3, c_in, size, size)
    with torch.no_grad():
        assert _kernel(module, x) is not None
        got = module(x)
        with cpu.kernels_off():
            assert _kernel(module, x) is None
            expected = module(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@needs_kernels
@pytest.mark.parametrize("k", [1, 3])
def test_group_conv_kernels_read_a_channel_slice_in_place(k):
    torch.manual_seed(9)
    module = use_cpu_kernels(BNReLUConv2d(16, 8, k, padding=k // 2, groups=4, shuffle=True))
    _randomise_bn(module.norm)
    module.eval()
    buffer = torch.randn(3, 24, 9, 9)
    x = buffer[:, :16]  # as a DenseNet block hands its layers their input
    assert not x.is_contiguous() and cpu.batch_strided(x)
    with torch.no_grad():
        assert _kernel(module, x) is not None
        got = module(x)
        with cpu.kernels_off():
            expected = module(x.contiguous())
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@needs_kernels
def test_bnrelu_group_conv_without_preactivation_and_nan():
    torch.manual_seed(3)
    conv = torch.nn.Conv2d(8, 4, 3, padding=1, groups=2, bias=False)
    x = torch.randn(2, 8, 8, 8)
    got = cpu.bnrelu_group_conv(x, conv.weight.detach(), None, None, (1, 1), 2)
    torch.testing.assert_close(got, conv(x).detach(), rtol=1e-5, atol=1e-5)
    x[0, 0, 3, 3] = float("nan")  # ReLU keeps a NaN, as torch.relu does
    ones = torch.ones(8)
    got = cpu.bnrelu_group_conv(x, conv.weight.detach(), ones, torch.zeros(8), (1, 1), 2)
    assert got[0, :2, 2:5, 2:5].isnan().all() and not got[1].isnan().any()


@needs_kernels
@pytest.mark.parametrize("size", [1, 3, 8, 13])
def test_bnrelu_mean_matches_pytorch(size):
    torch.manual_seed(5)
    norm = torch.nn.BatchNorm2d(6)
    _randomise_bn(norm)
    norm.eval()
    x = torch.randn(2, 6, size, size)
    with torch.no_grad():
        expected = torch.relu(norm(x))
        y, means = cpu.bnrelu_mean(x, *cpu.bn_affine(norm))
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(means, expected.mean(dim=(2, 3)), rtol=1e-5, atol=1e-6)


@needs_kernels
def test_dgc_layer_fuses_its_preactivation_only_at_inference():
    torch.manual_seed(6)
    layer = _pruned_layer(16, 8, 4, 12)
    x = torch.randn(2, 16, 5, 5)
    def fused(x):
        return layer.preactivations.choose(layer, x).name == "bnrelu_mean"

    assert not fused(x)  # grad mode on
    with torch.no_grad():
        assert fused(x)
        assert not fused(x.contiguous(memory_format=torch.channels_last)[:, :, :, :4])
        got = layer(x)
        with cpu.kernels_off():
            torch.testing.assert_close(got, layer(x), rtol=1e-5, atol=1e-5)
        layer.train()
        assert not fused(x)  # batch statistics


@needs_kernels
@pytest.mark.parametrize("channels", [5, 64, 300])
def test_select_topk_is_the_set_of_rank_keys_topk(channels):
    torch.manual_seed(7)
    s = torch.relu(torch.randn(3, 4, channels))
    s[0, 0, :4] = 0.5  # ties: the higher index is kept
    s[1, 1, 2] = float("nan")  # ranks as the most salient
    s[2, 3, :] = -0.0
    for keep in (0, 1, channels // 4, channels - 1, channels):
        idx, values = cpu.select_topk(s, keep)
        expected = rank_keys(s.nan_to_num(nan=float("inf"))).topk(keep, dim=2).indices
        assert torch.equal(idx.sort(dim=2).values, expected.sort(dim=2).values)
        torch.testing.assert_close(values, s.gather(2, idx), equal_nan=True)


@needs_kernels
@pytest.mark.parametrize("h,w", [(2, 2), (8, 8), (7, 9)])
def test_avg_pool2_matches_pytorch(h, w):
    x = torch.randn(2, 3, h, w)
    torch.testing.assert_close(cpu.avg_pool2(x), torch.nn.functional.avg_pool2d(x, 2))
    pool = use_cpu_kernels(AvgPool2x2())
    with torch.no_grad():
        assert pool.executions.choose(pool, x).name == "avg_pool2"
        torch.testing.assert_close(pool(x), torch.nn.functional.avg_pool2d(x, 2))
    assert isinstance(pool, torch.nn.AvgPool2d)


@needs_kernels
def test_group_conv_kernel_is_not_used_where_it_does_not_apply():
    module = use_cpu_kernels(BNReLUConv2d(16, 8, 3, padding=1, groups=4).eval())
    x = torch.randn(1, 16, 8, 8)
    assert _kernel(module, x) is None  # grad mode on
    with torch.no_grad():
        assert _kernel(module, x) is not None
        assert _kernel(module, torch.randn(1, 16, 4, 4)) is None  # rows narrower than 8
        assert _kernel(module, x.double()) is None
        assert _kernel(module, x.contiguous(memory_format=torch.channels_last)) is None
        assert _kernel(use_cpu_kernels(BNReLUConv2d(16, 8, 3, padding=1).eval()), x) is None  # dense: oneDNN
        assert _kernel(use_cpu_kernels(BNReLUConv2d(64, 64, 3, padding=1, groups=4).eval()),
                       torch.randn(1, 64, 8, 8)) is None  # 16 outputs per group: oneDNN measured faster
        module.train()
        assert _kernel(module, x) is None  # batch statistics


@needs_kernels
@pytest.mark.parametrize("name,narrow", [
    ("densenet86_dgc", {"growth": (4, 8), "depth": (2, 2)}),
    ("densenet86_dgcg", {"growth": (4, 8), "depth": (2, 2)}),  # rows padded to the fullest one
    ("densenet86_gc", {"growth": (4, 8), "depth": (2, 2)}),
    ("resnet18_dgc", {"width": 8}),
    ("mobilenetv2_dgc", {"width": 0.25}),  # DGC without its own pre-activation
])
def test_models_agree_with_and_without_kernels(name, narrow):
    torch.manual_seed(4)
    model = use_cpu_kernels(create_model(name, 10, stem="cifar", **narrow))
    set_progress(model, 1.0)
    model = ready_for_timing(model, (3, 16, 16), torch.device("cpu"))  # calibrated BN, eval mode
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        got = model(x)
        with cpu.kernels_off():
            expected = model(x)
    assert got.isfinite().all()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["densenet86_dgc", "densenet86"])
def test_dense_block_buffer_equals_concatenation(name):
    torch.manual_seed(8)
    model = create_model(name, 10, stem="cifar", growth=(4, 8), depth=(3, 2))
    set_progress(model, 1.0)
    model = ready_for_timing(model, (3, 16, 16), torch.device("cpu"))
    x = torch.randn(2, 3, 16, 16)
    block = model.features.denseblock_1
    with torch.no_grad(), cpu.kernels_off():  # PyTorch ops both ways: only the block's forward differs
        features = model.features.init_conv(x)
        buffered = block(features)
        concatenated = torch.nn.Sequential.forward(block, features)
        buffered_cl = block(features.contiguous(memory_format=torch.channels_last))
    assert buffered.shape == (2, 8 + 3 * 4, 16, 16)
    torch.testing.assert_close(buffered, concatenated, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(buffered_cl, concatenated, rtol=1e-5, atol=1e-5)
    assert buffered_cl.is_contiguous(memory_format=torch.channels_last)
    assert list(dict(block.named_children())) == ["denselayer_1", "denselayer_2", "denselayer_3"]


@needs_kernels
def test_kernel_errors_are_clear():
    x = torch.randn(1, 8, 4, 4)
    weight = torch.randn(2, 2, 8)
    idx = torch.tensor([[[0, 9], [1, 2]]])
    with pytest.raises(ValueError, match="index out of range"):
        cpu.fused_1x1(x, weight, idx, torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match="float32"):
        cpu.fused_1x1(x.double(), weight, idx.clamp(max=7), torch.ones(1, 2, 2))
    with pytest.raises(RuntimeError, match="forward-only"):
        cpu.fused_1x1(x, weight.requires_grad_(), idx.clamp(max=7), torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match="does not fit"):
        cpu.bnrelu_group_conv(x, torch.randn(4, 3, 3, 3), None, None, (1, 1), 2)


def test_failed_build_warns_once_and_layers_still_run(tmp_path):
    code = (
        "import warnings, torch\n"
        "from dgc.kernels import cpu\n"
        "from dgc.kernels.cpu_layers import use_cpu_kernels\n"
        "from dgc.layers import DGCConv2d\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    assert not cpu.cpu_kernels_available()\n"
        "    assert not cpu.cpu_kernels_available()\n"
        "print(len(w), str(w[0].message).splitlines()[0] if w else '')\n"
        "layer = use_cpu_kernels(DGCConv2d(8, 8, 1, heads=2).eval()); layer.set_inactive(4)\n"
        "with torch.no_grad():\n"
        "    x = torch.randn(1, 8, 4, 4)\n"
        "    print(layer.execution_path(x), tuple(layer(x).shape))\n")
    env = dict(os.environ, CXX=shutil.which("false"), DGC_KERNEL_CACHE=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    count, message = proc.stdout.splitlines()[0].split(" ", 1)
    assert count == "1"
    assert message.startswith("dgc CPU kernels unavailable, using PyTorch executions (build failed")
    assert proc.stdout.splitlines()[1] == "sparse (1, 8, 4, 4)"
    assert not list(tmp_path.glob("*.so"))


def test_native_library_is_keyed_by_the_cpu_instruction_set(monkeypatch, tmp_path):
    monkeypatch.setenv("DGC_KERNEL_CACHE", str(tmp_path))
    native, portable = cpu.FLAG_SETS[0], cpu.FLAG_SETS[1]
    assert "-march=native" in native and "-march=native" not in portable
    monkeypatch.setattr(cpu, "cpu_identity", lambda: "flags: sse2 avx2")
    key = cpu._library_path("/usr/bin/c++", native)
    assert cpu._library_path("/usr/bin/c++", native) == key  # the same CPU: the same library
    portable_key = cpu._library_path("/usr/bin/c++", portable)
    monkeypatch.setattr(cpu, "cpu_identity", lambda: "flags: sse2 avx2 avx512f")
    assert cpu._library_path("/usr/bin/c++", native) != key  # another instruction set: another build
    assert cpu._library_path("/usr/bin/c++", portable) == portable_key  # runs on any CPU of the arch


def test_cpu_identity_reads_the_first_processor_and_falls_back_to_platform(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon X\ncpu MHz\t: 2100.3\n"
                    "flags\t\t: fpu sse2  avx2\n\nprocessor\t: 1\nflags\t\t: other\n")
    assert cpu.cpu_identity(info) == "vendor_id: GenuineIntel\nmodel name: Xeon X\nflags: fpu sse2 avx2"
    assert cpu.cpu_identity(tmp_path / "missing") == f"{platform.processor()} {platform.machine()}"
    assert cpu.cpu_identity() == cpu.cpu_identity() != ""  # this machine's: stable


def test_env_switch_turns_the_kernels_off():
    code = "from dgc.kernels import cpu; print(cpu.cpu_kernels_available(), cpu.unavailable_reason())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, DGC_CPU_KERNELS="0"), timeout=120)
    assert proc.stdout.strip() == "False turned off by DGC_CPU_KERNELS=0"


@needs_kernels
def test_kernel_benchmark_runs_and_records_every_candidate(tmp_path):
    out = tmp_path / "cpu_kernels.json"
    root = Path(__file__).resolve().parents[1]  # this checkout's dgc, whichever one is installed
    proc = subprocess.run([sys.executable, "benchmarks/cpu_kernels.py", "--batch", "2", "--repeats", "1",
                           "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=root,
                          env=dict(os.environ, PYTHONPATH=str(root)))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert len(result["blocks"]) == 3
    for row in result["blocks"]:
        assert {"dgc_1x1 fused_layer_cpu (one call)", "dgc_1x1 fused_cpu", "dgc_1x1 sparse (PyTorch)", "group_3x3 kernel (with BN-ReLU)",
                "avg_pool2 kernel"} <= set(row["ms"])
        assert all(v > 0 for v in row["ms"].values())
