"""A training run's precision from its device and `train.amp` (docs/design.md, section 7): on CUDA with
amp, bf16 autocast (else fp16 with a gradient scaler), else fp32; CUDA's fp32 uses TF32 for matmuls too
(cuDNN's convs do by default; the 1x1 DGC convs are matmuls). On the CPU: fp32."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    name: str  # recorded in the checkpoints' `runtime`; the report says which ran
    autocast_dtype: torch.dtype | None  # None: no autocast
    tf32: bool  # fp32 matmuls on TF32 tensor cores (CUDA)

    def apply(self) -> None:
        """Set torch's TF32 switch for this process (once, before the run's first step)."""
        if self.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.autocast_dtype)

    def scaler(self) -> torch.amp.GradScaler | None:
        """fp16 needs a gradient scaler; bf16 and fp32 do not."""
        return torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None


def precision_of(device: torch.device, amp: bool) -> Precision:
    if device.type != "cuda":
        return Precision("fp32", None, tf32=False)
    if amp:
        bf16 = torch.cuda.is_bf16_supported()
        return Precision(f"{'bf16' if bf16 else 'fp16'} autocast", torch.bfloat16 if bf16 else torch.float16,
                         tf32=True)
    return Precision("fp32 (TF32 matmuls and convs)", None, tf32=True)
