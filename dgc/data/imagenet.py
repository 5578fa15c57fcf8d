"""ImageNet as an ImageFolder tree (train/, val/) that the user provides; DataLoader workers."""

from __future__ import annotations

from pathlib import Path

import torch

from dgc.data.archive import DataError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def check_imagenet(path: str | None) -> Path:
    if not path:
        raise DataError("data.imagenet_path is not set: point it to a folder with train/ and val/")
    root = Path(path).expanduser()
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataError(f"data.imagenet_path {root} has no {split}/ folder")
    return root


def imagenet_loaders(path: str | None, batch_size: int, eval_batch_size: int, workers: int,
                     distributed: bool = False):
    """(train loader, val loader, train sampler or None): the authors' ImageNet transforms."""
    from torchvision import datasets, transforms

    root = check_imagenet(path)
    normalize = transforms.Normalize(MEAN, STD)
    train = datasets.ImageFolder(root / "train", transforms.Compose([
        transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), normalize]))
    val = datasets.ImageFolder(root / "val", transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), normalize]))
    sampler = torch.utils.data.distributed.DistributedSampler(train) if distributed else None
    train_loader = torch.utils.data.DataLoader(train, batch_size, shuffle=sampler is None,
                                               sampler=sampler, num_workers=workers,
                                               pin_memory=torch.cuda.is_available(), drop_last=True,
                                               persistent_workers=workers > 0)
    val_loader = torch.utils.data.DataLoader(val, eval_batch_size, shuffle=False, num_workers=workers,
                                             pin_memory=torch.cuda.is_available())
    return train_loader, val_loader, sampler


class DeviceLoader:
    """A DataLoader whose batches are moved to `device`, capped at `max_batches`, epoch-aware."""

    def __init__(self, loader, device, sampler=None, max_batches: int | None = None,
                 channels_last: bool = False) -> None:
        self.loader, self.device, self.sampler = loader, device, sampler
        self.max_batches, self.channels_last = max_batches, channels_last

    def set_epoch(self, epoch: int) -> None:
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return min(len(self.loader), self.max_batches or len(self.loader))

    def __iter__(self):
        for i, (x, y) in enumerate(self.loader):
            if i >= len(self):
                break
            x = x.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(self.device, non_blocking=True)
