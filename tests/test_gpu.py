"""CUDA checks (skipped without a GPU): the execution paths agree on the device, and a mixed-precision
training step of a DGC model runs with channels-last inputs."""

import pytest
import torch
import torch.nn.functional as F

from dgc.layers import DGCConv2d, set_progress, sparsity_loss
from dgc.models import create_model


@pytest.mark.gpu
@pytest.mark.parametrize("k", [1, 3])
def test_paths_agree_on_cuda(k):
    layer = DGCConv2d(64, 64, k, padding=k // 2).cuda().eval()
    layer.set_progress(1.0)
    x = torch.randn(8, 64, 16, 16, device="cuda")
    outs = {}
    with torch.no_grad():
        for path in ("masked", "scaled_weight", "sparse"):
            layer.execution = path
            outs[path] = layer(x)
    for path in ("scaled_weight", "sparse"):
        torch.testing.assert_close(outs[path], outs["masked"], rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_amp_channels_last_training_step_on_cuda():
    model = create_model("resnet18_dgc", 10, stem="cifar", width=16).cuda().to(memory_format=torch.channels_last)
    set_progress(model, 0.5)
    x = torch.randn(16, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(x), torch.randint(0, 10, (16,), device="cuda")) + 1e-5 * sparsity_loss(model)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())
