"""The `data` stage: one dataset made ready under `data.root` as params.yaml's `data:` section says
(the datasets themselves are dgc/data/)."""

from __future__ import annotations

from pathlib import Path

from dgc.config import Params, check_dataset
from dgc.data import prepare_dataset


def prepare(dataset: str, params: Params, raw_dir: str | Path | None = None, download: bool = True) -> Path:
    """data/<dataset>/ as params.data says (digits: test fraction, seed, image size); returns it."""
    check_dataset(dataset)
    cfg = params.data
    return prepare_dataset(dataset, cfg.root, raw_dir, cfg.imagenet_path, cfg.digits_test_fraction, cfg.seed,
                           download=download, digits_size=cfg.digits_size)
