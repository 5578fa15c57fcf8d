"""Why DGC starts slow: the first epochs of DGC variants and their baselines, with diagnostics.

Trains each variant for the first `--epochs` epochs of the pipeline's schedule (`--schedule-epochs`,
default train.epochs: the cosine lr and the pruning ramp run over that many epochs, as in `dgc train`,
and training stops after `--epochs` of them) with the same setup as dgc.stages.train.train_model (seeded
model, data batches, SGD, dgc.runtime.engine.train_one_epoch / evaluate); per epoch it records:

  test_top1         the usual evaluation (BatchNorm running statistics)
  test_top1_recal   the same weights evaluated after re-estimating every BatchNorm's statistics on
                    the un-augmented training set (a copy of the model; training is untouched): the
                    part of a low test top-1 that is only stale running statistics
  train_top1        the epoch's running training top-1 (train mode)
  saliency          mean / max / fraction zero of the DGC layers' saliencies over the epoch's training
                    forwards, and the fraction of (sample, head) whose gate hidden layer is all zero
                    (the saliency then depends on the gate's bias only, not on the input)
  update            per optimizer step, ||w_after - w_before|| / ||w_before|| of the gates' weights, the
                    conv weights where DGC sits (DGC heads, or the baseline's conv) and every other conv /
                    linear weight, averaged over the epoch

The layers are observed by a wrapper of DGCConv2d.saliency and optimizer step hooks installed by
this module (the training code is unchanged). Variants (VARIANTS below) change a model setting, the
gates' learning rate (a multiplier on their param group), or build a local ResNet without the DGC
layer's own BN-ReLU pre-activation.

    .venv/bin/python studies/slow_start.py [--variants ...] [--seeds 0 1] [--epochs 12] [--work DIR]
        [--json reports/slow_start.json] [--md reports/slow_start.md] [--threads 1] [-S data.root=...]

writes reports/slow_start.json and its table, `markdown`, to reports/slow_start.md (not a part of the
docs/speed.md). Each (variant, seed) is stored in --work as it finishes and reused by later calls with the same
settings, so the variants can be run one at a time; the JSON and the table cover every stored run of
the requested variants.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from dgc.config import NUM_CLASSES, load_params
from dgc.data.batches import make_batches
from dgc.data.cifar_format import read_split
from dgc.data.loader import DeviceBatches, normalization
from dgc.io import write_json_atomic, write_text_atomic
from dgc.layers import DGCConv2d, SaliencyGenerator, dgc_layers
from dgc.measure.calibrate import calibrate_batchnorm
from dgc.measure.provenance import provenance
from dgc.models import convs, create_model
from dgc.models.resnet import ResNet
from dgc.runtime.engine import StepContext, evaluate, train_one_epoch
from dgc.stages.train import inactive_fraction

# -- variants --------------------------------------------------------------------------------------

@dataclass
class Variant:
    name: str
    model: str  # the registered model whose params.yaml overrides are the starting point
    about: str
    changes: dict = field(default_factory=dict)  # model settings changed from params.yaml's
    gate_lr: float = 1.0  # multiplier on the gates' learning rate
    build: Callable[[int, dict], nn.Module] | None = None  # a local model instead of create_model
    post_init: Callable[[nn.Module], None] | None = None  # changes the initialised weights


def resnet18_dgc_no_preact(num_classes: int, overrides: dict) -> nn.Module:
    """resnet18_dgc whose DGC layers have no BN-ReLU of their own (preact=False): conv1 and the
    downsample conv see the block input (already after a ReLU), conv2 sees bn1-ReLU's output, as
    in torchvision's ResNet; the saliency generators pool the same tensors the convs see."""
    o = dict(overrides)
    layer = convs.dgc(o.pop("heads", 4), o.pop("gate_factor", 0.45), o.pop("squeeze_rate", 16),
                      preact=False)
    return ResNet(num_classes, layer, layer, o.pop("blocks", (2, 2, 2, 2)), o.pop("width", 64),
                  o.pop("stem", "imagenet"))


