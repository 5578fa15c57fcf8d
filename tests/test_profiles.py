import subprocess
import sys
from pathlib import Path

import pytest

from dgc.cli import use_profile
from dgc.config import ConfigError, load_params

ROOT = Path(__file__).parents[1]


def test_default_params_are_the_smoke_profile():
    assert (ROOT / "params.yaml").read_text() == (ROOT / "profiles" / "smoke.yaml").read_text()


def test_paper_profile_is_the_authors_recipe():
    params = load_params(ROOT / "profiles" / "paper.yaml")
    assert params.pipeline.datasets == ("cifar10", "cifar100")
    assert (params.train.epochs, params.train.batch_size, params.train.lr) == (300, 64, 0.1)
    assert params.train.sparsity_lambda == 1e-5 and params.train.nesterov
    assert params.model_overrides("densenet86_dgc") == {"heads": 4, "gate_factor": 0.25, "squeeze_rate": 16}


def test_use_profile_switches_params_and_back(tmp_path):
    target = tmp_path / "params.yaml"
    use_profile("paper", target, ROOT / "profiles")
    assert load_params(target).profile == "paper"
    use_profile("smoke", target, ROOT / "profiles")
    assert target.read_text() == (ROOT / "profiles" / "smoke.yaml").read_text()


def test_a_broken_profile_never_replaces_params(tmp_path):
    (tmp_path / "bad.yaml").write_text("train: {epochs: 0}\n")
    target = tmp_path / "params.yaml"
    target.write_text("profile: smoke\n")
    with pytest.raises(ConfigError, match="train.epochs"):
        use_profile("bad", target, tmp_path)
    assert target.read_text() == "profile: smoke\n"


def test_unknown_params_section_is_named(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("trian: {epochs: 3}\n")
    proc = subprocess.run([sys.executable, "-m", "dgc", "train", "digits", "resnet18", "--params", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "trian" in proc.stderr


def test_smoke_all_is_the_default_with_every_family():
    smoke, every = load_params(ROOT / "profiles" / "smoke.yaml"), load_params(ROOT / "profiles" / "smoke-all.yaml")
    assert set(smoke.pipeline.models) < set(every.pipeline.models)
    assert {m.split("_")[0] for m in every.pipeline.models} == {"densenet86", "resnet18", "mobilenetv2"}
    assert (every.train, every.data, every.models) == (smoke.train, smoke.data, smoke.models)


def test_the_default_profile_trains_every_relation_pair_with_seeds():
    from dgc.measure.claims import load_claims

    params = load_params(ROOT / "profiles" / "smoke.yaml")
    assert len(params.train.seeds) >= 3 and params.data.digits_size == 16
    models = set(params.pipeline.models)
    pairs = {(c.model, c.versus) for c in load_claims(ROOT / "claims" / "paper.yaml") if c.kind == "relation"}
    assert {p for p in pairs if set(p) <= models} == {("densenet86_dgc", "densenet86"),
                                                      ("densenet86_dgc", "densenet86_gc"),
                                                      ("densenet86_dgcg", "densenet86_dgc")}
