"""The C++ CPU inference kernels of `cpu_kernels.cpp` (forward-only, float32, CPU tensors) through ctypes, each
the maths of a layer's PyTorch execution (cpu_layers.py makes them executions of the layers).

Built on first use (FLAG_SETS, the first that compiles) into `$DGC_KERNEL_CACHE` (default ~/.cache/dgc-kernels),
named by a hash of source, compiler, flags and, for -march=native, `cpu_identity()`. `DGC_CPU_KERNELS=0` turns
them off; a failed build warns once and leaves them off for the process.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import torch

SOURCE = Path(__file__).with_name("cpu_kernels.cpp")
FLAG_SETS = (["-O3", "-march=native", "-fopenmp"], ["-O3", "-fopenmp"], ["-O3"])
_ERRORS = {-1: "invalid sizes", -2: "an index out of range"}
# The /proc/cpuinfo fields of the first processor that fix what -march=native compiles for (x86, ARM).
_CPU_FIELDS = ("vendor_id", "cpu family", "model", "model name", "flags", "Features", "CPU implementer",
               "CPU architecture", "CPU variant", "CPU part", "isa")


# The process's one attempt at loading the library: the CDLL (or None), why not, and whether it was tried.
_state = SimpleNamespace(library=None, reason=None, tried=False)


def cpu_identity(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model and instruction-set extensions (its first processor's _CPU_FIELDS in
    /proc/cpuinfo); where there is no /proc/cpuinfo, platform.processor() and platform.machine()."""
    fields = []
    with contextlib.suppress(OSError), open(cpuinfo) as fh:
        for line in fh:
            if not line.strip():  # the end of the first processor's block
                break
            key, _, value = (part.strip() for part in line.partition(":"))
            if key in _CPU_FIELDS:
                fields.append(f"{key}: {' '.join(value.split())}")
    return "\n".join(fields) or f"{platform.processor()} {platform.machine()}"


def _library_path(compiler: str, flags: list[str]) -> Path:
    native = any(flag.endswith("=native") for flag in flags)  # the library runs on this CPU only
    parts = (SOURCE.read_bytes(), compiler.encode(), " ".join(flags).encode(), platform.machine().encode(),
             platform.system().encode(), (cpu_identity() if native else "").encode())
    key = hashlib.sha256(b"".join(part + b"\0" for part in parts))
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dgc-kernels"
    return Path(os.environ.get("DGC_KERNEL_CACHE") or default) / f"cpu_kernels-{key.hexdigest()[:16]}.so"


def _build(compiler: str, flags: list[str], target: Path) -> str | None:
    """Compile into `target` (atomically); None on success, else the compiler's last error line."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.stem, suffix=".tmp")
    os.close(fd)
    try:
        proc = subprocess.run([compiler, *flags, "-std=c++17", "-shared", "-fPIC", str(SOURCE), "-o", tmp],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
            return lines[-1] if lines else f"{compiler} exited with {proc.returncode}"
        os.replace(tmp, target)
        return None
    finally:
        Path(tmp).unlink(missing_ok=True)


def _load() -> None:
    _state.tried = True
    if os.environ.get("DGC_CPU_KERNELS", "1").strip().lower() in ("0", "false", "off", "no"):
        _state.reason = "turned off by DGC_CPU_KERNELS=0"
        return
    names = (os.environ.get("CXX"), "c++", "g++", "clang++")
    compiler = next((path for name in names if name and (path := shutil.which(name))), None)
    reasons = []
    for flags in FLAG_SETS if compiler else ():
        path = _library_path(compiler, flags)
        try:
            error = None if path.exists() else _build(compiler, flags, path)
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
        try:
            if error is None:
                _state.library = _declare(ctypes.CDLL(str(path)))
                return
        except OSError as exc:
            error = f"cannot load {path.name}: {exc}"
        reasons.append(f"[{' '.join(flags)}] {error}")
    _state.reason = ("build failed: " + "; ".join(reasons) if compiler
                     else "no C++ compiler found (c++, g++ or clang++; or set CXX)")
    warnings.warn(f"dgc CPU kernels unavailable, using PyTorch executions ({_state.reason})",
                  RuntimeWarning, stacklevel=3)


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    p, i64, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for name, argtypes in (("fused_1x1", [p] * 5 + [i64] * 6 + [c_int]),
                           ("bnrelu_group_conv", [p] * 5 + [i64] * 10 + [c_int, i64, c_int]),
                           ("select_topk", [p] + [i64] * 3 + [p, p, c_int]),
                           ("avg_pool2", [p, p] + [i64] * 3 + [c_int]),
                           ("bnrelu_mean", [p] * 5 + [i64] * 4 + [c_int]),
                           ("layer", [p] * 11 + [i64] * 15 + [c_int])):
        function = getattr(lib, f"dgc_{name}")
        function.argtypes, function.restype = argtypes, c_int
    return lib


def cpu_kernels_available() -> bool:
    """Whether the kernels can run in this process (builds them on the first call)."""
    if not _state.tried:
        _load()
    return _state.library is not None


def _call(name: str, *args: torch.Tensor | int | None) -> None:
    """Run the library's dgc_<name> (name: the Python function's) on tensors (as pointers) and sizes,
    with torch's thread count; a nonzero return code raises."""
    if not cpu_kernels_available():
        raise RuntimeError(f"the dgc CPU kernels are unavailable: {_state.reason}")
    pointers = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args]
    code = getattr(_state.library, "dgc_" + name.removeprefix("dgc_"))(*pointers, torch.get_num_threads())
    if code != 0:
        raise ValueError(f"{name}: {_ERRORS.get(code, f'error {code}')}")