@torch.no_grad()
def head_weights_at_layer_scale(model: nn.Module) -> None:
    """Divide every DGC head's initial weight by sqrt(H): Kaiming fan_out over the whole layer's
    C_out x k x k outputs (the std a dense or group conv in its place gets from init_weights) instead
    of each head's C_out/H x k x k. The draws are the same, only their scale changes."""
    for layer in dgc_layers(model):
        for head in layer.heads:
            head.weight.mul_(layer.num_heads ** -0.5)


VARIANTS = {v.name: v for v in (
    Variant("densenet86_dgc", "densenet86_dgc", "DGC as configured (s 16, g 0.25)"),
    Variant("densenet86_dgc-s4", "densenet86_dgc", "squeeze_rate 4: gate hidden layer C/2",
            {"squeeze_rate": 4}),
    Variant("densenet86_dgc-s2", "densenet86_dgc", "squeeze_rate 2: gate hidden layer C",
            {"squeeze_rate": 2}),
    Variant("densenet86_dgc-g1", "densenet86_dgc", "gate_factor 1.0: gates and saliency scaling, "
            "no pruning", {"gate_factor": 1.0}),
    Variant("densenet86_dgc-gatelr0.1", "densenet86_dgc", "gates at 0.1x the learning rate",
            gate_lr=0.1),
    Variant("densenet86_dgc-gatelr0", "densenet86_dgc", "gates frozen at their initialisation",
            gate_lr=0.0),
    Variant("densenet86_dgc-headinit", "densenet86_dgc", "head weights initialised at the layer's "
            "scale (std / sqrt(H), as a dense conv there)", post_init=head_weights_at_layer_scale),
    Variant("densenet86_gc", "densenet86_gc", "static group conv baseline"),
    Variant("densenet86", "densenet86", "dense baseline"),
    Variant("resnet18_dgc", "resnet18_dgc", "DGC as configured (own BN-ReLU in each DGC layer)"),
    Variant("resnet18_dgc-nopreact", "resnet18_dgc", "DGC layers without their own BN-ReLU",
            build=resnet18_dgc_no_preact),
    Variant("resnet18_dgc-g1", "resnet18_dgc", "gate_factor 1.0: no pruning", {"gate_factor": 1.0}),
    Variant("resnet18_dgc-headinit", "resnet18_dgc", "head weights initialised at the layer's scale",
            post_init=head_weights_at_layer_scale),
    Variant("resnet18_dgc-nopreact-headinit", "resnet18_dgc", "no own BN-ReLU and head weights at "
            "the layer's scale", build=resnet18_dgc_no_preact, post_init=head_weights_at_layer_scale),
    Variant("resnet18_gc", "resnet18_gc", "static group conv baseline"),
    Variant("resnet18", "resnet18", "dense baseline"),
)}


def build(variant: Variant, params, dataset: str) -> tuple[nn.Module, dict]:
    overrides = {**params.model_overrides(variant.model), **variant.changes}
    if variant.build is not None:
        return variant.build(NUM_CLASSES[dataset], overrides), overrides
    return create_model(variant.model, NUM_CLASSES[dataset], **overrides), overrides


# -- observation -----------------------------------------------------------------------------------

