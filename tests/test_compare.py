import json
from pathlib import Path

import pytest
import yaml

from dgc.config import ConfigError
from dgc.measure.claims import load_claims, load_references
from dgc.stages.compare import compare, to_markdown

CLAIMS = Path(__file__).parents[1] / "claims" / "paper.yaml"


def write_metrics(folder: Path, run: str, top1_err: float, recipe=1, arch=1, seeds=1, std=None, **extra):
    data = {"best": {"top1_err": top1_err, "top1_acc": 100 - top1_err, "top5_err": 1.0},
            "recipe_matches_paper": recipe, "architecture_matches_paper": arch, "seeds": seeds,
            "flops_expected": 71_037_118, "flops_dense": 182_513_854, "params": 4_264_810, **extra}
    if std is not None:
        data["best_std"] = {"top1_err": std}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{run}.json").write_text(json.dumps(data))


def rows_by_id(result):
    return {r["id"]: r for r in result["claims"]}


def test_claims_file_holds_the_papers_numbers():
    claims = {c.id: c for c in load_claims(CLAIMS)}
    assert claims["c10-dgc-err"].value == 4.77 and claims["c100-dgc-err"].value == 23.41
    assert claims["in-resnet18-flops"].value == 890_396_782
    assert all(c.source for c in claims.values())


def test_verdicts_on_hand_made_metrics(tmp_path):
    m = tmp_path / "metrics"
    write_metrics(m, "cifar10-densenet86_dgc", 4.90, seeds=3, std=0.12)        # within 0.5 of 4.77
    write_metrics(m, "cifar100-densenet86_dgc", 26.0)                          # 2.6 off 23.41
    write_metrics(m, "cifar10-densenet86", 4.70, seeds=3, std=0.10)
    write_metrics(m, "cifar10-densenet86_gc", 5.50, recipe=0)                  # shortened run
    result = compare(load_claims(CLAIMS), m)
    rows = rows_by_id(result)
    assert rows["c10-dgc-err"]["verdict"] == "reproduced"
    assert rows["c10-dgc-err"]["delta"] == pytest.approx(0.13)
    assert rows["c10-dgc-err"]["spread"] == 0.12 and rows["c10-dgc-err"]["seeds"] == 3
    assert rows["c100-dgc-err"]["verdict"] == "not reproduced"
    assert rows["in-resnet18-err"]["verdict"] == "not run"
    # margin 0.5 - 0.2 = 0.3 > 2 s.e. = 2 sqrt(0.12^2/3 + 0.10^2/3) = 0.18
    assert rows["c10-dgc-vs-dense"]["verdict"] == "reproduced"
    assert rows["c10-dgc-vs-dense"]["standard_error"] == pytest.approx(0.0902, abs=1e-4)
    assert rows["c10-dgc-vs-gc"]["verdict"] == "not comparable"
    assert rows["c10-dgc-flops"]["verdict"] == "reproduced"
    assert result["summary"]["not run"] >= 1


def test_a_smoke_run_is_never_compared_with_a_cifar_number(tmp_path):
    m = tmp_path / "metrics"
    write_metrics(m, "digits-densenet86_dgc", 4.77, recipe=0, arch=0)
    result = compare(load_claims(CLAIMS), m)
    assert {r["verdict"] for r in result["claims"] if r["kind"] != "unverified"} == {"not run"}
    assert [r["dataset"] for r in result["other_runs"]] == ["digits"]
    assert "never compared" in to_markdown(result)


def test_a_narrowed_architecture_is_not_comparable_even_for_flops(tmp_path):
    m = tmp_path / "metrics"
    write_metrics(m, "cifar10-densenet86_dgc", 4.77, recipe=0, arch=0)
    rows = rows_by_id(compare(load_claims(CLAIMS), m))
    assert rows["c10-dgc-flops"]["verdict"] == "not comparable"
    assert rows["c10-dgc-err"]["verdict"] == "not comparable"


def test_relation_claim_not_reproduced_when_the_group_conv_wins_beyond_the_spread(tmp_path):
    m = tmp_path / "metrics"
    write_metrics(m, "cifar10-densenet86_dgc", 5.2, seeds=3, std=0.05)
    write_metrics(m, "cifar10-densenet86_gc", 5.0, seeds=3, std=0.05)
    assert rows_by_id(compare(load_claims(CLAIMS), m))["c10-dgc-vs-gc"]["verdict"] == "not reproduced"


