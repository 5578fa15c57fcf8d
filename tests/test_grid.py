"""The ablation grid (dgc.experiments.grid): the points around a params mapping's baseline, which of
them can be built, their FLOPs, and the checks of `--only`, `--seeds` and the profile."""

import copy
from pathlib import Path

import pytest
from dvc_exp import SMOKE, smoke_points

from dgc.config import read_params_yaml
from dgc.experiments import grid

ROOT = Path(__file__).parents[1]
PAPER = read_params_yaml(ROOT / "profiles" / "paper.yaml")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def names(points):
    return [p.name for p in points]


def test_smoke_grid_varies_one_knob_of_the_profile_baseline():
    points = smoke_points()
    assert names(points) == ["abl-baseline", "abl-heads-1", "abl-heads-2", "abl-heads-8", "abl-pruning-0.5",
                             "abl-pruning-0.9", "abl-lambda-0", "abl-lambda-0.0001", "abl-squeeze-4",
                             "abl-squeeze-32", "abl-gc-groups-2", "abl-gc-groups-4", "abl-gc-groups-10"]
    by = {p.name: p for p in points}
    common = {"train.seeds": [0, 1, 2], "pipeline.datasets": ["digits"]}
    assert by["abl-baseline"].overrides == {**common, "pipeline.models": ["densenet86_dgc"]}
    assert by["abl-heads-2"].overrides == {**common, "pipeline.models": ["densenet86_dgc"],
                                           "models.densenet86_dgc.heads": 2}
    assert by["abl-pruning-0.9"].overrides["models.densenet86_dgc.gate_factor"] == 0.1  # not 0.09999...
    assert by["abl-lambda-0"].overrides["train.sparsity_lambda"] == 0.0
    assert by["abl-gc-groups-4"].overrides == {**common, "pipeline.models": ["densenet86_gc"],
                                               "models.densenet86_gc.groups": 4}
    assert by["abl-baseline"].knobs == {"heads": 4, "pruning": 0.75, "lambda": 1e-5, "squeeze": 16}
    assert by["abl-heads-2"].knobs == {"heads": 2, "pruning": 0.75, "lambda": 1e-5, "squeeze": 16}


def test_smoke_grid_lists_what_cannot_be_built_with_the_builders_reason():
    points = {p.name: p for p in smoke_points()}
    not_runnable = {n: p.reason for n, p in points.items() if not p.runnable}
    # growth [4, 8, 16] from 8 channels: the second dense layer's 1x1 conv reads 12 channels
    assert set(not_runnable) == {"abl-heads-8", "abl-gc-groups-10"}
    assert "heads=8 must divide in_channels=12" in not_runnable["abl-heads-8"]
    assert not_runnable["abl-gc-groups-10"].startswith("no group count gives DGC's FLOPs at pruning rate 0.9")
    assert points["abl-heads-8"].flops is None


def test_grid_flops_are_the_built_models_and_static_gc_is_near_dgc():
    from dgc.measure.flops import count_flops
    from dgc.models import create_model

    points = {p.name: p for p in grid.grid_points(SMOKE, "smoke", only=["baseline", "static_gc"])}
    size = {k: SMOKE["models"]["densenet86_dgc"][k] for k in ("growth", "depth")}  # the smoke width
    side = SMOKE["data"]["digits_size"]  # the profile's input size
    gc4 = create_model("densenet86_gc", 10, **size, groups=4)
    assert points["abl-gc-groups-4"].flops == count_flops(gc4, (3, side, side))["flops_expected"]
    dgc = create_model("densenet86_dgc", 10, **size)
    assert points["abl-baseline"].flops == count_flops(dgc, (3, side, side))["flops_expected"]
    # equal 1x1-conv cost: the totals differ by DGC's gates only (a few percent)
    assert abs(points["abl-gc-groups-4"].flops / points["abl-baseline"].flops - 1) < 0.1


def test_paper_grid_builds_the_full_width_models():
    points = {p.name: p for p in grid.grid_points(PAPER, "paper", seeds=[0])}
    assert {n for n, p in points.items() if not p.runnable} == {"abl-gc-groups-10"}  # 8 heads divide 16, 24...
    assert points["abl-heads-8"].overrides["pipeline.datasets"] == ["cifar10"]
    assert points["abl-baseline"].flops == 71_037_118  # the paper's DenseNet-86 DGC count (test_cli)
    assert "in_channels=16" in points["abl-gc-groups-10"].reason


def test_the_baseline_value_of_a_knob_is_no_separate_point():
    params = copy.deepcopy(SMOKE)
    params["models"]["densenet86_dgc"]["heads"] = 2
    params["train"]["sparsity_lambda"] = 0.0001
    got = names(grid.grid_points(params, "smoke", only=["heads", "lambda"]))
    assert got == ["abl-heads-1", "abl-heads-4", "abl-heads-8", "abl-lambda-0", "abl-lambda-1e-05"]


def test_only_and_seeds_are_checked():
    assert names(grid.grid_points(SMOKE, "smoke", only=["baseline", "heads-2"])) == ["abl-baseline",
                                                                                    "abl-heads-2"]
    with pytest.raises(ValueError, match="no grid point or axis 'heads-3'"):
        grid.grid_points(SMOKE, "smoke", only=["heads-3"])
    with pytest.raises(ValueError, match="unknown grid 'tiny'"):
        grid.grid_points(SMOKE, "tiny")
    assert grid.parse_seeds("0, 1,2") == (0, 1, 2)
    for bad in ("0,0", "", "a"):
        with pytest.raises(ValueError, match="seeds"):
            grid.parse_seeds(bad)
    with pytest.raises(ValueError, match="run `dgc use-profile paper` first"):
        grid.check_profile(SMOKE, "paper")


def test_a_queued_point_is_described_by_its_knob_value_and_model():
    by = {p.name: p for p in smoke_points()}
    assert grid.describe(by["abl-heads-2"]) == "heads = 2 (densenet86_dgc)"
    assert grid.describe(by["abl-baseline"]) == "baseline (densenet86_dgc)"
    assert grid.describe(by["abl-gc-groups-4"]) == ("static group conv at DGC's FLOPs (pruning rate; groups = 1/g)"
                                                    " = 0.75 (densenet86_gc)")
