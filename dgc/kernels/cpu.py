"""The CPU inference kernels of `cpu_kernels.cpp`: built with the system's C++ compiler on first use,
cached, and called through ctypes (no Python extension build, no ninja: one compiler call).

`fused_1x1` (the DGC 1x1 conv over the kept channels, the gather inside the GEMM: the CPU counterpart
of fused_triton.py), `bnrelu_group_conv` (BN-ReLU and a grouped k x k conv at stride 1), `bnrelu_mean`
(a DGC layer's BN-ReLU and its saliency pooling in one pass), `select_topk` (DGC's selection) and
`avg_pool2` (the DenseNets' transitions) and `dgc_layer` (a whole DGC layer in one call: its
pre-activation, saliency generators, selection and conv, 1x1 or k x k). All are forward-only (they refuse tensors that require grad
while grad mode is on), float32, for CPU tensors; the layers run them as executions where a model was
given them and they apply (cpu_layers.py), and otherwise their PyTorch executions, the same maths.

The library is compiled with `-O3 -march=native -fopenmp` (then without -march=native, then without
OpenMP, whichever first builds and loads) into `$DGC_KERNEL_CACHE` (default
`~/.cache/dgc-kernels`), named by a hash of the source, compiler and flags (and, for -march=native,
of the CPU's instruction set: `cpu_identity()`, so a cache shared by machines with other CPUs never
hands one a library it cannot run), written to a temporary file and renamed, so concurrent processes
never load a half-written library. `DGC_CPU_KERNELS=0`
turns the kernels off (the layers then use their PyTorch executions). A failed build prints one
warning line and the kernels stay off for the process.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

SOURCE = Path(__file__).with_name("cpu_kernels.cpp")
FLAG_SETS = (["-O3", "-march=native", "-fopenmp"], ["-O3", "-fopenmp"], ["-O3"])
_COMMON_FLAGS = ["-std=c++17", "-shared", "-fPIC"]
_ERRORS = {-1: "invalid sizes", -2: "an index out of range"}
CPUINFO = Path("/proc/cpuinfo")
# The /proc/cpuinfo fields of the first processor that fix what -march=native compiles for (x86, ARM).
_CPU_FIELDS = ("vendor_id", "cpu family", "model", "model name", "flags", "Features", "CPU implementer",
               "CPU architecture", "CPU variant", "CPU part", "isa")


@dataclass
class _State:
    """The process's one attempt at loading the library (None until tried)."""

    library: ctypes.CDLL | None = None
    reason: str | None = None
    tried: bool = False


_state = _State()


def _disabled_by_env() -> bool:
    return os.environ.get("DGC_CPU_KERNELS", "1").strip().lower() in ("0", "false", "off", "no")


