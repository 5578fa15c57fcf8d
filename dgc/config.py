"""Typed configuration: one frozen dataclass per params.yaml section; `from_section` rejects an unknown or
missing key or a wrongly typed value with a ConfigError naming `section.key`, before any work starts."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from dgc.errors import DGCError
from dgc.model_names import list_models, model_arguments

PROFILES = ("smoke", "smoke-all", "paper", "custom")
DATASETS = ("digits", "cifar10", "cifar100", "imagenet")
NUM_CLASSES = {"digits": 10, "cifar10": 10, "cifar100": 100, "imagenet": 1000}
COMPILE_MODES = ("auto", "off", "default", "reduce-overhead", "max-autotune")  # dgc/runtime/compile.py
RUNTIMES = ("eager", "compiled", "onnxruntime")  # evaluate.runtimes: dgc/measure/runtimes.py


def input_size_of(dataset: str, digits_size: int = 32) -> tuple[int, int, int]:
    """(C, H, W) of a dataset's images: 224 for ImageNet, 32 for CIFAR, `data.digits_size` for digits."""
    side = {"imagenet": 224, "digits": digits_size}.get(dataset, 32)
    return (3, side, side)


class ConfigError(DGCError, ValueError):
    """A bad setting; the message names the key."""


# A scalar setting's type: the Python types its value may have (true/false is never a number), in words.
_SCALARS = {float: ((int, float), "a number"), int: (int, "an integer"), bool: (bool, "true or false"),
            str: (str, "a string")}


def _check_type(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):  # every union here is `X | None`
        return None if value is None else _check_type(value, next(a for a in args if a is not type(None)), key)
    if origin in (list, tuple):  # tuple[X, ...]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return tuple(_check_type(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if annotation in _SCALARS:
        allowed, words = _SCALARS[annotation]
        if not isinstance(value, allowed) or (isinstance(value, bool) and annotation is not bool):
            raise ConfigError(f"{key} must be {words}, got {value!r}")
        return annotation(value)
    return value


def from_section(cls: type, mapping: Mapping[str, Any] | None, section: str):
    """Build dataclass `cls` from `mapping`, naming `section.key` in every error."""
    if mapping is not None and not isinstance(mapping, Mapping):
        raise ConfigError(f"{section} must be a mapping of settings, got {mapping!r}")
    mapping = dict(mapping or {})
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(mapping) - set(hints))
    if unknown:
        raise ConfigError(f"unknown setting {section}.{unknown[0]}; valid: {', '.join(sorted(hints))}")
    # every setting has a default: only the given ones are checked
    obj = cls(**{key: _check_type(value, hints[key], f"{section}.{key}") for key, value in mapping.items()})
    obj.validate(section)  # every section class has one
    return obj


@dataclass(frozen=True)
class PipelineConfig:
    """params.yaml `pipeline`: which datasets and models `dvc repro` runs (every pair of them)."""

    datasets: tuple[str, ...] = ("digits",)
    models: tuple[str, ...] = ("densenet86_dgc", "densenet86", "densenet86_gc",
                               "resnet18_dgc", "resnet18", "resnet18_gc")

    def validate(self, section: str = "pipeline") -> None:
        for name in self.datasets:
            check_dataset(name, f"{section}.datasets")
        for name in self.models:
            check_model(name, f" in {section}.models")


@dataclass(frozen=True)
class DataConfig:
    """params.yaml `data`: where datasets live and how the digits set is split."""

    root: str = "data"
    imagenet_path: str | None = None  # an ImageFolder tree with train/ and val/
    digits_test_fraction: float = 0.2
    digits_size: int = 32  # side of the stored digits images (the 8x8 originals upscaled)
    seed: int = 0

    def validate(self, section: str = "data") -> None:
        if not 8 <= self.digits_size <= 32:
            raise ConfigError(f"{section}.digits_size must be between 8 and 32, got {self.digits_size}")
        if not 0.0 < self.digits_test_fraction < 1.0:
            raise ConfigError(f"{section}.digits_test_fraction must be in (0, 1), "
                              f"got {self.digits_test_fraction}")


