"""`dgc export`: every DGC model and its baselines exported (torch.export, ONNX) and run (the program,
ONNX Runtime) with the eager model's outputs, DGC's per-sample selection kept; the command on a
trained run, and its one-line errors."""

import json

import pytest
import torch

from dgc.cli import main
from dgc.commands.export import agreement, export_model
from dgc.layers import dgc_layers, set_progress
from dgc.measure.calibrate import calibrate_batchnorm
from dgc.models import create_model

SMALL = {
    "densenet": {"growth": [4, 4, 8], "depth": [1, 1, 1]},
    "resnet18": {"width": 8, "blocks": [1, 1, 1, 1], "stem": "cifar"},
    "mobilenetv2": {"width": 0.25, "blocks": [1] * 7, "stem": "cifar"},
}
MODELS = {"densenet86_dgc": "densenet", "densenet86_dgcg": "densenet", "densenet86_gc": "densenet",
          "densenet86": "densenet", "resnet18_dgc": "resnet18", "resnet18_gc": "resnet18", "resnet18": "resnet18",
          "mobilenetv2_dgc": "mobilenetv2", "mobilenetv2_gc": "mobilenetv2", "mobilenetv2": "mobilenetv2"}


def small_model(name):
    torch.manual_seed(0)
    model = create_model(name, 10, **SMALL[MODELS[name]])
    set_progress(model, 1.0)  # the pruned steady state of a trained model
    for layer in dgc_layers(model):
        if layer.selection == "global":  # DGC-G: a threshold inside the saliencies' range
            layer.threshold.fill_(0.9)
    return calibrate_batchnorm(model, input_size=(3, 16, 16), batch_size=16)


def batches(n=3, size=16, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 16, 16, generator=gen), torch.randint(0, 10, (size,), generator=gen))
            for _ in range(n)]


# The DGC models' exports take 10-30 s each on the 2 shared cores (many small ops to translate).
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n.endswith("_dgc") else n for n in MODELS])
def test_every_model_exports_and_runs_like_eager(name, tmp_path, one_torch_thread):
    model = small_model(name)
    test = batches()
    record = export_model(model, test[0][0][:2], tmp_path, test)
    assert record["images"] == 48
    scale = max(1.0, record["eager_max_abs_logit"])
    for form in ("pt2", "onnxruntime"):  # the exported forms on inputs they were not traced with
        assert record[form]["max_abs_diff"] < 1e-5 * scale, (form, record[form], scale)
        assert record[form]["top1_agreement"] == 1.0, form
        assert record[form]["top1_acc"] == pytest.approx(record["eager_top1_acc"])
    layers = dgc_layers(model)
    assert record["dgc_layers"] == len(layers)
    # the selection is computed in the graph, per sample: one TopK per head-wise DGC layer that prunes
    assert record["onnx_topk_nodes"] == record["selecting_layers"]
    assert record["selecting_layers"] == sum(layer.selection == "head" for layer in layers)
    assert (tmp_path / "model.onnx").stat().st_size > 0 and (tmp_path / "model.pt2").stat().st_size > 0


def test_the_exported_selection_is_per_sample_not_frozen(tmp_path, one_torch_thread):
    """Two inputs whose selections differ: the exported model follows each, as eager does; a model
    with the first input's kept channels frozen in would not."""
    model = small_model("densenet86_dgc")
    test = batches(1, size=4)
    export_model(model, test[0][0][:2], tmp_path, test)
    program = torch.export.load(str(tmp_path / "model.pt2")).module()
    first = dgc_layers(model)[0]
    first.report.usage = True
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = model(x)
    kept = first.report.kept
    assert not torch.equal(kept[0], kept[1])  # the two samples keep different channels
    torch.testing.assert_close(program(x), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(program(x[1:]), model(x[1:]).detach(), rtol=1e-5, atol=1e-5)  # batch 1 too


def test_agreement_counts_differences_and_top1():
    ref = lambda x: x  # noqa: E731
    flipped = lambda x: x.flip(1)  # noqa: E731
    x = torch.tensor([[0.0, 1.0], [3.0, 1.0]])
    y = torch.tensor([1, 1])
    r = agreement(ref, {"same": ref, "flipped": flipped}, [(x, y)])
    assert r["images"] == 2 and r["eager_top1_acc"] == 50.0 and r["eager_max_abs_logit"] == 3.0
    assert r["same"] == {"max_abs_diff": 0.0, "top1_agreement": 1.0, "top1_acc": 50.0}
    assert r["flipped"] == {"max_abs_diff": 2.0, "top1_agreement": 0.0, "top1_acc": 50.0}


def test_dgc_export_of_a_trained_run(tmp_path, tiny_params_file, capsys, one_torch_thread):
    runs = tmp_path / "runs"
    args = ["--runs", str(runs), "--params", str(tiny_params_file), "-S", "train.seeds=[0]"]
    assert main(["train", "digits", "densenet86_dgc", *args, "--history-dir", ""]) == 0
    assert main(["export", "digits", "densenet86_dgc", *args]) == 0
    out = runs / "digits-densenet86_dgc" / "export"
    record = json.loads((out / "export.json").read_text())
    assert capsys.readouterr().out.strip().endswith(f"{out / 'model.onnx'}\n{out / 'model.pt2'}")
    assert record["images"] == 360 and record["seed"] == 0 and record["epoch"] == 2
    assert record["checkpoint"].endswith("seed0/checkpoint.pt")
    assert record["onnxruntime"]["top1_agreement"] == 1.0 and record["onnxruntime"]["max_abs_diff"] < 1e-4
    assert record["pt2"]["top1_agreement"] == 1.0
    assert record["provenance"]["commit"]


@pytest.mark.parametrize("extra, message", [
    ([], "checkpoint.pt does not exist: run the train stage first"),
    (["--seed", "7"], "seed7/checkpoint.pt does not exist"),
])
def test_dgc_export_without_a_run_is_one_line(extra, message, tmp_path, tiny_params_file, capsys):
    code = main(["export", "digits", "densenet86_dgc", "--runs", str(tmp_path), "--params",
                 str(tiny_params_file), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
