"""The DGC layer's fused kernels: the 1x1 conv with the channel gather inside the GEMM in Triton
(`fused_triton.py`, differentiable; CUDA, or CPU under TRITON_INTERPRET=1), and the C++ CPU inference
kernels (`cpu.py`, `cpu_kernels.cpp`). A model runs them only where asked (`fused_triton.use_fused_kernel`,
`cpu_layers.use_cpu_kernels`); importing this package imports neither, nor triton, nor builds the C++
library: check `fused_triton.fused_available` or `cpu.cpu_kernels_available` first."""