class SaliencyRecorder:
    """Wraps DGCConv2d.saliency (class-wide) to accumulate statistics of the observed model's layers
    in training forwards; copies of the model (the recalibrated evaluation) are not observed."""

    def __init__(self, model: nn.Module) -> None:
        self.ids = {id(layer) for layer in dgc_layers(model)}
        self.reset()
        self._original = DGCConv2d.saliency
        recorder, original = self, self._original

        def saliency(layer, x, pooled=None):
            s = original(layer, x, pooled)
            if layer.training and id(layer) in recorder.ids:
                with torch.no_grad():
                    p = x.mean(dim=(2, 3)) if pooled is None else pooled
                    w1 = torch.stack([h.gate.fc1.weight for h in layer.heads])  # (H, C/s, C)
                    hidden = torch.relu(torch.matmul(p, w1.transpose(1, 2)))  # (H, B, C/s)
                    recorder.add(s.detach(), (hidden.amax(dim=2) == 0).float().mean().item())
            return s

        DGCConv2d.saliency = saliency

    def reset(self) -> None:
        self.sum = self.count = self.zero = 0.0
        self.max = 0.0
        self.dead = []

    def add(self, s: torch.Tensor, dead_hidden: float) -> None:
        self.sum += s.sum().item()
        self.count += s.numel()
        self.zero += (s == 0).sum().item()
        self.max = max(self.max, s.max().item())
        self.dead.append(dead_hidden)

    def epoch(self) -> dict[str, float] | None:
        if not self.count:
            return None
        out = {"mean": self.sum / self.count, "max": self.max, "zero_fraction": self.zero / self.count,
               "dead_hidden_fraction": sum(self.dead) / len(self.dead)}
        self.reset()
        return out

    def close(self) -> None:
        DGCConv2d.saliency = self._original


class UpdateRecorder:
    """Relative size of each optimizer step, ||w_after - w_before|| / ||w_before||, per group of
    weights: the gates' (fc1, fc2), the conv weights at the places DGC occupies ("site": the DGC
    heads' weights, or the baseline's conv there: DenseNet's conv_1, ResNet's block conv1 / conv2 /
    downsample conv) and every other conv / linear weight."""

    SITE = re.compile(r"\.(conv_1|conv1|conv2|downsample\.0)$")

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        gate = {id(p) for g in model.modules() if isinstance(g, SaliencyGenerator) for p in g.parameters()}
        sites = tuple(name + "." for name, _ in model.named_modules() if self.SITE.search(name))
        self.groups: dict[str, list[torch.Tensor]] = {"gate": [], "site": [], "other": []}
        for name, p in model.named_parameters():
            if p.dim() < 2:  # biases, BatchNorm
                continue
            key = "gate" if id(p) in gate else "site" if name.startswith(sites) else "other"
            self.groups[key].append(p)
        self.groups = {k: v for k, v in self.groups.items() if v}
        self.sums = {k: 0.0 for k in self.groups}
        self.steps = 0
        self._before: dict[str, list[torch.Tensor]] = {}
        self._hooks = [optimizer.register_step_pre_hook(self._pre),
                       optimizer.register_step_post_hook(self._post)]

    def _pre(self, *_):
        self._before = {k: [p.detach().clone() for p in ps] for k, ps in self.groups.items()}

    def _post(self, *_):
        with torch.no_grad():
            for k, ps in self.groups.items():
                diff = math.sqrt(sum(float((p - b).pow(2).sum()) for p, b in zip(ps, self._before[k])))
                norm = math.sqrt(sum(float(b.pow(2).sum()) for b in self._before[k]))
                self.sums[k] += diff / max(norm, 1e-30)
        self.steps += 1

    def epoch(self) -> dict[str, float]:
        out = {k: v / max(self.steps, 1) for k, v in self.sums.items()}
        self.sums = {k: 0.0 for k in self.groups}
        self.steps = 0
        return out

    def close(self) -> None:
        for h in self._hooks:
            h.remove()


class GateScaledSGD(torch.optim.SGD):
    """SGD whose param groups may carry `lr_scale`: the engine sets every group's lr each step, and
    this step uses lr x lr_scale for such a group (weight decay is inside the lr, as in SGD)."""

    def step(self, closure=None):
        saved = [g["lr"] for g in self.param_groups]
        for g in self.param_groups:
            g["lr"] = g["lr"] * g.get("lr_scale", 1.0)
        try:
            return super().step(closure)
        finally:
            for g, lr in zip(self.param_groups, saved):
                g["lr"] = lr


