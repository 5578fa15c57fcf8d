"""The DGC layer's fused kernels: the Triton 1x1 conv with the gather inside the GEMM (`fused_triton.py`) and the
C++ CPU inference kernels (`cpu.py`). A model runs them only where asked (`use_fused_kernel`, `use_cpu_kernels`);
importing this package imports neither, nor triton, nor builds the C++ library."""