def unavailable_reason() -> str | None:
    """Why the kernels cannot run (None when they can); builds them on the first call."""
    return None if cpu_kernels_available() else _state.reason


def cpu_inference(x: torch.Tensor) -> bool:
    """Whether a forward on x can use the kernels: a float32 CPU tensor, autograd off, outside
    torch.compile (which traces the PyTorch executions instead), and the kernels built."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not torch.compiler.is_compiling() and cpu_kernels_available())


@contextlib.contextmanager
def kernels_off() -> Iterator[None]:
    """Within the block the layers run their PyTorch executions (A/B timing, tests)."""
    cpu_kernels_available()
    saved = _state.library, _state.reason
    _state.library, _state.reason = None, "turned off by kernels_off()"
    try:
        yield
    finally:
        _state.library, _state.reason = saved


def batch_strided(x: torch.Tensor) -> bool:
    """x (B, C, h, w) is NCHW within each sample, samples any distance >= C*h*w apart (e.g. a channel
    slice buf[:, :C] of a larger contiguous batch)."""
    b, c, h, w = x.shape
    return x.stride()[1:] == (h * w, w, 1) and (b <= 1 or x.stride(0) >= c * h * w)


def _check(name: str, t: torch.Tensor, dtype: torch.dtype = torch.float32, keep_strides: bool = False) -> torch.Tensor:
    if t.device.type != "cpu":
        raise ValueError(f"{name} must be a CPU tensor, got {t.device}")
    if t.dtype != dtype:
        raise ValueError(f"{name} must be {dtype}, got {t.dtype}")
    if torch.is_grad_enabled() and t.requires_grad:
        raise RuntimeError(f"{name} requires grad: the CPU kernels are forward-only "
                           "(use them under torch.no_grad() or torch.inference_mode())")
    return t if keep_strides else t.contiguous()


def _batch_stride(x: torch.Tensor) -> int:
    return x.stride(0) if x.shape[0] else x.shape[1:].numel()


def _output_size(h: int, w: int, kh: int, kw: int, padding: tuple[int, int], stride=(1, 1)) -> tuple[int, int]:
    """A conv's output (h', w'); raises where the kernel does not fit the padded input."""
    (ph, pw), (sh, sw) = padding, stride
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"a {kh}x{kw} kernel with padding {padding} does not fit a {h}x{w} input")
    return ho, wo