def make_optimizer(model: nn.Module, cfg, gate_lr: float) -> torch.optim.Optimizer:
    kwargs = dict(lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    if gate_lr == 1.0:  # exactly what train_model builds
        return torch.optim.SGD(model.parameters(), **kwargs)
    gate = {id(p) for g in model.modules() if isinstance(g, SaliencyGenerator) for p in g.parameters()}
    groups = [{"params": [p for p in model.parameters() if id(p) not in gate]},
              {"params": [p for p in model.parameters() if id(p) in gate], "lr_scale": gate_lr}]
    return GateScaledSGD(groups, **kwargs)


@torch.no_grad()
def recalibrated_top1(model: nn.Module, calib: DeviceBatches, test: DeviceBatches) -> float:
    """Test top-1 of a copy of `model` whose BatchNorm statistics are re-estimated on `calib`."""
    twin = copy.deepcopy(model)
    calibrate_batchnorm(twin, (x for x, _ in calib))
    return evaluate(twin, test)["top1"]


@torch.no_grad()
def input_zero_fraction(variant: Variant, params, dataset: str, seed: int = 0) -> float | None:
    """At initialisation (train mode, the first training batch of `seed`): the mean over DGC layers
    of the fraction of zeros in the tensor each one's gates and convs see (after its own BN-ReLU
    where it has one). None for a model without DGC layers."""
    torch.manual_seed(seed)
    model, _ = build(variant, params, dataset)
    if variant.post_init is not None:
        variant.post_init(model)
    if not dgc_layers(model):
        return None
    train_batches, _ = make_batches(dataset, params, torch.device("cpu"), 0, 1, False, seed)
    x, _ = next(iter(train_batches))
    fractions, original = [], DGCConv2d.saliency

    def saliency(layer, z, pooled=None):
        fractions.append((z == 0).float().mean().item())
        return original(layer, z, pooled)

    DGCConv2d.saliency = saliency
    try:
        model.train()(x)
    finally:
        DGCConv2d.saliency = original
    return sum(fractions) / len(fractions)


# -- one run ---------------------------------------------------------------------------------------

def run_one(variant: Variant, params, dataset: str, seed: int, epochs: int, schedule_epochs: int,
            log: Callable[[str], None]) -> dict[str, Any]:
    cfg = params.train
    device = torch.device("cpu")
    torch.manual_seed(seed)  # as train_model: the same initialisation as `dgc train` for this seed
    model, overrides = build(variant, params, dataset)
    if variant.post_init is not None:
        variant.post_init(model)
    model.to(device)
    train_batches, test_batches = make_batches(dataset, params, device, 0, 1, False, seed)
    root = Path(params.data.root) / dataset
    mean, std = normalization(root, dataset)
    train_x, train_y = read_split(root, dataset, "train")
    calib = DeviceBatches(train_x, train_y, cfg.eval_batch_size, mean, std, False)
    optimizer = make_optimizer(model, cfg, variant.gate_lr)
    steps = len(train_batches)
    ctx = StepContext(optimizer, cfg.lr, schedule_epochs * steps, cfg.sparsity_lambda)
    saliency = SaliencyRecorder(model) if dgc_layers(model) else None
    updates = UpdateRecorder(model, optimizer)
    history = []
    try:
        for epoch in range(epochs):
            train_batches.set_epoch(epoch)
            stats = train_one_epoch(model, model, train_batches, ctx, epoch * steps)
            test = evaluate(model, test_batches)
            row = {"epoch": epoch + 1, "lr": stats["lr"], "progress": stats["progress"],
                   "inactive_fraction": inactive_fraction(model), "train_loss": stats["train_loss"],
                   "train_top1": stats["train_top1"], "test_loss": test["loss"],
                   "test_top1": test["top1"], "test_top1_recal": recalibrated_top1(model, calib, test_batches),
                   "saliency": saliency.epoch() if saliency else None, "update": updates.epoch()}
            history.append(row)
            sal = row["saliency"]
            log(f"  {variant.name} seed {seed} epoch {epoch + 1}: train {row['train_top1']:.1f} "
                f"test {row['test_top1']:.1f} (recal {row['test_top1_recal']:.1f}) "
                f"pruned {100 * row['inactive_fraction']:.0f}%"
                + (f" saliency mean {sal['mean']:.2f} max {sal['max']:.1f} dead-hidden "
                   f"{sal['dead_hidden_fraction']:.2f}" if sal else "")
                + "  update " + " ".join(f"{k} {v:.1e}" for k, v in row["update"].items()))
    finally:
        if saliency:
            saliency.close()
        updates.close()
    return {"variant": variant.name, "seed": seed, "model": variant.model, "overrides": overrides,
            "gate_lr": variant.gate_lr, "parameters": sum(p.numel() for p in model.parameters()),
            "history": history}


# -- summary ---------------------------------------------------------------------------------------

def spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "values": values}


