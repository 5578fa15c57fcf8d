"""CUDA checks (skipped without a GPU): the execution paths agree on the device, a training step of
the full-width models never waits on the device, the compiled model computes what the eager one does
and compiles a handful of graphs over the pruning ramp, and DGC-G trains on CUDA."""

import pytest
import torch
import torch.nn.functional as F

from dgc.kernels.fused_triton import use_fused_kernel
from dgc.layers import DGCConv2d, GlobalThreshold, angle_loss, set_progress, sparsity_loss
from dgc.measure.calibrate import calibrate_batchnorm
from dgc.models import create_model

# A narrow DenseNet-86 with DGC 1x1 convs: the same code as the full model, a graph small enough
# to compile in seconds.
SMALL_DGC = {"growth": [8, 16, 32], "depth": [1, 1, 1]}


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)


def train_step(model, forward, optimizer, x, y):
    """One step of the authors' recipe: CE + 1e-5 x the sparsity term, backward, SGD step."""
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(forward(x), y) + 1e-5 * sparsity_loss(model)
    loss.backward()
    optimizer.step()
    return loss.detach()


def assert_close_scaled(got, want, what):
    """Equal up to fp32 rounding: 1e-4 relative, and 1e-4 of the tensor's largest entry absolute
    (gradients summed over a batch and a map can be large while some entries are near 0)."""
    scale = max(1.0, float(want.abs().max()))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * scale, msg=lambda m: f"{what}: {m}")


@pytest.mark.gpu
@pytest.mark.parametrize("k", [1, 3])
def test_paths_agree_on_cuda(k, no_tf32):
    """Outputs and gradients (input, head weights, gates, BN) of every execution of the table that
    applies on CUDA equal the authors' masked one, in fp32 without TF32, at the pruning target
    (scaled_weight, sparse, and the fused kernel for 1x1) and inside the ramp (those that do not
    need a fixed n_in)."""
    layer = use_fused_kernel(DGCConv2d(64, 64, k, padding=k // 2)).cuda().train()
    params = list(layer.parameters())
    x = torch.randn(8, 64, 16, 16, device="cuda")
    grad_out = torch.randn(8, 64, 16, 16, device="cuda")
    for progress in (1.0, 0.5):
        layer.set_progress(progress)
        assert layer.n_inactive > 0  # channels are pruned: the paths really select
        compared = [name for name, execution in layer.executions.items()
                    if name != "masked" and execution.differentiable and execution.applies(layer, x)]
        expected = {1.0: ["scaled_weight", "sparse"] + (["fused"] if k == 1 else []),
                    0.5: ["scaled_weight"]}[progress]
        assert set(expected) <= set(compared), compared  # fused needs triton on the GPU machine
        results = {}
        for path in ["masked", *compared]:
            layer.execution = path
            xx = x.clone().requires_grad_(True)
            out = layer(xx)
            results[path] = (out.detach(), *torch.autograd.grad(out, [xx, *params], grad_out))
        for path in compared:
            for i, (got, want) in enumerate(zip(results[path], results["masked"])):
                assert_close_scaled(got, want, f"{path} at p={progress}, tensor {i}")


@pytest.mark.gpu
@pytest.mark.parametrize("progress", [0.5, 1.0])  # inside the pruning ramp, at the target
@pytest.mark.parametrize("name", ["densenet86_dgc", "resnet18_dgc"])
def test_training_step_never_syncs_with_the_host(name, progress):
    """A full training step of the full-width model issues no device-to-host synchronisation
    (torch.cuda.set_sync_debug_mode('error') raises on any), after one warm-up step."""
    model = create_model(name, 10, stem="cifar").cuda().train()
    set_progress(model, progress)
    optimizer = sgd(model)
    x = torch.randn(16, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (16,), device="cuda")
    train_step(model, model, optimizer, x, y)  # warm-up: momentum buffers, cuDNN plans
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = train_step(model, model, optimizer, x, y)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(loss)


@pytest.mark.gpu
def test_compiled_model_matches_eager_in_train_and_eval(no_tf32, fresh_dynamo):
    model = create_model("densenet86_dgc", 10, **SMALL_DGC).cuda()
    set_progress(model, 1.0)
    calibrate_batchnorm(model)  # eval mode with meaningful running statistics
    compiled = torch.compile(model)  # mode 'default'
    x = torch.randn(16, 3, 32, 32, device="cuda")
    for mode in ("train", "eval"):
        model.train(mode == "train")
        with torch.no_grad():
            want = model(x)
            got = compiled(x)
        assert torch.isfinite(want).all()
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=lambda m: f"{mode}: {m}")


def _counting_inductor():
    """A torch.compile backend that is inductor and counts the graphs it compiles."""
    testing = torch._dynamo.testing
    if hasattr(testing, "CompileCounterWithBackend"):
        return testing.CompileCounterWithBackend("inductor")
    from torch._inductor.compile_fx import compile_fx

    class Counter:
        frame_count = 0

        def __call__(self, gm, example_inputs):
            self.frame_count += 1
            return compile_fx(gm, example_inputs)

    return Counter()


@pytest.mark.gpu
def test_compiled_training_across_the_ramp_compiles_a_handful_of_graphs(no_tf32, fresh_dynamo):
    """20 training steps from p = 0 to 1 (n_in changes at many of them) compile one graph per phase
    (no pruning, the ramp, the target), not one per n_in; each step's compiled loss is the eager
    model's loss on the same weights."""
    model = create_model("densenet86_dgc", 10, **SMALL_DGC).cuda().train()
    counter = _counting_inductor()
    compiled = torch.compile(model, backend=counter)  # mode 'default'
    optimizer = sgd(model)
    x = torch.randn(16, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (16,), device="cuda")
    counts = set()
    for step in range(20):
        counts.add(tuple(set_progress(model, step / 19)))
        with torch.no_grad():
            want = F.cross_entropy(model(x), y) + 1e-5 * sparsity_loss(model)
        got = train_step(model, compiled, optimizer, x, y)
        assert torch.isfinite(got)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=lambda m: f"step {step}: {m}")
    assert len(counts) > 5  # the schedule really moved n_in
    assert 1 <= counter.frame_count <= 4, counter.frame_count


@pytest.mark.gpu
def test_dgcg_training_step_on_cuda():
    """DGC-G (one global saliency threshold): steps before and after the threshold is estimated."""
    model = create_model("densenet86_dgcg", 10, stem="cifar").cuda().train()
    selection = GlobalThreshold(model, window=1)
    optimizer = sgd(model)
    x = torch.randn(16, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (16,), device="cuda")
    losses = []
    for progress in (0.3, 0.5, 0.9):
        selection.before_step(progress, 0, 1)  # the epoch's last step: collect saliencies
        optimizer.zero_grad(set_to_none=True)
        loss = (F.cross_entropy(model(x), y) + 1e-5 * sparsity_loss(model)
                + 1e-3 * angle_loss(model))
        loss.backward()
        optimizer.step()
        selection.end_epoch(progress)  # T from the saliencies of this step
        losses.append(loss.detach())
    assert torch.isfinite(torch.stack(losses)).all()
    assert float(model.features.denseblock_1.denselayer_1.conv_1.threshold) > 0  # pruning is on


@pytest.mark.gpu
def test_amp_channels_last_training_step_on_cuda():
    model = create_model("resnet18_dgc", 10, stem="cifar", width=16).cuda().to(memory_format=torch.channels_last)
    set_progress(model, 0.5)
    x = torch.randn(16, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(x), torch.randint(0, 10, (16,), device="cuda")) + 1e-5 * sparsity_loss(model)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())