def cache_dir() -> Path:
    if os.environ.get("DGC_KERNEL_CACHE"):
        return Path(os.environ["DGC_KERNEL_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dgc-kernels"


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and (path := shutil.which(name)):
            return path
    return None


def cpu_identity(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model and instruction-set extensions (its first processor's _CPU_FIELDS in
    /proc/cpuinfo); where there is no /proc/cpuinfo, platform.processor() and platform.machine()."""
    fields = []
    try:
        with open(cpuinfo) as fh:
            for line in fh:
                if not line.strip():  # the end of the first processor's block
                    break
                key, _, value = (part.strip() for part in line.partition(":"))
                if key in _CPU_FIELDS:
                    fields.append(f"{key}: {' '.join(value.split())}")
    except OSError:
        pass
    return "\n".join(fields) or f"{platform.processor()} {platform.machine()}"


def _library_path(compiler: str, flags: list[str]) -> Path:
    native = any(flag.endswith("=native") for flag in flags)  # the library runs on this CPU only
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), compiler.encode(), " ".join(flags).encode(),
                 platform.machine().encode(), platform.system().encode(),
                 (cpu_identity() if native else "").encode()):
        key.update(part)
        key.update(b"\0")
    return cache_dir() / f"cpu_kernels-{key.hexdigest()[:16]}.so"


def _build(compiler: str, flags: list[str], target: Path) -> str | None:
    """Compile into `target` (atomically); None on success, else the compiler's last error line."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.stem, suffix=".tmp")
    os.close(fd)
    try:
        proc = subprocess.run([compiler, *flags, *_COMMON_FLAGS, str(SOURCE), "-o", tmp],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
            return lines[-1] if lines else f"{compiler} exited with {proc.returncode}"
        os.replace(tmp, target)
        return None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load() -> None:
    _state.tried = True
    if _disabled_by_env():
        _state.reason = "turned off by DGC_CPU_KERNELS=0"
        return
    compiler = _compiler()
    if compiler is None:
        _state.reason = "no C++ compiler found (c++, g++ or clang++; or set CXX)"
        _warn()
        return
    reasons = []
    for flags in FLAG_SETS:
        path = _library_path(compiler, flags)
        try:
            error = None if path.exists() else _build(compiler, flags, path)
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error is None:
            try:
                lib = ctypes.CDLL(str(path))
            except OSError as exc:
                error = f"cannot load {path.name}: {exc}"
            else:
                _declare(lib)
                _state.library = lib
                return
        reasons.append(f"[{' '.join(flags)}] {error}")
    _state.reason = "build failed: " + "; ".join(reasons)
    _warn()


def _warn() -> None:
    warnings.warn(f"dgc CPU kernels unavailable, using PyTorch executions ({_state.reason})",
                  RuntimeWarning, stacklevel=4)


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.dgc_fused_1x1.argtypes = [p, p, p, p, p] + [i64] * 6 + [c_int]
    lib.dgc_fused_1x1.restype = c_int
    lib.dgc_bnrelu_group_conv.argtypes = [p, p, p, p, p] + [i64] * 10 + [c_int, i64, c_int]
    lib.dgc_bnrelu_group_conv.restype = c_int
    lib.dgc_select_topk.argtypes = [p] + [i64] * 3 + [p, p, c_int]
    lib.dgc_select_topk.restype = c_int
    lib.dgc_avg_pool2.argtypes = [p, p] + [i64] * 3 + [c_int]
    lib.dgc_avg_pool2.restype = c_int
    lib.dgc_bnrelu_mean.argtypes = [p] * 5 + [i64] * 4 + [c_int]
    lib.dgc_bnrelu_mean.restype = c_int
    lib.dgc_layer.argtypes = [p] * 11 + [i64] * 15 + [c_int]
    lib.dgc_layer.restype = c_int


def _library() -> ctypes.CDLL:
    if not _state.tried:
        _load()
    if _state.library is None:
        raise RuntimeError(f"the dgc CPU kernels are unavailable: {_state.reason}")
    return _state.library


def cpu_kernels_available() -> bool:
    """Whether the kernels can run in this process (builds them on the first call)."""
    if not _state.tried:
        _load()
    return _state.library is not None


def unavailable_reason() -> str | None:
    """Why the kernels cannot run (None when they can); builds them on the first call."""
    cpu_kernels_available()
    return _state.reason


def cpu_inference(x: torch.Tensor) -> bool:
    """Whether a forward on x can use the kernels: a float32 CPU tensor, autograd off, outside
    torch.compile (the kernels are opaque to the compiler: it traces the PyTorch executions), and
    the kernels built (on the first call)."""
    if (x.device.type != "cpu" or x.dtype != torch.float32 or torch.is_grad_enabled()
            or torch.compiler.is_compiling()):
        return False
    return cpu_kernels_available()


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


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def batch_strided(x: torch.Tensor) -> bool:
    """x (B, C, h, w) is NCHW within each sample, samples any distance apart (>= C*h*w): a plain
    contiguous tensor, or a channel slice buf[:, :C] of a larger contiguous batch."""
    b, c, h, w = x.shape
    return x.stride()[1:] == (h * w, w, 1) and (b <= 1 or x.stride(0) >= c * h * w)


def _check(name: str, t: torch.Tensor, dtype: torch.dtype = torch.float32,
           keep_strides: bool = False) -> torch.Tensor:
    if t.device.type != "cpu":
        raise ValueError(f"{name} must be a CPU tensor, got {t.device}")
    if t.dtype != dtype:
        raise ValueError(f"{name} must be {dtype}, got {t.dtype}")
    if torch.is_grad_enabled() and t.requires_grad:
        raise RuntimeError(f"{name} requires grad: the CPU kernels are forward-only "
                           "(use them under torch.no_grad() or torch.inference_mode())")
    return t if keep_strides else t.contiguous()


def _raise_on(code: int, what: str) -> None:
    if code != 0:
        raise ValueError(f"{what}: {_ERRORS.get(code, f'error {code}')}")


def _input_and_bn(x: torch.Tensor, bn_scale: torch.Tensor | None,
                  bn_shift: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """x (B, C, h, w) batch-strided (copied contiguous otherwise) and checked; the per-channel BN
    affine (C) checked, both given or neither."""
    if (bn_scale is None) != (bn_shift is None):
        raise ValueError("give both bn_scale and bn_shift, or neither")
    if not batch_strided(x):
        x = x.contiguous()
    x = _check("x", x, keep_strides=True)
    if bn_scale is not None:
        c = x.shape[1]
        bn_scale, bn_shift = _check("bn_scale", bn_scale), _check("bn_shift", bn_shift)
        if bn_scale.shape != (c,) or bn_shift.shape != (c,):
            raise ValueError(f"bn_scale and bn_shift must have shape ({c},)")
    return x, bn_scale, bn_shift


def fused_1x1(x: torch.Tensor, weight: torch.Tensor, idx: torch.Tensor,
              scale: torch.Tensor) -> torch.Tensor:
    """DGC 1x1 conv over the kept channels: x (B, C_in, h, w), weight (H, Co, C_in), idx (B, H, K)
    int64 in [0, C_in), scale (B, H, K) -> (B, H*Co, h, w) NCHW, heads interleaved (channel j*H + i
    is head i's channel j), the same maths as DGCConv2d's other executions (dgc/layers/executions.py).
    The gather of the kept rows happens inside the GEMM: no gathered copy of x."""
    lib = _library()
    if x.dim() != 4 or weight.dim() != 3 or idx.dim() != 3:
        raise ValueError(f"expected x (B, C, h, w), weight (H, Co, C), idx (B, H, K); got shapes "
                         f"{tuple(x.shape)}, {tuple(weight.shape)}, {tuple(idx.shape)}")
    b, c, h, w = x.shape
    heads, co, c_w = weight.shape
    if c_w != c or idx.shape[:2] != (b, heads) or scale.shape != idx.shape or idx.shape[2] > c:
        raise ValueError(f"inconsistent shapes: x {tuple(x.shape)}, weight {tuple(weight.shape)}, "
                         f"idx {tuple(idx.shape)}, scale {tuple(scale.shape)}")
    x, weight, scale = _check("x", x), _check("weight", weight), _check("scale", scale)
    idx = _check("idx", idx, torch.int64)
    out = torch.empty((b, heads * co, h, w), dtype=torch.float32)
    code = lib.dgc_fused_1x1(_ptr(x), _ptr(weight), _ptr(idx), _ptr(scale), _ptr(out),
                             b, c, h * w, heads, co, idx.shape[2], torch.get_num_threads())
    _raise_on(code, "fused_1x1")
    return out


def bnrelu_group_conv(x: torch.Tensor, weight: torch.Tensor, bn_scale: torch.Tensor | None,
                      bn_shift: torch.Tensor | None, padding: tuple[int, int], groups: int,
                      shuffle: bool = False) -> torch.Tensor:
    """relu(x * bn_scale + bn_shift) (per channel; skipped when both are None), zero-padded by
    `padding`, convolved with weight (C_out, C_in/groups, kh, kw) at stride 1 -> (B, C_out, h', w')
    NCHW; `shuffle` interleaves the groups' outputs (channel j*groups + g <- group g, channel j)."""
    lib = _library()
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(f"expected x (B, C, h, w) and weight (C_out, C_in/groups, kh, kw); got "
                         f"{tuple(x.shape)}, {tuple(weight.shape)}")
    b, c, h, w = x.shape
    c_out, c_group, kh, kw = weight.shape
    if groups < 1 or c % groups or c_out % groups or c_group * groups != c:
        raise ValueError(f"groups={groups} does not fit x with {c} channels and weight "
                         f"{tuple(weight.shape)}")
    x, bn_scale, bn_shift = _input_and_bn(x, bn_scale, bn_shift)
    weight = _check("weight", weight)
    ph, pw = padding
    ho, wo = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"a {kh}x{kw} kernel with padding {padding} does not fit a {h}x{w} input")
    out = torch.empty((b, c_out, ho, wo), dtype=torch.float32)
    code = lib.dgc_bnrelu_group_conv(_ptr(x), _ptr(bn_scale), _ptr(bn_shift), _ptr(weight),
                                     _ptr(out), b, c, h, w, c_out, groups, kh, kw, ph, pw,
                                     int(shuffle), x.stride(0) if b else c * h * w,
                                     torch.get_num_threads())
    _raise_on(code, "bnrelu_group_conv")
    return out


def bnrelu_mean(x: torch.Tensor, bn_scale: torch.Tensor,
                bn_shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(relu(x * bn_scale + bn_shift) per channel, its mean over the spatial positions (B, C)) in
    one pass over x (B, C, h, w): a DGC layer's pre-activation and its saliency pooling."""
    lib = _library()
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
    code = lib.dgc_bnrelu_mean(_ptr(x), _ptr(bn_scale), _ptr(bn_shift), _ptr(y), _ptr(means),
                               b, c, h * w, x.stride(0) if b else c * h * w, torch.get_num_threads())
    _raise_on(code, "bnrelu_mean")
    return y, means


def select_topk(saliency: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DGC's per-row selection: (idx, values), the `keep` channels of largest (saliency, channel
    index) of each row of saliency (..., C) (a NaN counts as +inf), the same set as
    `rank_keys(s).topk(keep)` in no particular order, and the saliencies there."""
    lib = _library()
    s = _check("saliency", saliency)
    c = s.shape[-1]
    if not 0 <= keep <= c:
        raise ValueError(f"keep must be in [0, {c}], got {keep}")
    rows = s.numel() // c if c else 0
    idx = torch.empty((*s.shape[:-1], keep), dtype=torch.int64)
    values = torch.empty((*s.shape[:-1], keep), dtype=torch.float32)
    code = lib.dgc_select_topk(_ptr(s), rows, c, keep, _ptr(idx), _ptr(values), torch.get_num_threads())
    _raise_on(code, "select_topk")
    return idx, values


def dgc_layer(x: torch.Tensor, bn_scale: torch.Tensor | None, bn_shift: torch.Tensor | None,
              w1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor, wt: torch.Tensor, keep: int,
              stride: tuple[int, int], padding: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A whole DGC layer with head-wise selection at inference, in one call: (out (B, H*Co, h', w')
    with the heads interleaved, saliency (B, H, C), kept channel indices (B, H, keep)). x (B, C, h, w)
    (batch-strided); bn_scale/bn_shift (C) its BN-ReLU pre-activation (`bn_affine`), or None for none;
    w1 (H, S, C), w2 (H, C, S), b2 (H, C) the heads' saliency generators; wt (H, C, kh, kw, Co) the
    heads' conv weights, output channel last; zero padding, dilation 1. The same maths as the
    layer's PyTorch forward (dgc/layers/dgc_conv.py), its selection that of `select_topk`."""
    lib = _library()
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
    (sh, sw), (ph, pw) = stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"a {kh}x{kw} kernel with padding {padding} does not fit a {h}x{w} input")
    y = torch.empty((b, c, h * w) if bn_scale is not None else (0,), dtype=torch.float32)
    out = torch.empty((b, heads * co, ho, wo), dtype=torch.float32)
    saliency = torch.empty((b, heads, c), dtype=torch.float32)
    idx = torch.empty((b, heads, keep), dtype=torch.int64)
    code = lib.dgc_layer(_ptr(x), _ptr(bn_scale), _ptr(bn_shift), _ptr(w1), _ptr(w2), _ptr(b2), _ptr(wt), _ptr(y),
                         _ptr(out), _ptr(saliency), _ptr(idx), b, c, h, w, x.stride(0) if b else c * h * w,
                         heads, s, co, kh, kw, sh, sw, ph, pw, keep, torch.get_num_threads())
    _raise_on(code, "dgc_layer")
    return out, saliency, idx


def avg_pool2(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling with stride 2 of x (B, C, h, w), as F.avg_pool2d(x, 2)."""
    lib = _library()
    if x.dim() != 4 or x.shape[2] < 2 or x.shape[3] < 2:
        raise ValueError(f"x must be (B, C, h, w) with h, w >= 2, got shape {tuple(x.shape)}")
    x = _check("x", x)
    b, c, h, w = x.shape
    out = torch.empty((b, c, h // 2, w // 2), dtype=torch.float32)
    _raise_on(lib.dgc_avg_pool2(_ptr(x), _ptr(out), b * c, h, w, torch.get_num_threads()), "avg_pool2")
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
