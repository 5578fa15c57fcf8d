"""The offline default dataset: scikit-learn's 1,797 8x8 digits (no download), as a CIFAR-format set:
upscaled bilinearly to `data.digits_size`, copied to 3 channels, split with a fixed seed (stratified) and
written as pickled CIFAR batches (the size in the meta file), so CIFAR-10's loader reads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dgc.data.cifar_format import LAYOUTS, write_batch, write_meta
from dgc.io import atomic_dir


def build_digits(target: Path, test_fraction: float = 0.2, seed: int = 0, size: int = 32) -> Path:
    """Write the digits set at `size` x `size` under `target` (all or nothing); returns `target`."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    small = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8) in [0, 1]
    big = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)  # (N, 1, S, S)
    images = (big.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).numpy().copy()  # (N, 3, S, S)
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=test_fraction,
                                           random_state=seed, stratify=labels)
    layout = LAYOUTS["digits"]
    with atomic_dir(target) as staging:
        folder = staging / layout.folder
        train = images[idx_train].astype(np.float64) / 255.0
        write_batch(folder / layout.train[0], images[idx_train], labels[idx_train])
        write_batch(folder / layout.test[0], images[idx_test], labels[idx_test])
        write_meta(folder / layout.meta, label_names=[str(d) for d in range(10)],
                   num_cases_per_batch=len(idx_train),
                   mean=[float(v) for v in train.mean(axis=(0, 2, 3))],
                   std=[float(v) for v in train.std(axis=(0, 2, 3))], image_size=size)
    return target
