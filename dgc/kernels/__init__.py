"""The DGC layer's fused kernels: the 1x1 conv with the channel gather inside the GEMM, as Triton
kernels (`fused_triton.py`, differentiable; CUDA, or CPU under TRITON_INTERPRET=1) and as C++ CPU
inference kernels (`cpu.py` / `cpu_kernels.cpp`, with the other CPU kernels of the models: BN-ReLU
with the saliency pooling, the top-k selection, grouped convs, 2x2 pooling). Each becomes an
execution of a model's layers only where code asks for it: `fused_triton.use_fused_kernel(model)`,
`cpu_layers.use_cpu_kernels(model)`; this package's __init__ imports neither (so importing one does
not import the other).

Neither imports triton or builds the C++ library until used; call `fused_triton.fused_available`
before the Triton kernel, `cpu.cpu_kernels_available` before a C++ one."""
