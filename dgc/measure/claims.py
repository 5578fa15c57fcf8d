"""The paper's claims and our metrics as data: claims/paper.yaml (`claims:`, and the earlier reproductions of
`references:`) and reports/metrics/<dataset>-<model>.json, with the accessors the stages and commands share.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from dgc.config import ConfigError, check_dataset
from dgc.errors import MissingInput
from dgc.measure.verdict import Sample

KINDS = ("accuracy", "architecture", "relation", "unverified")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper (`claims:` of the claims file)."""

    id: str
    claim: int
    kind: str
    dataset: str
    model: str
    metric: str
    unit: str
    tolerance: float
    source: str
    value: float | None = None  # the paper's number (None for a relation claim)
    versus: str | None = None  # relation claims: the baseline model
    statement: str = ""


def _read_claims_file(path: str | Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise MissingInput(f"claims file {path} does not exist")
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping with a `claims` list")
    return raw


def _record(cls: type, entry: dict[str, Any], where: str):
    """`cls(**entry)` (Claim or Reference); a ConfigError naming `where` for a bad key or dataset."""
    unknown = sorted(set(entry) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"{where} has unknown key {unknown[0]!r}")
    try:
        record = cls(**entry)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    check_dataset(record.dataset, f"{where} dataset")
    return record


def load_claims(path: str | Path = "claims/paper.yaml") -> list[Claim]:
    claims = []
    for i, entry in enumerate(_read_claims_file(path).get("claims", [])):
        claim = _record(Claim, entry, f"{path}: claim {entry.get('id', i)}")
        where = f"{path}: claim {claim.id}"
        if claim.kind not in KINDS:
            raise ConfigError(f"{where}: kind must be one of {', '.join(KINDS)}")
        if (claim.kind == "relation") != (claim.versus is not None) or \
                (claim.kind in ("accuracy", "architecture")) != (claim.value is not None):
            raise ConfigError(f"{where}: a relation claim needs `versus`, an unverified claim no "
                              f"`value`, the others a `value`")
        claims.append(claim)
    if len({c.id for c in claims}) != len(claims):
        raise ConfigError(f"{path}: claim ids must be unique")
    return claims


@dataclass(frozen=True)
class Reference:
    """A number of an earlier reproduction (`references:` of the claims file): shown, never a claim."""

    reference: str  # its name, also the git tag `dgc paper-ref` makes for it
    dataset: str
    model: str
    metric: str
    value: float
    unit: str
    source: str
    approximate: bool = False


def load_references(path: str | Path = "claims/paper.yaml") -> list[Reference]:
    out = []
    for i, entry in enumerate(_read_claims_file(path).get("references") or []):
        where = f"{path}: reference {i}"
        ref = _record(Reference, entry, where)
        if not ref.reference.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{where}: reference {ref.reference!r} must be letters, digits, - or _ (a git tag)")
        out.append(ref)
    return out


def metric_value(metrics: dict[str, Any], dotted: str) -> float | None:
    """The number at `dotted` ("best.top1_err") of a metrics dict, or None."""
    node: Any = metrics
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, (int, float)) else None


def spread_of(metrics: dict[str, Any], dotted: str) -> float | None:
    """Standard deviation over seeds of `best.x` / `final.x` when several seeds ran."""
    head, _, rest = dotted.partition(".")
    return metric_value(metrics, f"{head}_std.{rest}") if rest else None


def sample_of(metrics: dict[str, Any], dotted: str) -> Sample | None:
    """Mean, spread and number of seeds of one metric of a run (spread 0 and n 1 for one seed)."""
    mean = metric_value(metrics, dotted)
    if mean is None:
        return None
    n = int(metrics.get("seeds", 1))
    return Sample(mean, (spread_of(metrics, dotted) or 0.0) if n > 1 else 0.0, n)


def load_metrics(metrics_dir: str | Path) -> dict[tuple[str, str], dict[str, Any]]:
    """{(dataset, model): metrics} from reports/metrics/<dataset>-<model>.json."""
    return {p.stem.partition("-")[::2]: json.loads(p.read_text()) for p in sorted(Path(metrics_dir).glob("*.json"))}
