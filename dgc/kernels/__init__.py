"""The DGC layer's fused kernels: the 1x1 conv with the channel gather inside the GEMM, as Triton
kernels (`fused_triton.py`, differentiable; CUDA, or CPU under TRITON_INTERPRET=1) and as C++ CPU
inference kernels (`cpu.py` / `cpu_kernels.cpp`, with the other CPU kernels of the models: BN-ReLU
with the saliency pooling, the top-k selection, grouped convs, 2x2 pooling).

Importing this package imports neither triton nor the C++ library (built on first use); call
`fused_available` before the Triton kernel, `cpu.cpu_kernels_available` before a C++ one."""

from dgc.kernels.fused_triton import BlockSizes, default_block_sizes, fused_1x1, fused_available

__all__ = ["BlockSizes", "default_block_sizes", "fused_1x1", "fused_available"]
