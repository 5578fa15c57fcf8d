"""The DGC forward compiles as one graph, and the pruning ramp does not recompile it at each n_in.

Dynamo is run with a counting backend (no code generation), so these tests cost seconds; one test
runs the real inductor backend on a tiny layer.
"""

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.testing import CompileCounter

from dgc.layers import DGCConv2d, set_progress, sparsity_loss
from dgc.layers.pruning_schedule import inactive_channels
from dgc.models import create_model
from dgc.runtime.compile import CompileClock, Compiled, resolve_compile


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_ramp_mask_from_the_buffer_equals_the_static_mask_for_every_n():
    layer = DGCConv2d(16, 8, 1, heads=2)
    s = torch.rand(5, 2, 16)
    s[0, 0, 3:9] = 0.5  # ties: the lower index is dropped first in both ways
    for n in range(17):
        layer.set_inactive(n)
        static_keep, kept = layer.select(s)
        layer.set_inactive(n, ramp=True)  # what the pruning ramp does: n_in read from the buffer only
        ramp_keep, none = layer.select(s)
        assert none is None and torch.equal(static_keep, ramp_keep), n
        assert (static_keep.sum(dim=2) == 16 - n).all()
        if kept is not None:
            assert torch.equal(torch.zeros_like(static_keep).scatter_(2, kept, True), static_keep)


def test_progress_inside_the_ramp_marks_n_dynamic_and_outside_static():
    layer = DGCConv2d(16, 8, 1, gate_factor=0.25)
    assert layer.set_progress(0.5) == inactive_channels(16, 0.25, 0.5) and layer.fixed_inactive is None
    assert layer.set_progress(0.75) == 12 and layer.fixed_inactive == 12
    assert layer.set_progress(0.0) == 0 and layer.fixed_inactive == 0


def test_training_a_dgc_model_over_the_schedule_compiles_one_graph_per_phase():
    model = create_model("densenet86_dgc", 10, growth=[4, 4, 8], depth=[1, 1, 1])
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter, fullgraph=True)  # fullgraph: no graph break
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    ramp_counts = set()
    for step in range(30):  # n_in of these layers changes many times inside the ramp
        p = step / 29
        ramp_counts.add(tuple(set_progress(model, p)))
        loss = F.cross_entropy(compiled(x), y) + 1e-5 * sparsity_loss(model)
        loss.backward()
    assert len(ramp_counts) > 10  # the schedule really moved
    assert counter.frame_count == 3  # no pruning, the ramp, the target: not one graph per n_in
    model.eval()
    with torch.no_grad():
        out = compiled(x)
    assert counter.frame_count == 4
    with torch.no_grad():
        assert torch.allclose(out, model(x), rtol=1e-5, atol=1e-5)


def test_compiled_layer_with_inductor_matches_eager_in_values_and_gradients():
    torch.manual_seed(0)
    layer = DGCConv2d(8, 8, 1, heads=2)
    layer.set_progress(0.5)  # inside the ramp
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    clock = CompileClock()
    with clock.active():
        out = torch.compile(layer, fullgraph=True)(x)
        (gx,) = torch.autograd.grad(out.square().sum(), x)
    ref = layer(x)
    (gref,) = torch.autograd.grad(ref.square().sum(), x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx, gref, rtol=1e-4, atol=1e-5)
    assert clock.compilations >= 1 and clock.seconds > 0


def test_compile_setting_resolution():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_compile("auto", cpu) is None and resolve_compile("auto", cuda) == "default"
    assert resolve_compile("off", cuda) is None
    assert resolve_compile("reduce-overhead", cpu) == "reduce-overhead"
    with pytest.raises(ValueError, match="compile must be one of"):
        resolve_compile("fast", cpu)


def test_a_failing_compile_warns_once_and_the_run_continues_eagerly():
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no compiler here")

    model = torch.nn.Linear(3, 2)
    runner = Compiled(model, None)
    runner.module = torch.compile(model, backend=broken_backend)  # a compile that fails
    lines = []
    runner.log = lines.append
    runner.mode = "default"
    x = torch.randn(4, 3)
    out = runner(x)
    assert torch.equal(out, model(x)) and not runner.compiled
    runner(x)
    assert len(lines) == 1 and lines[0].startswith("warning: torch.compile") and "eagerly" in lines[0]


def test_an_error_of_the_model_itself_is_not_swallowed():
    runner = Compiled(torch.nn.Linear(3, 2), None)
    with pytest.raises(RuntimeError):
        runner(torch.randn(4, 5))  # a shape error, not a compile error
