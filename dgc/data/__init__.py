"""Datasets: preparation (`prepare_dataset`, the `data` stage) and loading (`cifar_batches`)."""

from __future__ import annotations

from pathlib import Path

from dgc.data.archive import DataError, check_md5, safe_extract
from dgc.data.cifar import ARCHIVES, fetch_archive, prepare_cifar
from dgc.data.cifar_format import LAYOUTS, image_size, read_meta, read_split
from dgc.data.digits import build_digits
from dgc.data.imagenet import check_imagenet, imagenet_loaders
from dgc.data.loader import DeviceBatches, cifar_batches, normalization, random_crop_flip
from dgc.io import write_json_atomic


def prepare_dataset(dataset: str, root: str | Path = "data", raw_dir: str | Path | None = None,
                    imagenet_path: str | None = None, digits_test_fraction: float = 0.2,
                    seed: int = 0, download: bool = True, digits_size: int = 32) -> Path:
    """Make `dataset` ready under `root`/<dataset> (the `data` stage); returns that folder."""
    root = Path(root)
    target = root / dataset
    if dataset == "digits":
        return build_digits(target, digits_test_fraction, seed, digits_size)
    if dataset in ARCHIVES:
        return prepare_cifar(dataset, target, Path(raw_dir) if raw_dir else root / "raw", download)
    if dataset == "imagenet":
        source = check_imagenet(imagenet_path)
        classes = sorted(p.name for p in (source / "train").iterdir() if p.is_dir())
        write_json_atomic(target / "source.json", {"path": str(source), "classes": len(classes)})
        return target
    raise DataError(f"unknown dataset {dataset!r}")


__all__ = [
    "ARCHIVES", "DataError", "DeviceBatches", "LAYOUTS", "build_digits", "check_imagenet", "check_md5",
    "cifar_batches", "image_size", "fetch_archive", "imagenet_loaders", "normalization", "prepare_cifar",
    "prepare_dataset", "random_crop_flip", "read_meta", "read_split", "safe_extract",
]
