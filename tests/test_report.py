"""The report notebooks execute on small hand-made outputs (no training) and render to HTML."""

import csv
import json
from pathlib import Path

import pytest

from dgc import notebook as report
from dgc.measure.claims import load_claims, load_references
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
    write_comparison(compare(claims, reports / "metrics", references=load_references(ROOT / "claims" / "paper.yaml")),
                     reports)
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


def test_report_html_has_every_section_and_embedded_figures(rendered):
    _, _, html = rendered
    text = html.read_text()
    assert "c10-dgc-err" in text and "Not run (" in text  # every claim, grouped by verdict
    assert text.count("data:image/png;base64") >= 7
    assert "https://cdn" not in text and "<script src=\"http" not in text
    for key, _ in report.SECTIONS:
        assert f'id="{key}"' in text, key
    for section in ("What was easy", "What was hard"):
        assert section in text
    # one seed each: the relation on these runs is inconclusive, and the unfinished dense run is named
    assert "<b>inconclusive</b>" in text and "Not finished: digits-densenet86" in text
    assert 'href="budget.html"' in text and 'href="ablations.html"' in text


def test_the_summary_comes_first_and_states_the_outcome(rendered):
    text = rendered[2].read_text()
    first_section = text.index('id="summary"')
    assert first_section < text.index('id="scope"') < text.index('id="claims"')
    summary = text[first_section:text.index('id="scope"')]
    counts = json.loads((rendered[0] / "vs_paper.json").read_text())["summary"]
    assert "In short" in summary
    assert f"{counts['not run']} not run" in summary
    assert "DGC keeps the accuracy of the dense network" in summary  # the relation verdict, in words
    assert "MLRC 2020" in summary and "4.87 %" in summary  # the earlier reproduction


def test_not_run_claims_are_a_short_list_not_table_rows(rendered):
    text = rendered[2].read_text()
    claims = text[text.index('id="claims"'):text.index('id="relations"')]
    rows = json.loads((rendered[0] / "vs_paper.json").read_text())["claims"]
    not_run = [r["id"] for r in rows if r["verdict"] == "not run"]
    assert not_run
    for claim_id in not_run:
        assert f"<td>{claim_id}</td>" not in claims and f"<code>{claim_id}</code>" in claims
    assert "best.top1_err" not in claims and "best top-1 error (%)" in claims  # readable names


def test_html_tables_align_text_left_and_numbers_right():
    import pandas as pd

    frame = pd.DataFrame({"model": ["densenet86_dgc", "densenet86"], "top-1": ["96.20 ± 1.05", "99.35 ± 0.32"],
                          "params": [19370, 14490]})
    table = report.html_table(frame)
    assert "<td>densenet86_dgc</td>" in table  # text: the style's left alignment
    assert "<td class=num>96.20 ± 1.05</td>" in table and "<td class=num>19,370</td>" in table
    assert "text-align: left" in report.STYLE and "td.num" in report.STYLE and "nowrap" in report.STYLE


def test_cross_references_are_links_to_anchors():
    assert report.ref("plateau") == f"[section {report.section_number('plateau')}](#plateau)"
    assert report.heading("plateau").endswith('<a id="plateau"></a>')
    assert report.href("claims") == f'<a href="#claims">section {report.section_number("claims")}</a>'


def test_relations_in_words():
    base = {"model": "densenet86_dgc", "versus": "densenet86", "tolerance": 0.5}
    assert report.relation_in_words({**base, "delta": 3.15, "standard_error": 0.63, "verdict": "does not hold"}) \
        == ("densenet86_dgc's error is 3.15 points above densenet86's; the claim allows 0.5, and the excess of "
            "2.65 is more than two standard errors (1.26)")
    assert "within two standard errors" in report.relation_in_words(
        {**base, "delta": 0.9, "standard_error": 0.4, "verdict": "inconclusive"})
    assert "no spread" in report.relation_in_words({**base, "delta": 0.9, "standard_error": None,
                                                     "verdict": "inconclusive"})


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
    models = report.models_table(inputs).set_index("model")
    assert models.loc["densenet86_dgc", "FLOPs expected (M)"] == 1.5
    assert "dataset" not in models.columns  # one value in every row: said in the scope table instead
    usage = report.layer_usage_table(inputs)
    assert list(usage["head overlap (Jaccard)"]) == [0.0, 0.1, 0.2]
    latency = report.latency_table(inputs).set_index(["model", "batch"])
    assert latency.loc[("densenet86", 64), "as timed (ms)"] == 1.5
    assert "10 timed repeats" in report.latency_note({"info": {"r": {"latency_device": "CPU", "latency_repeats": 10}}})


def test_source_notebooks_are_stripped_and_parameterised():
    import nbformat

    for name in ("report", "ablations", "budget"):
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
    assert (f'(<a href="#latency">section {numbers["latency"]}</a> and '
            f'<a href="#bench">section {numbers["bench"]}</a>)') in text
    with pytest.raises(KeyError, match="no report section"):
        report.ref("nowhere")


def test_latency_shows_every_runtime_side_by_side_and_the_fastest():
    metrics = {"flops_expected": 1_000_000, "latency_ms_per_image": {"batch_1": 1.5, "batch_64": 0.2},
               "latency_ms_per_image_by_runtime": {"eager": {"batch_1": 2.0, "batch_64": 0.2},
                                                   "onnxruntime": {"batch_1": 1.5, "batch_64": 0.3}}}
    info = {"latency_runtime": {"batch_1": "onnxruntime", "batch_64": "eager"}, "latency_device": "CPU",
            "latency_runtimes": ["eager", "onnxruntime"], "latency_repeats": 10,
            "latency_skipped": {"compiled": "evaluate.compile is off"}}
    inputs = {"runs": ["digits-densenet86_dgc", "digits-densenet86"],
              "metrics": {"digits-densenet86_dgc": metrics, "digits-densenet86": {**metrics, "flops_expected": 2e6}},
              "info": {"digits-densenet86_dgc": info, "digits-densenet86": info}}
    table = report.latency_table(inputs).set_index(["model", "batch"])
    one, big = table.loc[("densenet86_dgc", 1)], table.loc[("densenet86_dgc", 64)]
    assert one["eager (ms)"] == 2.0 and one["onnxruntime (ms)"] == 1.5 and big["onnxruntime (ms)"] == 0.3
    assert one["fastest"] == "onnxruntime" and big["fastest"] == "eager"
    assert table.loc[("densenet86", 1), "FLOPs expected (M)"] == 2.0
    note = report.latency_note(inputs)
    assert "eager, onnxruntime" in note and "compiled: evaluate.compile is off" in note
