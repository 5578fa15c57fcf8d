"""The CIFAR "python version" on-disk format, shared by cifar10, cifar100 and the digits set: pickled
batches (b"data": uint8 rows in CHW order, b"labels" or b"fine_labels") and a meta file whose
`image_size` gives S (digits; else 32). `write_batch` writes the format (digits, tests)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dgc.data.archive import DataError
from dgc.io import write_atomic


@dataclass(frozen=True)
class Layout:
    folder: str  # inside data/<dataset>/
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: bytes


LAYOUTS = {
    "cifar10": Layout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                      ("test_batch",), "batches.meta", b"labels"),
    "cifar100": Layout("cifar-100-python", ("train",), ("test",), "meta", b"fine_labels"),
    "digits": Layout("digits-batches-py", ("data_batch_1",), ("test_batch",), "batches.meta",
                     b"labels"),
}


def _unpickle(path: Path) -> dict:
    if not path.exists():
        raise DataError(f"{path} is missing: run `dgc data {path.parent.parent.name}` first")
    try:
        with open(path, "rb") as fh:
            data = pickle.load(fh, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(f"{path} is damaged ({type(exc).__name__}): delete {path.parent.parent} and run "
                        f"`dgc data {path.parent.parent.name}` again") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a batch of the CIFAR format (a {type(data).__name__}, not a dict)")
    return data


def image_size(root: Path, dataset: str) -> int:
    """Side of the stored square images: the meta file's `image_size` (digits), else 32 (CIFAR)."""
    layout = LAYOUTS[dataset]
    if not (Path(root) / layout.folder / layout.meta).exists():
        return 32
    return int(read_meta(root, dataset).get("image_size", 32))


def read_split(root: Path, dataset: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N, 3, S, S), labels int64 (N,)) of `split` ('train' or 'test'); S = image_size."""
    layout = LAYOUTS[dataset]
    folder = Path(root) / layout.folder
    side = image_size(root, dataset)
    images, labels = [], []
    for name in (layout.train if split == "train" else layout.test):
        batch = _unpickle(folder / name)
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, side, side))
        labels.append(np.asarray(batch[layout.label_key], dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def read_meta(root: Path, dataset: str) -> dict:
    meta = _unpickle(Path(root) / LAYOUTS[dataset].folder / LAYOUTS[dataset].meta)
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in meta.items()}


def write_batch(path: Path, images: np.ndarray, labels: np.ndarray, label_key: bytes = b"labels",
                **extra) -> None:
    """Write one pickled batch: images uint8 (N, 3, S, S)."""
    write_meta(path, **{"data": np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1),
                        label_key.decode(): [int(v) for v in labels], **extra})


def write_meta(path: Path, **fields) -> None:
    """Write a pickled dict with bytes keys (a meta file, or a batch)."""
    payload = {k.encode(): v for k, v in fields.items()}
    write_atomic(path, lambda tmp: tmp.write_bytes(pickle.dumps(payload, protocol=4)))
