"""The fused 1x1 DGC kernel in Triton (dgc/kernels/fused_triton.py) against the layer's own sparse
execution, and the layer's `fused` execution against its `masked` one.

Triton reads TRITON_INTERPRET when the kernels are defined, so the interpreter checks run in one
child process started with TRITON_INTERPRET=1 (this file run as a script): it computes, for every
case, how far the fused output and its gradients are from the reference's, and the tests here
assert on those figures. The CUDA check runs in this process (compiled kernels).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import run_execution

from dgc.kernels.fused_triton import BlockSizes, fused_1x1, fused_available, use_fused_kernel
from dgc.layers import DGCConv2d, executions

ROOT = Path(__file__).resolve().parents[1]

# name -> (B, C_in, H, Co per head, K kept, h, w, channels_last, dtype, block sizes or None).
# Sizes are ragged against the tiles; 'small_blocks' cases use 8x4x4 tiles (interpreter only) so the
# K, Co and position loops run several, partly masked, iterations.
CASES = {
    "nchw_h4_k4": (2, 16, 4, 3, 4, 5, 5, False, "float32", None),
    "cl_h2_k1": (3, 12, 2, 5, 1, 3, 4, True, "float32", None),
    "nchw_h1_k_all": (2, 16, 1, 7, 16, 4, 5, False, "float32", None),
    "cl_h4_k_all": (1, 8, 4, 2, 8, 2, 3, True, "float32", None),
    "nchw_h2_k7": (3, 10, 2, 6, 7, 5, 3, False, "float32", None),
    "nchw_k0": (2, 8, 2, 3, 0, 3, 3, False, "float32", None),
    "cl_small_blocks": (2, 16, 2, 6, 11, 5, 5, True, "float32", (8, 4, 4)),
    "nchw_small_blocks": (2, 12, 4, 5, 9, 4, 5, False, "float32", (8, 4, 4)),
    "cl_fp16": (2, 12, 2, 4, 5, 4, 4, True, "float16", None),
    "nchw_bf16": (2, 12, 2, 4, 5, 4, 4, False, "bfloat16", None),
}
# (atol, rtol) per dtype. Half dtypes: the reference runs in fp32 on the same rounded inputs, so the
# bound covers the output's rounding and that of W * scale, rounded once to the input dtype.
TOLERANCE = {"float32": (1e-5, 1e-5), "float16": (2e-3, 2e-3), "bfloat16": (1.6e-2, 1.6e-2)}
QUANTITIES = ("output", "grad_x", "grad_w", "grad_scale")
# name -> DGCConv2d 1x1 layer (C_in, C_out, heads, stride, n_in or None for DGC-G, channels_last):
# the layer's `fused` execution against its `masked` one, output and every gradient, in float32.
LAYER_CASES = {
    "layer_h4_stride1": (16, 8, 4, 1, 12, False),
    "layer_h2_stride2_cl": (12, 12, 2, 2, 6, True),
    "layer_n0": (8, 8, 2, 1, 0, False),
    "layer_dgcg": (16, 8, 2, 1, None, False),  # rows keep different numbers of channels
}


def random_inputs(b, c, heads, co, k, h, w, channels_last, dtype, seed=0, device="cpu"):
    """x (B, C_in, h, w), weight (H, Co, C_in), idx (B, H, K) distinct per row, scale (B, H, K)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(b, c, h, w, generator=gen))  # post BN-ReLU, as in the layer
    weight = torch.randn(heads, co, c, generator=gen) / c ** 0.5
    idx = torch.rand(b, heads, c, generator=gen).argsort(dim=2)[..., :k].contiguous()
    scale = torch.rand(b, heads, k, generator=gen) + 0.1
    x = x.to(device=device, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, weight.to(device, dtype), idx.to(device), scale.to(device, dtype)


def layer_reference(x, weight, idx, scale):
    """Output and (grad_x, grad_W, grad_scale) function of the layer's own `sparse` execution: head
    weights set to `weight`, saliency = `scale` at `idx` and 0 elsewhere."""
    b, c = x.shape[:2]
    heads, co, _ = weight.shape
    layer = DGCConv2d(c, heads * co, 1, heads=heads).to(x.device, x.dtype)
    with torch.no_grad():
        for i, head in enumerate(layer.heads):
            head.weight.copy_(weight[i, :, :, None, None])
    saliency = torch.zeros(b, heads, c, device=x.device, dtype=scale.dtype).scatter(2, idx, scale)
    saliency.requires_grad_(True)
    keep = torch.zeros(saliency.shape, dtype=torch.bool, device=x.device).scatter(2, idx, True)
    out = executions.sparse(layer, x, saliency, keep, idx)

    def grads(grad_out):
        params = [head.weight for head in layer.heads]
        wrt = [x, saliency, *params]
        got = torch.autograd.grad(out, wrt, grad_out, allow_unused=True)  # K = 0: x, W unused
        gx, gsal, *gw = (torch.zeros_like(t) if g is None else g for g, t in zip(got, wrt))
        return gx, torch.stack(gw)[..., 0, 0], gsal.gather(2, idx)

    return out, grads


def violation(got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float) -> float:
    """max |got - want| / (atol + rtol |want|): <= 1 means within tolerance everywhere."""
    if want.numel() == 0:
        return 0.0
    got, want = got.detach().double(), want.detach().double()
    return float(((got - want).abs() / (atol + rtol * want.abs())).max())


def run_case(spec) -> dict:
    """Fused vs layer reference for one case: tolerance violations and the layout/dtype checks."""
    b, c, heads, co, k, h, w, channels_last, dtype_name, blocks = spec
    dtype = getattr(torch, dtype_name)
    x, weight, idx, scale = random_inputs(b, c, heads, co, k, h, w, channels_last, dtype)
    block_sizes = None if blocks is None else {n: BlockSizes(*blocks) for n in ("fwd", "bwd_x", "bwd_w")}
    x.requires_grad_(True)
    weight.requires_grad_(True)
    scale.requires_grad_(True)
    out = fused_1x1(x, weight, idx, scale, block_sizes=block_sizes)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    got = (out, *torch.autograd.grad(out, (x, weight, scale), grad_out))

    # Reference in fp32 on the same (rounded) inputs.
    xr, wr, sr = (t.detach().float().requires_grad_(True) for t in (x, weight, scale))
    ref_out, ref_grads = layer_reference(xr, wr, idx, sr)
    want = (ref_out, *ref_grads(grad_out.float()))
    atol, rtol = TOLERANCE[dtype_name]
    result = {name: violation(g, r, atol, rtol) for name, g, r in zip(QUANTITIES, got, want)}
    result["max_abs_diff"] = max(float((g.detach().double() - r.detach().double()).abs().max())
                                 if r.numel() else 0.0 for g, r in zip(got, want))
    cl = torch.channels_last
    result["layout_ok"] = (out.shape == ref_out.shape and out.dtype == dtype
                           and out.is_contiguous(memory_format=cl if channels_last else torch.contiguous_format)
                           and got[1].is_contiguous(memory_format=cl if channels_last else torch.contiguous_format)
                           and all(g.dtype == dtype for g in got[1:]))
    return result


def run_layer_case(spec) -> dict:
    """The layer's `fused` execution vs its `masked` one: violations of the float32 tolerance for
    the output, the input gradient and the largest over the parameter gradients."""
    c_in, c_out, heads, stride, n_in, channels_last = spec
    torch.manual_seed(0)
    layer = use_fused_kernel(DGCConv2d(c_in, c_out, 1, stride=stride, heads=heads,
                                       selection="head" if n_in is not None else "global"))
    x = torch.randn(3, c_in, 7, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if n_in is None:  # DGC-G: the threshold at the median saliency
        with torch.no_grad():
            layer.threshold.fill_(float(layer.saliency(torch.relu(layer.norm(x))).median()))
    else:
        layer.set_inactive(n_in)
    layer.execution = "fused"
    chosen = layer.execution_path(x)
    want = run_execution(layer, x, "masked")
    got = run_execution(layer, x, "fused")
    atol, rtol = TOLERANCE["float32"]
    return {"chosen": chosen, "output": violation(got[0], want[0], atol, rtol),
            "grad_x": violation(got[1], want[1], atol, rtol),
            "grad_params": max(violation(got[2][n], want[2][n], atol, rtol) for n in want[2])}


@pytest.fixture(scope="module")
def interpreted_results():
    """Run every CASE under TRITON_INTERPRET=1 in a child process; its JSON report."""
    env = dict(os.environ, TRITON_INTERPRET="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, __file__, "interpret"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_interpreter_took_effect(interpreted_results):
    assert interpreted_results["kernel_type"] == "InterpretedFunction"


@pytest.mark.parametrize("name", list(CASES))
def test_fused_matches_sparse_execution_under_interpreter(interpreted_results, name):
    result = interpreted_results["cases"][name]
    bad = {q: result[q] for q in QUANTITIES if not result[q] <= 1.0}
    assert not bad, f"{name}: outside tolerance (violation > 1): {bad}, max |diff| {result['max_abs_diff']:.3g}"
    assert result["layout_ok"], f"{name}: output/grad dtype or memory format differs from x's"


@pytest.mark.parametrize("name", list(LAYER_CASES))
def test_fused_execution_matches_masked_under_interpreter(interpreted_results, name):
    result = interpreted_results["layers"][name]
    assert result["chosen"] == "fused"  # it applies under the interpreter: no fallback ran
    bad = {q: v for q, v in result.items() if q != "chosen" and not v <= 1.0}
    assert not bad, f"{name}: outside tolerance (violation > 1): {bad}"


def _valid_inputs():
    return random_inputs(2, 8, 2, 3, 4, 3, 3, False, torch.float32)


@pytest.mark.parametrize("change, message", [
    (lambda x, w, i, s: (x[0], w, i, s), "x must be"),
    (lambda x, w, i, s: (x, w[0], i, s), "weight must be"),
    (lambda x, w, i, s: (x, w[..., :5], i, s), "input channels"),
    (lambda x, w, i, s: (x, w, i[:, :1], s[:, :1]), "must start with"),
    (lambda x, w, i, s: (x, w, i, s[..., :2]), "scale shape"),
    (lambda x, w, i, s: (x, w, i.int(), s), "int64"),
    (lambda x, w, i, s: (x.double(), w, i, s), "x must be float32"),
])
def test_bad_inputs_raise_one_line_value_errors(change, message):
    with pytest.raises(ValueError, match=message):
        fused_1x1(*change(*_valid_inputs()))


def test_cpu_without_interpreter_is_unavailable(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not fused_available(torch.device("cpu"))
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        fused_1x1(*_valid_inputs())


def test_kernels_defined_compiled_refuse_cpu_tensors(monkeypatch):
    """Setting TRITON_INTERPRET after the kernels were defined compiled cannot take effect: a clear
    error, not a crash inside Triton."""
    if os.environ.get("TRITON_INTERPRET"):
        pytest.skip("TRITON_INTERPRET is set in this process: the kernels would be interpreted")
    pytest.importorskip("triton")
    from dgc.kernels import _fused_triton_kernels, fused_triton  # noqa: F401  (defines them compiled)

    monkeypatch.setattr(fused_triton, "_kernels", None)  # as before this process's first call
    monkeypatch.setattr(fused_triton, "_kernels_interpreted", None)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(RuntimeError, match="already defined without TRITON_INTERPRET"):
        fused_1x1(*_valid_inputs())
    assert not fused_available("cpu")


def test_import_dgc_without_triton():
    """`import dgc.kernels` must work where triton is missing; calling then says why it cannot run."""
    code = ("import sys; sys.modules['triton'] = None\n"
            "import torch, dgc, dgc.kernels\n"
            "from dgc.kernels.fused_triton import fused_available, fused_1x1\n"
            "assert not fused_available('cpu') and not fused_available('cuda')\n"
            "x = torch.rand(1, 4, 2, 2); w = torch.rand(1, 2, 4)\n"
            "i = torch.zeros(1, 1, 1, dtype=torch.long); s = torch.ones(1, 1, 1)\n"
            "try:\n    fused_1x1(x, w, i, s)\nexcept RuntimeError as e:\n    print(e)\n")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "triton is not installed" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_kernels_compile_for_cuda_without_a_gpu(dtype):
    """The interpreter accepts code the compiler rejects: build each kernel for sm_90 (Hopper) down to
    a cubin, with Triton's bundled ptxas, so a CPU-only CI still catches such errors."""
    if os.environ.get("TRITON_INTERPRET"):
        pytest.skip("TRITON_INTERPRET is set in this process: the kernels would be interpreted")
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from dgc.kernels import _fused_triton_kernels as kernels

    constexprs = {"BLOCK_P": 64, "BLOCK_CO": 32, "BLOCK_K": 32, "UPCAST_DOT": False,
                  "INPUT_PRECISION": "ieee"}
    for fn in (kernels.fused_fwd_kernel, kernels.fused_bwd_x_kernel, kernels.fused_bwd_w_kernel):
        names = fn.arg_names
        # Pointers: idx int64; the fp32 accumulation buffers of the backward; the rest in `dtype`.
        signature = {n: "constexpr" if n in constexprs else "*i64" if n == "idx_ptr"
                     else "*fp32" if n in ("gx_ptr", "gw_ptr", "gs_ptr") else f"*{dtype}"
                     if n.endswith("_ptr") else "i32" for n in names}
        src = ASTSource(fn, signature, constexprs={(names.index(n),): v for n, v in constexprs.items()})
        compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
        ptx = compiled.asm["ptx"]
        assert len(compiled.asm["cubin"]) > 0, fn.__name__
        if dtype == "bf16":  # bf16 operands reach the tensor cores
            assert "mma" in ptx, fn.__name__
        else:  # fp32 with input_precision 'ieee': plain fp32 FMAs, no TF32 MMA
            assert "fma.rn.f32" in ptx and "mma" not in ptx, fn.__name__


@pytest.mark.gpu
def test_fused_matches_sparse_execution_on_cuda(no_tf32):
    """DenseNet-like shape in fp32 without TF32: output and gradients match the layer on CUDA."""
    assert fused_available(torch.device("cuda"))
    for channels_last in (False, True):
        x, weight, idx, scale = random_inputs(64, 256, 4, 32, 64, 16, 16, channels_last,
                                              torch.float32, device="cuda")
        for t in (x, weight, scale):
            t.requires_grad_(True)
        out = fused_1x1(x, weight, idx, scale)
        grad_out = torch.randn_like(out)
        got = (out, *torch.autograd.grad(out, (x, weight, scale), grad_out))
        ref_out, ref_grads = layer_reference(x, weight, idx, scale)
        want = (ref_out, *ref_grads(grad_out))
        assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
        for name, g, r in zip(QUANTITIES, got, want):
            # grad_W sums over 64 samples x 256 positions; fp32 summation order differs.
            torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4, msg=lambda m: f"{name}: {m}")


def _interpreter_main() -> None:
    torch.set_num_threads(1)
    assert fused_available(torch.device("cpu")), "TRITON_INTERPRET=1 did not make the kernels available"
    cases = {name: run_case(spec) for name, spec in CASES.items()}
    layers = {name: run_layer_case(spec) for name, spec in LAYER_CASES.items()}
    from dgc.kernels import _fused_triton_kernels

    kind = type(_fused_triton_kernels.fused_fwd_kernel).__name__
    print(json.dumps({"kernel_type": kind, "cases": cases, "layers": layers}))


if __name__ == "__main__" and sys.argv[1:] == ["interpret"]:
    _interpreter_main()