@pytest.mark.parametrize("seeds, std, verdict", [
    (1, None, "inconclusive"),   # one seed: no spread, no verdict whatever the means
    (3, 0.5, "inconclusive"),    # -0.2 is inside 2 s.e. (0.82)
    (3, 0.05, "not reproduced"),
])
def test_relation_verdict_needs_the_difference_to_clear_the_spread(tmp_path, seeds, std, verdict):
    m = tmp_path / "metrics"
    write_metrics(m, "cifar10-densenet86_dgc", 5.2, seeds=seeds, std=std)
    write_metrics(m, "cifar10-densenet86_gc", 5.0, seeds=seeds, std=std)
    row = rows_by_id(compare(load_claims(CLAIMS), m))["c10-dgc-vs-gc"]
    assert row["verdict"] == verdict and row["delta"] == pytest.approx(0.2)


def test_the_earlier_reproduction_is_shown_beside_the_paper(tmp_path):
    refs = load_references(CLAIMS)
    by_key = {(r.dataset, r.metric): r for r in refs}
    assert by_key[("cifar10", "best.top1_err")].value == pytest.approx(100 - 95.13)
    assert by_key[("cifar100", "best.top1_err")].value == pytest.approx(100 - 76.15)
    assert by_key[("cifar100", "best.top5_err")].value == pytest.approx(100 - 93.5)
    assert all(r.reference == "mlrc2020" and "MLRC 2020" in r.source for r in refs)
    m = tmp_path / "metrics"
    write_metrics(m, "cifar10-densenet86_dgc", 4.9)
    write_metrics(m, "digits-densenet86_dgc", 4.0, recipe=0, arch=0)
    result = compare(load_claims(CLAIMS), m, references=refs)
    assert rows_by_id(result)["c10-dgc-err"]["earlier"] == pytest.approx(4.87)
    assert rows_by_id(result)["c10-dgc-flops"]["earlier"] is None
    c10 = next(r for r in result["references"] if r["dataset"] == "cifar10" and r["metric"] == "best.top1_err")
    assert (c10["paper"], c10["earlier"], c10["ours"]) == (4.77, pytest.approx(4.87), 4.9)
    md = to_markdown(result)
    assert "| mlrc2020 | cifar10 | densenet86_dgc | best.top1_err | 4.77 | 4.87 | 4.90 |" in md
    assert "≈ 6.50" in md


def test_a_reference_with_an_unknown_key_is_refused(tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text("claims: []\nreferences:\n  - {reference: x, dataset: cifar10, model: m, metric: a, "
                    "value: 1, unit: '%', source: s, colour: red}\n")
    with pytest.raises(ConfigError, match="colour"):
        load_references(path)


def test_markdown_table_lists_every_claim(tmp_path):
    result = compare(load_claims(CLAIMS), tmp_path)
    md = to_markdown(result)
    assert md.count("| not run |") + md.count("| not verified |") == len(result["claims"])
    assert md.count("| not verified |") == sum(c.kind == "unverified" for c in load_claims(CLAIMS))


def test_bad_claims_file_names_the_problem(tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"claims": [{"id": "x", "claim": 1, "kind": "accuracy",
                                                "dataset": "svhn", "model": "m", "metric": "best.top1_err",
                                                "unit": "%", "tolerance": 1, "source": "s", "value": 1}]}))
    with pytest.raises(ConfigError, match="svhn"):
        load_claims(path)


def test_architecture_claims_are_judged_from_the_counter_without_training(tmp_path):
    from dgc.stages.architecture import count_architectures

    claims = load_claims(CLAIMS)
    arch = tmp_path / "architecture.json"
    arch.write_text(json.dumps(count_architectures(claims)))
    rows = rows_by_id(compare(claims, tmp_path / "none", arch))
    architecture = [r for r in rows.values() if r["kind"] == "architecture"]
    assert len(architecture) == 10 and {r["verdict"] for r in architecture} == {"reproduced"}
    assert rows["c10-dgc-err"]["verdict"] == "not run"


