"""Multi-process training under torchrun: process group set-up and collectives (no-ops in one process)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info_from_env() -> DistInfo:
    """This process's place in the torchrun job (a single process outside torchrun); joins nothing."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU)."""
    info = dist_info_from_env()
    if info.enabled and not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return info


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if _joined():
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def _joined() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if _joined():
        dist.barrier()


def shutdown() -> None:
    if _joined():
        dist.destroy_process_group()
