"""A dataset's batches as params.yaml asks for them: CIFAR and digits (tensors on the device) or ImageNet
(a DataLoader), for training (sharded over torchrun processes) or evaluation alone."""

from __future__ import annotations

from pathlib import Path

import torch

from dgc.config import Params


def make_batches(dataset: str, params: Params, device: torch.device, rank: int, world: int,
                 channels_last: bool, seed: int):
    """(training batches, test batches) of one process of `world`."""
    cfg = params.train
    if dataset == "imagenet":
        from dgc.data.imagenet import DeviceLoader, imagenet_loaders

        train, test, sampler = imagenet_loaders(params.data.imagenet_path, cfg.batch_size // world,
                                                cfg.eval_batch_size, cfg.workers, world > 1)
        return (DeviceLoader(train, device, sampler, cfg.max_batches, channels_last),
                DeviceLoader(test, device, None, None, channels_last))
    from dgc.data import cifar_batches

    return cifar_batches(Path(params.data.root) / dataset, dataset, cfg.batch_size, cfg.eval_batch_size, device,
                         seed, rank, world, cfg.max_batches, channels_last)


def make_test_batches(dataset: str, params: Params, device: torch.device):
    """The evaluation set alone (no training data loaded), single process."""
    if dataset == "imagenet":  # the DataLoaders read nothing until iterated
        return make_batches(dataset, params, device, 0, 1, False, 0)[1]
    from dgc.data.loader import split_batches

    return split_batches(Path(params.data.root) / dataset, dataset, "test", params.train.eval_batch_size, device)