def summarize(runs: list[dict], epochs_at: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for e in sorted({1, *epochs_at}):
        rows = [r["history"][e - 1] for r in runs if len(r["history"]) >= e]
        if rows:
            out[f"test_top1@{e}"] = spread([x["test_top1"] for x in rows])
            out[f"test_top1_recal@{e}"] = spread([x["test_top1_recal"] for x in rows])
            out[f"train_top1@{e}"] = spread([x["train_top1"] for x in rows])
            if rows[0]["saliency"]:
                out[f"saliency_mean@{e}"] = spread([x["saliency"]["mean"] for x in rows])
                out[f"saliency_max@{e}"] = spread([x["saliency"]["max"] for x in rows])
                out[f"dead_hidden@{e}"] = spread([x["saliency"]["dead_hidden_fraction"] for x in rows])
            for k in rows[0]["update"]:
                out[f"update_{k}@{e}"] = spread([x["update"][k] for x in rows])
    out["best_test_top1"] = spread([max(x["test_top1"] for x in r["history"]) for r in runs])
    out["best_test_top1_recal"] = spread([max(x["test_top1_recal"] for x in r["history"]) for r in runs])
    return out


def fmt(s: dict | None, digits: int = 1) -> str:
    if not s:
        return "-"
    if s["n"] == 1:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def markdown(result: dict) -> str:
    """The summary table and its column notes."""
    e1, e2 = result["settings"]["report_epochs"]
    lines = [f"Test top-1 (%) after epoch {e1} and {e2} of a {result['settings']['schedule_epochs']}-epoch "
             f"schedule, mean ± std over seeds; recal = BatchNorm statistics re-estimated on the training "
             f"set before evaluating; best = best test top-1 in the first {result['settings']['epochs']} "
             f"epochs.", "",
             f"| variant | seeds | test @{e1} | test @{e2} | best | recal @{e1} | recal @{e2} | "
             f"train @{e1} | train @{e2} | saliency mean @1 / @{e1} / @{e2} | saliency max @{e2} | "
             f"dead gate hidden @{e1} | step ratio gate / site / other @{e1} | DGC input zeros @init |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, v in result["variants"].items():
        s = v["summary"]
        sal = " / ".join(fmt(s.get(f"saliency_mean@{e}"), 2) for e in (1, e1, e2))
        zeros = v["input_zero_fraction_at_init"]
        upd = " / ".join(f"{s[f'update_{k}@{e1}']['mean']:.1e}" if f"update_{k}@{e1}" in s else "-"
                         for k in ("gate", "site", "other"))
        lines.append(
            f"| {name} | {len(v['runs'])} | {fmt(s.get(f'test_top1@{e1}'))} | {fmt(s.get(f'test_top1@{e2}'))} "
            f"| {fmt(s['best_test_top1'])} | {fmt(s.get(f'test_top1_recal@{e1}'))} "
            f"| {fmt(s.get(f'test_top1_recal@{e2}'))} | {fmt(s.get(f'train_top1@{e1}'))} "
            f"| {fmt(s.get(f'train_top1@{e2}'))} | {sal if sal != '- / - / -' else '-'} "
            f"| {fmt(s.get(f'saliency_max@{e2}'))} | {fmt(s.get(f'dead_hidden@{e1}'), 2)} | {upd} "
            f"| {'-' if zeros is None else f'{zeros:.2f}'} |")
    lines += ["", "train = the epoch's running training top-1 (train mode, augmented); saliency = the DGC "
              "layers' saliencies over the epoch's training forwards; dead gate hidden = fraction of "
              "(sample, head) whose gate hidden layer is all zero (the saliency is then the gate's bias, "
              "whatever the input); step ratio = per SGD step ||w_after - w_before|| / ||w_before||, "
              "averaged over the epoch, of the gates' weights, the conv weights where DGC sits (DGC heads, "
              "or the baseline's conv there) and all other conv / linear weights; DGC input zeros @init = "
              "fraction of zeros in the tensor the DGC layers see, at initialisation (seed 0, first batch)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=12, help="epochs trained (default 12)")
    parser.add_argument("--schedule-epochs", type=int, default=None,
                        help="length of the lr / pruning schedule (default train.epochs)")
    parser.add_argument("--report-epochs", type=int, nargs=2, default=[5, 10])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--work", default="/tmp/slow_start", help="where each run is stored")
    parser.add_argument("--json", default="reports/slow_start.json")
    parser.add_argument("--md", default="reports/slow_start.md")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("-S", "--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--no-train", action="store_true", help="only summarize stored runs")
    args = parser.parse_args(argv)

    from dgc.cli import _parse_override

    params = load_params(args.params, dict(_parse_override(o) for o in args.set))
    schedule_epochs = args.schedule_epochs or params.train.epochs
    torch.set_num_threads(args.threads)
    settings = {"dataset": args.dataset, "digits_size": params.data.digits_size,
                "epochs": args.epochs, "schedule_epochs": schedule_epochs,
                "report_epochs": args.report_epochs, "train": {k: getattr(params.train, k) for k in (
                    "batch_size", "lr", "momentum", "nesterov", "weight_decay", "sparsity_lambda")},
                "threads": args.threads}
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    variants: dict[str, Any] = {}
    cpu_seconds = 0.0
    for name in args.variants:
        variant = VARIANTS[name]
        runs = []
        for seed in args.seeds:
            path = work / f"{name}-seed{seed}.json"
            stored = json.loads(path.read_text()) if path.exists() else None
            if stored and stored["settings"] == settings:
                runs.append(stored["run"])
                cpu_seconds += stored.get("cpu_seconds", 0.0)
                continue
            if args.no_train:
                continue
            print(f"{name} seed {seed}: {variant.about}", flush=True)
            start = time.process_time()
            run = run_one(variant, params, args.dataset, seed, args.epochs, schedule_epochs,
                          lambda s: print(s, flush=True))
            used = time.process_time() - start
            cpu_seconds += used
            write_json_atomic(path, {"settings": settings, "run": run, "cpu_seconds": used})
            runs.append(run)
        if runs:
            variants[name] = {"about": variant.about, "model": variant.model,
                              "overrides": runs[0]["overrides"], "gate_lr": variant.gate_lr,
                              "parameters": runs[0]["parameters"],
                              "input_zero_fraction_at_init": input_zero_fraction(variant, params,
                                                                                 args.dataset),
                              "summary": summarize(runs, tuple(args.report_epochs)), "runs": runs}
    result = {"provenance": provenance("cpu"), "command": "python " + " ".join(
        ["studies/slow_start.py", *(argv if argv is not None else sys.argv[1:])]),
        "settings": settings, "cpu_seconds": cpu_seconds, "variants": variants}
    write_json_atomic(args.json, result)
    md = markdown(result)
    write_text_atomic(args.md, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