def _input_and_bn(x: torch.Tensor, bn_scale: torch.Tensor | None,
                  bn_shift: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """x (B, C, h, w) batch-strided (else copied contiguous) and the BN affine (C, both or neither), checked."""
    if (bn_scale is None) != (bn_shift is None):
        raise ValueError("give both bn_scale and bn_shift, or neither")
    x = _check("x", x, keep_strides=batch_strided(x))
    if bn_scale is not None:
        bn_scale, bn_shift = _check("bn_scale", bn_scale), _check("bn_shift", bn_shift)
        if bn_scale.shape != (x.shape[1],) or bn_shift.shape != (x.shape[1],):
            raise ValueError(f"bn_scale and bn_shift must have shape ({x.shape[1]},)")
    return x, bn_scale, bn_shift


def check_1x1_inputs(x: torch.Tensor, weight: torch.Tensor, idx: torch.Tensor, scale: torch.Tensor) -> None:
    """The checks both fused 1x1 kernels (this C++ one and fused_triton's) make: x (B, C_in, h, w), weight
    (H, Co, C_in), idx (B, H, K) int64 with K <= C_in, scale idx's shape; else a ValueError saying which."""
    for name, t, shape in (("x", x, "(B, C_in, h, w)"), ("weight", weight, "(H, Co, C_in)"), ("idx", idx, "(B, H, K)")):
        if t.dim() != shape.count(",") + 1:
            raise ValueError(f"{name} must be {shape}, got shape {tuple(t.shape)}")
    b, c = x.shape[:2]
    heads, c_w = weight.shape[0], weight.shape[2]
    shape, k = tuple(idx.shape), idx.shape[2]
    for bad, message in ((c_w != c, f"weight has {c_w} input channels but x has {c}"),
                         (shape[:2] != (b, heads), f"idx shape {shape} must start with (B, H) = {(b, heads)}"),
                         (k > c, f"idx keeps K={k} channels but x has only {c}"),
                         (scale.shape != idx.shape, f"scale shape {tuple(scale.shape)} must equal idx shape {shape}"),
                         (idx.dtype != torch.int64, f"idx must be int64, got {idx.dtype}")):
        if bad:
            raise ValueError(message)


def fused_1x1(x: torch.Tensor, weight: torch.Tensor, idx: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """DGC 1x1 conv over the kept channels: x (B, C_in, h, w), weight (H, Co, C_in), idx (B, H, K)
    int64 in [0, C_in), scale (B, H, K) -> (B, H*Co, h, w) NCHW, heads interleaved (channel j*H + i
    is head i's channel j), as DGCConv2d's other executions; the gather happens inside the GEMM."""
    check_1x1_inputs(x, weight, idx, scale)
    b, c, h, w = x.shape
    heads, co, _ = weight.shape
    x, weight, scale = _check("x", x), _check("weight", weight), _check("scale", scale)
    idx = _check("idx", idx, torch.int64)
    out = torch.empty((b, heads * co, h, w), dtype=torch.float32)
    _call("fused_1x1", x, weight, idx, scale, out, b, c, h * w, heads, co, idx.shape[2])
    return out


def bnrelu_group_conv(x: torch.Tensor, weight: torch.Tensor, bn_scale: torch.Tensor | None,
                      bn_shift: torch.Tensor | None, padding: tuple[int, int], groups: int,
                      shuffle: bool = False) -> torch.Tensor:
    """relu(x * bn_scale + bn_shift) (per channel; skipped when both are None), zero-padded by
    `padding`, convolved with weight (C_out, C_in/groups, kh, kw) at stride 1 -> (B, C_out, h', w')
    NCHW; `shuffle` interleaves the groups' outputs (channel j*groups + g <- group g, channel j)."""
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(f"expected x (B, C, h, w) and weight (C_out, C_in/groups, kh, kw); got "
                         f"{tuple(x.shape)}, {tuple(weight.shape)}")
    b, c, h, w = x.shape
    c_out, c_group, kh, kw = weight.shape
    if groups < 1 or c % groups or c_out % groups or c_group * groups != c:
        raise ValueError(f"groups={groups} does not fit x with {c} channels and weight {tuple(weight.shape)}")
    x, bn_scale, bn_shift = _input_and_bn(x, bn_scale, bn_shift)
    weight = _check("weight", weight)
    out = torch.empty((b, c_out, *_output_size(h, w, kh, kw, padding)), dtype=torch.float32)
    _call("bnrelu_group_conv", x, bn_scale, bn_shift, weight, out, b, c, h, w, c_out, groups, kh, kw, *padding,
          int(shuffle), _batch_stride(x))
    return out


def bnrelu_mean(x: torch.Tensor, bn_scale: torch.Tensor, bn_shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(relu(x * bn_scale + bn_shift) per channel, its mean over the spatial positions (B, C)) in
    one pass over x (B, C, h, w): a DGC layer's pre-activation and its saliency pooling."""
    if x.dim() != 4:
        raise ValueError(f"x must be (B, C, h, w), got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    if h * w == 0:
        raise ValueError("x has no spatial positions to average")
    if bn_scale is None or bn_shift is None:
        raise ValueError("bnrelu_mean needs bn_scale and bn_shift")
    x, bn_scale, bn_shift = _input_and_bn(x, bn_scale, bn_shift)
    y = torch.empty((b, c, h, w), dtype=torch.float32)
    means = torch.empty((b, c), dtype=torch.float32)
    _call("bnrelu_mean", x, bn_scale, bn_shift, y, means, b, c, h * w, _batch_stride(x))
    return y, means


def select_topk(saliency: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DGC's per-row selection: (idx, values), the `keep` channels of largest (saliency, channel
    index) of each row of saliency (..., C) (a NaN counts as +inf), the same set as
    `rank_keys(s).topk(keep)` in no particular order, and the saliencies there."""
    s = _check("saliency", saliency)
    c = s.shape[-1]
    if not 0 <= keep <= c:
        raise ValueError(f"keep must be in [0, {c}], got {keep}")
    idx = torch.empty((*s.shape[:-1], keep), dtype=torch.int64)
    values = torch.empty((*s.shape[:-1], keep), dtype=torch.float32)
    _call("select_topk", s, s.numel() // c if c else 0, c, keep, idx, values)
    return idx, values


def dgc_layer(x: torch.Tensor, bn_scale: torch.Tensor | None, bn_shift: torch.Tensor | None,
              w1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor, wt: torch.Tensor, keep: int,
              stride: tuple[int, int], padding: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A whole DGC layer with head-wise selection at inference, as its PyTorch forward: (out (B, H*Co, h', w'),
    heads interleaved; saliency (B, H, C); kept indices (B, H, keep)). x (B, C, h, w) batch-strided;
    bn_scale/bn_shift (C) its BN-ReLU (`bn_affine`) or None; w1 (H, S, C), w2 (H, C, S), b2 (H, C) the
    saliency generators; wt (H, C, kh, kw, Co) the conv weights, output channel last; zero padding."""
    if x.dim() != 4 or wt.dim() != 5 or w1.dim() != 3 or w2.dim() != 3 or b2.dim() != 2:
        raise ValueError(f"expected x (B, C, h, w), w1 (H, S, C), w2 (H, C, S), b2 (H, C), wt (H, C, kh, kw, "
                         f"Co); got {tuple(x.shape)}, {tuple(w1.shape)}, {tuple(w2.shape)}, {tuple(b2.shape)}, "
                         f"{tuple(wt.shape)}")
    b, c, h, w = x.shape
    heads, c_w, kh, kw, co = wt.shape
    s = w1.shape[1]
    if (c_w != c or w1.shape != (heads, s, c) or w2.shape != (heads, c, s) or b2.shape != (heads, c)
            or not 0 <= keep <= c):
        raise ValueError(f"inconsistent shapes: x {tuple(x.shape)}, w1 {tuple(w1.shape)}, w2 {tuple(w2.shape)}, "
                         f"b2 {tuple(b2.shape)}, wt {tuple(wt.shape)}, keep {keep}")
    x, bn_scale, bn_shift = _input_and_bn(x, bn_scale, bn_shift)
    w1, w2, b2, wt = _check("w1", w1), _check("w2", w2), _check("b2", b2), _check("wt", wt)
    ho, wo = _output_size(h, w, kh, kw, padding, stride)
    y = torch.empty((b, c, h * w) if bn_scale is not None else (0,), dtype=torch.float32)
    out = torch.empty((b, heads * co, ho, wo), dtype=torch.float32)
    saliency = torch.empty((b, heads, c), dtype=torch.float32)
    idx = torch.empty((b, heads, keep), dtype=torch.int64)
    _call("dgc_layer", x, bn_scale, bn_shift, w1, w2, b2, wt, y, out, saliency, idx, b, c, h, w, _batch_stride(x),
          heads, s, co, kh, kw, *stride, *padding, keep)
    return out, saliency, idx


def avg_pool2(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling with stride 2 of x (B, C, h, w), as F.avg_pool2d(x, 2)."""
    if x.dim() != 4 or x.shape[2] < 2 or x.shape[3] < 2:
        raise ValueError(f"x must be (B, C, h, w) with h, w >= 2, got shape {tuple(x.shape)}")
    x = _check("x", x)
    b, c, h, w = x.shape
    out = torch.empty((b, c, h // 2, w // 2), dtype=torch.float32)
    _call("avg_pool2", x, out, b * c, h, w)
    return out


def bn_affine(norm: torch.nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of an inference-mode BatchNorm2d (running statistics): y = x * scale + shift."""
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError("BatchNorm2d without running statistics has no inference affine")
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return scale.detach().float(), shift.detach().float()
