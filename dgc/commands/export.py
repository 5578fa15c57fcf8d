"""`dgc export DATASET MODEL`: a trained run's model as ONNX and torch.export, checked against eager.

`export_run` exports a run's checkpoint (dgc.runtime.exported: dynamic batch, DGC's per-sample selection kept)
into runs/<dataset>-<model>/export/ (out of the train stage's output by .dvcignore): model.pt2, model.onnx
(input `x` (N, C, H, W) float32, output `logits`) and export.json, each form's max |logit - eager|, top-1
agreement and accuracy on the test set (ONNX in ONNX Runtime, CPU)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from dgc.config import Params, check_dataset
from dgc.errors import BadInput
from dgc.runtime.checkpoint import load_model
from dgc.runtime.runs import run_dir

CHECKPOINTS = {"final": "checkpoint.pt", "best": "best.pt"}
EXPORT_DIR = "export"  # under runs/<dataset>-<model>/


def agreement(reference: Callable[[torch.Tensor], torch.Tensor],
              forms: dict[str, Callable[[torch.Tensor], torch.Tensor]],
              batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
    """Per form over the (images, labels) batches: the largest absolute logit difference to `reference`,
    the fraction of same top-1 classes, its top-1 accuracy (%); and the reference's accuracy, largest
    absolute logit (the differences' scale) and the image count (at least one image)."""
    images, ref_correct, ref_max = 0, 0, 0.0
    rows = {name: {"max_abs_diff": 0.0, "same_top1": 0, "correct": 0} for name in forms}
    with torch.no_grad():
        for x, y in batches:
            x, y = x.cpu().float(), y.cpu()
            ref = reference(x)
            ref_top1 = ref.argmax(dim=1)
            ref_max = max(ref_max, float(ref.abs().max()))
            images += len(y)
            ref_correct += int((ref_top1 == y).sum())
            for name, form in forms.items():
                out, row = form(x), rows[name]
                row["max_abs_diff"] = max(row["max_abs_diff"], float((out - ref).abs().max()))
                top1 = out.argmax(dim=1)
                row["same_top1"] += int((top1 == ref_top1).sum())
                row["correct"] += int((top1 == y).sum())
    return {"images": images, "eager_top1_acc": 100.0 * ref_correct / images, "eager_max_abs_logit": ref_max,
            **{name: {"max_abs_diff": r["max_abs_diff"], "top1_agreement": r["same_top1"] / images,
                      "top1_acc": 100.0 * r["correct"] / images} for name, r in rows.items()}}


def export_model(model: nn.Module, example: torch.Tensor, out_dir: str | Path,
                 batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
    """Export the eval-mode `model` (shaped like `example`) into out_dir/model.{pt2,onnx} and check
    both forms against it on `batches`; returns the record (without the run's identity)."""
    from dgc.layers import dgc_layers
    from dgc.runtime.exported import OrtForward, export_program, onnx_model, ort_session, save_onnx

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    program, pt2 = export_program(model, example), out_dir / "model.pt2"
    torch.export.save(program, str(pt2))
    proto = onnx_model(program)
    onnx_path = save_onnx(proto, out_dir / "model.onnx")
    forms = {"pt2": torch.export.load(str(pt2)).module(), "onnxruntime": OrtForward(ort_session(onnx_path))}
    ops = dict(sorted(Counter(node.op_type for node in proto.graph.node).items()))  # TopK: the DGC selections
    layers = dgc_layers(model)
    return {"files": {"pt2": str(pt2), "onnx": str(onnx_path)}, "dgc_layers": len(layers),
            "selecting_layers": sum(layer.selection == "head" and bool(layer.n_inactive) for layer in layers),
            "onnx_topk_nodes": ops.get("TopK", 0), "onnx_ops": ops,
            **agreement(model, forms, batches)}


def export_run(dataset: str, model_name: str, params: Params, runs_root: str | Path = "runs",
               out_dir: str | Path | None = None, seed: int | None = None, checkpoint: str = "final",
               log=print) -> dict[str, Any]:
    """Export the model of runs/<dataset>-<model>/seed<k>/ (`seed`: default the first of
    train.seeds; `checkpoint`: final or best) and write export.json; returns its record."""
    from dgc.data.batches import make_test_batches
    from dgc.io import write_json_atomic
    from dgc.measure.provenance import provenance

    check_dataset(dataset)
    seed = params.train.seeds[0] if seed is None else seed
    path = run_dir(runs_root, dataset, model_name, seed) / CHECKPOINTS[checkpoint]
    model, ck = load_model(path, "cpu")  # a missing or unreadable file: one line naming it
    if ck.get("model_name") != model_name:
        raise BadInput(f"{path} holds a {ck.get('model_name')!r} model, not {model_name!r}")
    out_dir = Path(out_dir) if out_dir is not None else run_dir(runs_root, dataset, model_name) / EXPORT_DIR
    test = list(make_test_batches(dataset, params, torch.device("cpu")))
    if not test:
        raise BadInput(f"the {dataset} test set is empty: nothing to check the export on")
    record = {"dataset": dataset, "model": model_name, "seed": seed, "checkpoint": str(path),
              "epoch": ck.get("epoch"), "provenance": provenance("CPU"),
              **export_model(model, test[0][0][:2], out_dir, test)}
    write_json_atomic(out_dir / "export.json", record)
    for form in ("pt2", "onnxruntime"):
        r = record[form]
        log(f"{dataset}-{model_name} {form}: max |logit - eager| {r['max_abs_diff']:.2e}, top-1 agrees on "
            f"{100 * r['top1_agreement']:.2f}% of {record['images']} test images (top-1 {r['top1_acc']:.2f}%, "
            f"eager {record['eager_top1_acc']:.2f}%)")
    return record
