"""Profiles: complete params files under profiles/ (smoke: the offline CPU default, the DenseNet-86
family; smoke-all: the three families offline; paper: the authors' recipe on CIFAR). `use_profile(name)` validates one and copies it onto params.yaml."""

from __future__ import annotations

from pathlib import Path

from dgc.config import ConfigError, load_params
from dgc.io import write_text_atomic

PROFILE_DIR = Path("profiles")


def use_profile(name: str, params_path: str | Path = "params.yaml",
                profile_dir: str | Path = PROFILE_DIR) -> Path:
    source = Path(profile_dir) / f"{name}.yaml"
    if not source.exists():
        raise ConfigError(f"no profile {name!r}: {source} does not exist")
    load_params(source)  # a broken profile never replaces a working params.yaml
    return write_text_atomic(params_path, source.read_text())