@dataclass(frozen=True)
class TrainConfig:
    """params.yaml `train`: the optimisation recipe (defaults = the authors' CIFAR recipe)."""

    epochs: int = 300
    batch_size: int = 64  # global batch: split over the processes of a multi-GPU run
    lr: float = 0.1  # for the global batch
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    sparsity_lambda: float = 1e-5  # weight of the DGC sparsity term; 0 disables it
    angle_lambda: float = 1e-3  # DGC-G only: weight of the heads' angle-enlargement term; 0 disables it
    global_window: int = 10  # DGC-G only: the last iterations of each epoch whose saliencies set T
    seeds: tuple[int, ...] = (0,)  # one run per seed: runs/<dataset>-<model>/seed<k>/
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    channels_last: str = "auto"  # auto (on CUDA) | true | false
    workers: int = 4  # DataLoader workers (ImageNet only; CIFAR-sized sets live on the device)
    max_batches: int | None = None  # cap on batches per epoch (smoke tests)
    eval_batch_size: int = 256
    wandb: str = "offline"  # offline | online | disabled (WANDB_MODE overrides)
    wandb_project: str = "dgc"
    threads: int | None = None  # CPU threads for torch (None: torch's default)
    compile: str = "auto"  # torch.compile: auto (on for CUDA) | off | default | reduce-overhead | max-autotune

    def validate(self, section: str = "train") -> None:
        for key in ("epochs", "batch_size", "eval_batch_size", "lr", "global_window"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{section}.{key} must be positive, got {getattr(self, key)}")
        for key in ("sparsity_lambda", "angle_lambda"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{section}.{key} must be >= 0, got {getattr(self, key)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"{section}.seeds must be a non-empty list of distinct integers")
        if self.max_batches is not None and self.max_batches < 1:
            raise ConfigError(f"{section}.max_batches must be positive or null, got {self.max_batches}")
        if self.wandb not in ("offline", "online", "disabled"):
            raise ConfigError(f"{section}.wandb must be offline, online or disabled, got {self.wandb!r}")
        if self.channels_last not in ("auto", "true", "false"):
            raise ConfigError(f"{section}.channels_last must be auto, true or false")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"{section}.device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        check_compile(self.compile, f"{section}.compile")


@dataclass(frozen=True)
class EvalConfig:
    """params.yaml `evaluate`: latency measurement."""

    latency_batch_sizes: tuple[int, ...] = (1, 64)
    latency_repeats: int = 10
    device: str = "auto"
    compile: str = "auto"  # the compiled runtime's mode; a mode (or auto, on CUDA) also times it
    runtimes: tuple[str, ...] = ("eager", "onnxruntime")  # the runtimes the latency is timed in (RUNTIMES)

    def validate(self, section: str = "evaluate") -> None:
        if self.latency_repeats < 1 or any(b < 1 for b in self.latency_batch_sizes):
            raise ConfigError(f"{section}.latency_repeats and latency_batch_sizes must be positive")
        check_compile(self.compile, f"{section}.compile")
        if not self.runtimes or len(set(self.runtimes)) != len(self.runtimes):
            raise ConfigError(f"{section}.runtimes must be a non-empty list of distinct runtimes")
        for runtime in self.runtimes:
            if runtime not in RUNTIMES:
                raise ConfigError(f"{section}.runtimes: unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")


@dataclass(frozen=True)
class SlurmConfig:
    """params.yaml `slurm`: the jobs of `dgc train-all --launcher slurm`, each setting a flag (--time-limit)."""

    partition: str | None = None  # None: the cluster's default partition
    account: str | None = None
    gpus_per_job: int = 1
    cpus_per_job: int = 4
    mem_gb: float | None = None  # None: the partition's default
    time_limit: int = 1440  # minutes per job; a run that needs longer is requeued from its checkpoint
    max_timeouts: int = 20  # requeues after a time-out before the run is reported as failed
    max_jobs: int | None = None  # jobs submitted at once (None: every run); more follow as they end
    setup: tuple[str, ...] = ()  # shell lines each job runs first, e.g. "module load cuda"
    sbatch: dict = field(default_factory=dict)  # more sbatch options, e.g. {qos: high, constraint: h100}

    def validate(self, section: str = "slurm") -> None:
        def name(key: str) -> str:
            return f"{section}.{key} (--{key.replace('_', '-')})"

        for key in ("partition", "account"):
            value = getattr(self, key)
            if value is not None and (not value.strip() or any(c.isspace() for c in value)):
                raise ConfigError(f"{name(key)} must be a name without spaces, got {value!r}")
        # (setting, the bound it must exceed, the rule in words; all but mem_gb are integers); null passes
        for key, bound, rule in (("gpus_per_job", -1, ">= 0"), ("cpus_per_job", 0, "at least 1"),
                                 ("mem_gb", 0, "positive or null"), ("time_limit", 0, "at least 1 minute"),
                                 ("max_timeouts", -1, ">= 0"), ("max_jobs", 0, "at least 1 or null")):
            value = getattr(self, key)
            if value is not None and value <= bound:
                raise ConfigError(f"{name(key)} must be {rule}, got {value}")
        for key, value in self.sbatch.items():
            if not isinstance(key, str) or not key or key.startswith("-") or isinstance(value, (dict, list)):
                raise ConfigError(f"{section}.sbatch (--sbatch) must map sbatch option names, without "
                                  f"dashes, to single values, got {key!r}: {value!r}")


def check_compile(setting: str, key: str) -> None:
    if setting not in COMPILE_MODES:
        raise ConfigError(f"{key} must be one of {', '.join(COMPILE_MODES)}, got {setting!r}")


def check_model(name: str, where: str = "") -> None:
    if name not in list_models():
        raise ConfigError(f"unknown model {name!r}{where}; choose one of: {', '.join(list_models())}")


def check_dataset(name: str, key: str = "dataset") -> None:
    if name not in DATASETS:
        raise ConfigError(f"unknown {key} {name!r}; choose one of: {', '.join(DATASETS)}")


@dataclass(frozen=True)
class Params:
    """The whole params.yaml."""

    profile: str = "smoke"
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    models: dict = field(default_factory=dict)  # model name -> create_model overrides

    def model_overrides(self, name: str) -> dict:
        check_model(name)
        overrides = self.models.get(name) or {}
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"models.{name} must be a mapping of settings, got {overrides!r}")
        allowed = model_arguments(name)
        for key in overrides:
            if key not in allowed:
                raise ConfigError(f"unknown setting models.{name}.{key}; valid: {', '.join(allowed)}")
        return dict(overrides)


SECTIONS = {"pipeline": PipelineConfig, "data": DataConfig, "train": TrainConfig,
            "evaluate": EvalConfig, "slurm": SlurmConfig}


def load_params(path: str | Path = "params.yaml",
                overrides: Mapping[str, Any] | None = None) -> Params:
    """Read and validate params.yaml (+ dotted `overrides`); a missing file gives the defaults."""
    raw = read_params_yaml(path)
    for dotted, value in (overrides or {}).items():
        apply_override(raw, dotted, value)
    known = set(SECTIONS) | {"profile", "models"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown params section {unknown[0]!r}; valid: {', '.join(sorted(known))}")
    sections = {name: from_section(cls, raw.get(name), name) for name, cls in SECTIONS.items()}
    models = raw.get("models") or {}
    if not isinstance(models, Mapping):
        raise ConfigError("models must be a mapping of model name -> settings")
    params = Params(profile=str(raw.get("profile", "smoke")), models=dict(models), **sections)
    for name in params.models:
        params.model_overrides(name)
    if params.profile not in PROFILES:
        raise ConfigError(f"profile must be one of {', '.join(PROFILES)}, got {params.profile!r}")
    return params


def apply_override(raw: dict, dotted: str, value: Any) -> None:
    """Set `a.b.c = value` in the nested mapping `raw` (in place)."""
    keys = dotted.split(".")
    node = raw
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted}: {key} is not a section")
        node = child
    node[keys[-1]] = value


class _ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads YAML 1.2 floats without a dot, `1e-05` (as `dvc exp run -S`
    writes them; YAML 1.1 reads the string '1e-05')."""


_ParamsLoader.add_implicit_resolver("tag:yaml.org,2002:float",
                                    re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                                    list("-+0123456789"))


def read_params_yaml(path: str | Path = "params.yaml") -> dict:
    """The raw mapping of a params file ({} when it does not exist), before validation."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        raw = yaml.load(path.read_text(), Loader=_ParamsLoader) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections")
    return raw


def with_overrides(params: Params, section: str, **changes: Any) -> Params:
    """A copy of `params` with `section`'s fields changed (validated)."""
    current = {**dataclasses.asdict(getattr(params, section)), **changes}
    return dataclasses.replace(params, **{section: from_section(SECTIONS[section], current, section)})
