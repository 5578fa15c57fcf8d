"""CIFAR-sized sets as uint8 tensors on the training device, cropped and flipped there in one gather per
batch; shuffling and augmentation are seeded by (seed, epoch), so a resumed epoch is the same."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from dgc.data.cifar_format import read_meta, read_split

# The authors' normalisation constants (docs/design.md, section 7).
NORMALIZATION = {
    "cifar10": ((0.4914, 0.4824, 0.4467), (0.2471, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}


def normalization(root: Path, dataset: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std per channel: the authors' constants for CIFAR, the stored ones for digits."""
    if dataset in NORMALIZATION:
        return NORMALIZATION[dataset]
    meta = read_meta(root, dataset)
    return tuple(meta["mean"]), tuple(meta["std"])


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int | None = None) -> torch.Tensor:
    """Random crop (zero padding `padding`, default H // 8: 4 at 32x32) and flip of a uint8 batch (B, C, H, W)."""
    b, c, h, w = images.shape
    padding = max(1, h // 8) if padding is None else padding
    dev = images.device
    padded = F.pad(images, (padding, padding, padding, padding))  # (B, C, H+2p, W+2p)
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator, device=dev)  # (B, 2)
    flip = torch.rand(b, generator=generator, device=dev) < 0.5  # (B,)
    rows = offsets[:, :1] + torch.arange(h, device=dev)  # (B, H)
    cols = offsets[:, 1:] + torch.arange(w, device=dev)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    bi = torch.arange(b, device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)


class DeviceBatches:
    """Batches of (normalised float images, labels) from uint8 tensors that live on the device."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 mean: tuple[float, ...], std: tuple[float, ...], train: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1, max_batches: int | None = None,
                 channels_last: bool = False) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.rank, self.world_size = rank, world_size
        self.max_batches, self.channels_last = max_batches, channels_last
        dev = images.device
        self.mean = torch.tensor(mean, device=dev).view(1, -1, 1, 1) * 255.0
        self.std = torch.tensor(std, device=dev).view(1, -1, 1, 1) * 255.0
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.labels)
        # Training drops the last incomplete global batch (the authors' DataLoader does not): stable BN under DDP.
        batches = max(n // self.batch_size if self.train else -(-n // self.batch_size), 1)
        return min(batches, self.max_batches) if self.max_batches else batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, dev = len(self.labels), self.images.device
        generator = torch.Generator(device=dev)
        generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=generator, device=dev) if self.train else torch.arange(n, device=dev)
        for i in range(len(self)):
            batch = order[i * self.batch_size:(i + 1) * self.batch_size]
            idx = batch[self.rank::self.world_size]  # this process's slice
            x = self.images[idx]  # (b, 3, H, W) uint8
            if self.train:
                x = random_crop_flip(x, generator)
            x = (x.float() - self.mean) / self.std
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]


def cifar_batches(root: Path, dataset: str, batch_size: int, eval_batch_size: int,
                  device: torch.device, seed: int = 0, rank: int = 0, world_size: int = 1,
                  max_batches: int | None = None, channels_last: bool = False,
                  ) -> tuple[DeviceBatches, DeviceBatches]:
    """(train batches, test batches) of a CIFAR-format dataset under `root`, on `device`."""
    shard = {"rank": rank, "world_size": world_size, "channels_last": channels_last}
    return (split_batches(root, dataset, "train", batch_size, device, seed=seed, max_batches=max_batches, **shard),
            split_batches(root, dataset, "test", eval_batch_size, device, **shard))


def split_batches(root: Path, dataset: str, split: str, batch_size: int, device: torch.device,
                  **options) -> DeviceBatches:
    """One split on `device`: 'train' shuffled and augmented, 'test' in order; `options` as DeviceBatches'."""
    images, labels = read_split(root, dataset, split)
    return DeviceBatches(images.to(device), labels.to(device), batch_size, *normalization(root, dataset),
                         split == "train", **options)
