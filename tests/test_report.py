"""The report notebooks execute on small hand-made outputs (no training) and render to HTML."""

import csv
import json
from pathlib import Path

import pytest

from dgc import notebook as report
from dgc.measure.claims import load_claims
from dgc.stages.compare import compare, write_comparison
from dgc.stages.plots import make_plots
from dgc.stages.report import NotebookFailed, render
from dgc.stages.train import HISTORY_COLUMNS

ROOT = Path(__file__).parents[1]
RUNS = ["digits-densenet86_dgc", "digits-densenet86"]


def make_outputs(reports: Path) -> None:
    for i, run in enumerate(RUNS):
        dgc = run.endswith("_dgc")
        metrics = {"best": {"top1_acc": 90.0 + i, "top1_err": 10.0 - i, "top5_acc": 99.0, "top5_err": 1.0,
                            "epoch": 3, "loss": 0.3},
                   "final": {"top1_acc": 89.0 + i, "top1_err": 11.0 - i, "top5_acc": 99.0, "top5_err": 1.0,
                             "epoch": 3, "loss": 0.3},
                   "seeds": 1, "flops_dense": 3_000_000, "flops_expected": 1_500_000 if dgc else 3_000_000,
                   "flops_actual": 1_400_000 if dgc else 3_000_000, "params": 40_000,
                   "latency_ms_per_image": {"batch_1": 2.0 + i, "batch_64": 0.5 + i},
                   "recipe_matches_paper": 0, "architecture_matches_paper": 0,
                   "plateau": {"late_gain": 0.5 if dgc else 2.0, "plateaued": int(dgc), "points": 1.0}}
        layers = [{"name": f"features.l{j}", "in_channels": 16, "out_channels": 16, "kernel": 1,
                   "kept_fraction": 0.25, "active_fraction": 0.25, "head_overlap": 0.1 * j}
                  for j in range(3)] if dgc else []
        info = {"dataset": "digits", "model": run.split("-")[1], "profile": "smoke",
                "latency_device": "CPU (2 threads)", "comparability": "smoke", "seeds": [0],
                "model_args": {}, "layers": layers, "usage_images": 360}
        for folder, data in (("metrics", metrics), ("info", info)):
            (reports / folder).mkdir(parents=True, exist_ok=True)
            (reports / folder / f"{run}.json").write_text(json.dumps(data))
        (reports / "history").mkdir(exist_ok=True)
        with open(reports / "history" / f"{run}.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=("seed", *HISTORY_COLUMNS))
            w.writeheader()
            for e in range(1, 4):
                w.writerow({"seed": 0, "epoch": e, "lr": 0.1 / e, "progress": e / 3,
                            "inactive_fraction": 0.25 * e if dgc else 0, "train_loss": 1 / e,
                            "train_top1": 80 + e, "test_loss": 1.2 / e, "test_top1": 85 + e,
                            "test_top5": 99, "epoch_seconds": 2.0, "compile_seconds": 0.0,
                            "images_per_second": 700,
                            "peak_memory_mb": 900})
    claims = load_claims(ROOT / "claims" / "paper.yaml")
    write_comparison(compare(claims, reports / "metrics"), reports)
    make_plots(reports / "metrics", reports / "history", claims, reports / "figures",
               {"densenet86_dgc": 0.25})


PARAMS = {"profile": "smoke", "datasets": ["digits"], "models": ["densenet86_dgc", "densenet86"]}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    make_outputs(reports)
    ipynb, html = render(ROOT / "notebooks" / "report.ipynb", reports, {**PARAMS, "reports": str(reports)},
                         "DGC reproducibility report", cwd=ROOT)
    return reports, ipynb, html


def test_report_html_has_the_claims_table_and_embedded_figures(rendered):
    _, _, html = rendered
    text = html.read_text()
    assert "c10-dgc-err" in text and "not run" in text  # the claims table, every claim
    assert text.count("data:image/png;base64") >= 6
    assert "https://cdn" not in text and "<script src=\"http" not in text
    for section in ("Scope", "Claims", "accuracy against FLOPs", "What the heads do", "Inference latency",
                    "What was easy", "What was hard", "Did every run finish learning?"):
        assert section in text
    # one seed each: the smoke evidence is inconclusive, and the unfinished dense run is named
    assert "<strong>inconclusive</strong>" in text and "not finished: digits-densenet86" in text
    assert 'href="budget.html"' in text


def test_report_is_byte_identical_when_re_executed(rendered, tmp_path):
    reports, ipynb, html = rendered
    first = (ipynb.read_bytes(), html.read_bytes())
    render(ROOT / "notebooks" / "report.ipynb", reports, {**PARAMS, "reports": str(reports)},
           "DGC reproducibility report", cwd=ROOT)
    assert (ipynb.read_bytes(), html.read_bytes()) == first


def test_missing_input_names_the_stage_that_writes_it(tmp_path):
    with pytest.raises(NotebookFailed, match="history.*is missing: it is written by the `train` stage"):
        render(ROOT / "notebooks" / "report.ipynb", tmp_path, {**PARAMS, "reports": str(tmp_path)},
               "x", cwd=ROOT)


def test_tables_read_the_outputs(rendered):
    reports = rendered[0]
    inputs = report.load_inputs(["digits"], ["densenet86_dgc", "densenet86"], reports)
    models = report.models_table(inputs)
    assert models.loc[("digits", "densenet86_dgc"), "FLOPs expected (M)"] == 1.5
    usage = report.layer_usage_table(inputs)
    assert list(usage["head overlap (Jaccard)"]) == [0.0, 0.1, 0.2]
    assert set(report.latency_table(inputs)["batch"]) == {1, 64}


def test_source_notebooks_are_stripped_and_parameterised():
    import nbformat

    for name in ("report", "ablations"):
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code)
        assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1


def test_section_numbers_and_references_are_generated_from_one_list(rendered):
    _, _, html = rendered
    text = html.read_text()
    numbers = {key: i + 1 for i, (key, _) in enumerate(report.SECTIONS)}
    for key, title in report.SECTIONS:
        assert f"{numbers[key]}. {title}" in text.replace("&#39;", "'").replace("&amp;", "&")
    # "What was hard" points at the latency and benchmark sections by their generated numbers.
    assert f"(section {numbers['latency']} and section {numbers['bench']})" in text
    with pytest.raises(KeyError, match="no report section"):
        report.ref("nowhere")


def test_what_this_run_can_and_cannot_say(rendered):
    reports = rendered[0]
    inputs = report.load_inputs(["digits"], ["densenet86_dgc", "densenet86"], reports)
    text = report.can_and_cannot_say(inputs, "smoke")
    rows = inputs["vs_paper"]["claims"]
    assert f"of the paper's {len(rows)} claims" in text and "cifar10" in text and "not run" in text
    # the hand-made digits runs: DGC 10.0 % err vs dense 9.0 % -> +1.00 point, above the 0.5 tolerance
    assert "Smoke evidence" in text and "densenet86_dgc vs densenet86: +1.00 points" in text
    assert "does not hold" in text and "decide none of its claims" in text
    assert "What this run can and cannot say" in rendered[2].read_text()