def test_spelled_out_defaults_keep_a_run_comparable():
    from dgc.stages.evaluate import comparability

    settings = {"model_name": "densenet86_dgc", "model_args": {"num_classes": 10, "heads": 4, "gate_factor": 0.25},
                "train": {"epochs": 300, "batch_size": 64, "max_batches": None}}
    assert comparability("cifar10", settings)["recipe_matches_paper"] == 1
    settings["model_args"]["heads"] = 2
    verdict = comparability("cifar10", settings)
    assert verdict["architecture_matches_paper"] == 0 and "heads" in verdict["reason"]
    assert comparability("digits", {**settings, "model_args": {"num_classes": 10}})["recipe_matches_paper"] == 0


def test_dgcg_rows_and_their_relation_claim(tmp_path):
    claims = {c.id: c for c in load_claims(CLAIMS)}
    assert (claims["c10-dgcg-err"].value, claims["c100-dgcg-err"].value, claims["in-dgcg-err"].value) == \
        (4.42, 23.36, 25.2)
    m = tmp_path / "metrics"
    write_metrics(m, "cifar10-densenet86_dgcg", 4.60, seeds=3, std=0.02)
    write_metrics(m, "cifar10-densenet86_dgc", 4.50, seeds=3, std=0.02)
    rows = rows_by_id(compare(list(claims.values()), m))
    assert rows["c10-dgcg-err"]["verdict"] == "reproduced"  # |4.60 - 4.42| <= 0.5
    assert rows["c10-dgcg-vs-dgc"]["verdict"] == "not reproduced"  # 4.60 > 4.50 beyond 2 s.e. (0.03)
    assert rows["c10-dgcg-vs-dgc"]["delta"] == pytest.approx(0.10)


def test_unverified_claims_carry_no_invented_value_and_show_our_run(tmp_path):
    claims = load_claims(CLAIMS)
    unverified = [c for c in claims if c.kind == "unverified"]
    assert unverified and all(c.value is None and "not known" in c.source for c in unverified)
    m = tmp_path / "metrics"
    write_metrics(m, "cifar10-mobilenetv2_dgc", 7.5)
    rows = rows_by_id(compare(claims, m))
    assert rows["c10-mbv2-dgc-err"]["verdict"] == "not verified"
    assert rows["c10-mbv2-dgc-err"]["ours"] == 7.5 and rows["c10-mbv2-dgc-err"]["paper"] is None
    assert rows["in-mbv2-dgc-err"]["ours"] is None
    assert "| unknown |" in to_markdown(compare(claims, m))


def test_smoke_evidence_evaluates_each_relation_pair_once_and_is_labelled(tmp_path):
    m = tmp_path / "metrics"
    write_metrics(m, "digits-densenet86_dgc", 9.0, recipe=0, arch=0, seeds=3, std=0.3)
    write_metrics(m, "digits-densenet86", 8.0, recipe=0, arch=0, seeds=3, std=0.3)
    write_metrics(m, "digits-densenet86_gc", 10.0, recipe=0, arch=0, seeds=3, std=1.5)
    result = compare(load_claims(CLAIMS), m)
    evidence = {(r["model"], r["versus"]): r for r in result["smoke_evidence"]}
    assert set(evidence) == {("densenet86_dgc", "densenet86"), ("densenet86_dgc", "densenet86_gc")}
    vs_dense, vs_gc = evidence[("densenet86_dgc", "densenet86")], evidence[("densenet86_dgc", "densenet86_gc")]
    # margin 0.5 - 1.0 = -0.5 < -2 s.e. (-0.49): contradicted beyond the spread
    assert vs_dense["delta"] == pytest.approx(1.0) and vs_dense["verdict"] == "does not hold"
    # margin 1.0 is inside 2 s.e. (1.77) of the noisy group conv: undecided
    assert vs_gc["delta"] == pytest.approx(-1.0) and vs_gc["verdict"] == "inconclusive"
    assert (vs_gc["ours_std"], vs_gc["baseline_std"], vs_gc["seeds"]) == (0.3, 1.5, 3)
    assert vs_gc["claims"] == ["c10-dgc-vs-gc", "c100-dgc-vs-gc"]
    assert all("not a test of the paper" in r["label"] for r in result["smoke_evidence"])
    rows = rows_by_id(result)
    assert rows["c10-dgc-vs-gc"]["verdict"] == "not run"  # the paper's claim itself stays not run
    assert "Smoke evidence" in to_markdown(result)
