"""Optional fused kernels (Triton). Importing this package never imports triton; see
`fused_available` before calling a kernel."""

from dgc.kernels.gather_gemm import BlockSizes, default_block_sizes, fused_available, fused_dgc_1x1

__all__ = ["BlockSizes", "default_block_sizes", "fused_available", "fused_dgc_1x1"]
