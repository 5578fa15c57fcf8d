"""benchmarks/crosscheck.py: two reports/ folders of the same pipeline, compared by spread and verdict."""

import json

import pytest

from crosscheck import agreement, crosscheck, crosscheck_markdown, main  # benchmarks/crosscheck.py


def reports(folder, accs, verdicts):
    (folder / "metrics").mkdir(parents=True)
    for model, (mean, std) in accs.items():
        (folder / "metrics" / f"digits-{model}.json").write_text(json.dumps(
            {"best": {"top1_acc": mean}, "best_std": {"top1_acc": std}, "seeds": 3}))
    evidence = [{"model": m, "versus": v, "metric": "best.top1_err", "verdict": verdict, "delta": d}
                for (m, v), (verdict, d) in verdicts.items()]
    (folder / "vs_paper.json").write_text(json.dumps({"smoke_evidence": evidence}))
    return folder


def test_means_within_spread_and_same_verdicts(tmp_path):
    a = reports(tmp_path / "a", {"densenet86_dgc": (96.0, 0.5), "densenet86": (98.0, 0.3)},
                {("densenet86_dgc", "densenet86"): ("does not hold", 2.0)})
    b = reports(tmp_path / "b", {"densenet86_dgc": (96.6, 0.5), "densenet86": (97.9, 0.3)},
                {("densenet86_dgc", "densenet86"): ("does not hold", 1.3)})
    result = crosscheck(a, b)
    dgc = next(m for m in result["models"] if m["run"] == "digits-densenet86_dgc")
    assert dgc["diff"] == pytest.approx(0.6) and dgc["standard_error"] == pytest.approx((2 * 0.25 / 3) ** 0.5)
    assert dgc["within_spread"] and result["all_within_spread"] and result["same_verdicts"]
    assert "| digits-densenet86_dgc | 96.00 ± 0.50 | 96.60 ± 0.50 (n=3) | +0.60 |" in crosscheck_markdown(result, "A", "B")
    assert result["relations"][0]["agreement"] == "same"


def test_a_mean_outside_its_spread_and_a_changed_verdict_are_reported(tmp_path):
    a = reports(tmp_path / "a", {"densenet86_dgc": (96.0, 0.1)}, {("densenet86_dgc", "densenet86_gc"): ("holds", -1.0)})
    b = reports(tmp_path / "b", {"densenet86_dgc": (93.0, 0.1)},
                {("densenet86_dgc", "densenet86_gc"): ("inconclusive", -0.2)})
    result = crosscheck(a, b)
    assert not result["all_within_spread"] and not result["same_verdicts"] and result["no_opposite_verdicts"]
    assert result["relations"][0]["agreement"] == "one inconclusive"
    assert "the same verdicts: no; opposite verdicts: none" in crosscheck_markdown(result, "A", "B")


def test_agreement_tells_an_undecided_side_from_an_opposite_verdict():
    assert agreement("holds", "holds") == "same"
    assert agreement("holds", "inconclusive") == "one inconclusive"
    assert agreement("holds", "does not hold") == "opposite"


def test_the_script_needs_two_finished_reports_folders(tmp_path, capsys):
    assert main([str(tmp_path), str(tmp_path), "--out", str(tmp_path / "x.md")]) == 2
    assert "vs_paper.json is missing" in capsys.readouterr().err
