"""Where a training run's files live: runs/<dataset>-<model>/seed<k>/ (train writes, evaluate reads)."""

from __future__ import annotations

from pathlib import Path


def run_dir(runs_root: str | Path, dataset: str, model_name: str, seed: int | None = None) -> Path:
    """runs/<dataset>-<model>, or its seed<k>/ folder where one seed's files live."""
    base = Path(runs_root) / f"{dataset}-{model_name}"
    return base if seed is None else base / f"seed{seed}"
