"""A/B of the DGC layer's selection and executions against another commit's, in one process.

Loads `dgc/layers/dgc_conv.py` and `dgc/layers/executions.py` of REV (git show), swaps REV's
`DGCConv2d.select` and execution table (`EXECUTIONS`: each execution's function, where it applies, its
selection) into the current layer in turn, and times whole-model inference (calibrated BatchNorm,
full width, CIFAR stem, every DGC layer at its target pruning), alternating old and new call by call so
both share the machine's conditions. Prints the max output difference and the median ms/image of
each (no output file). REV must have dgc/layers/executions.py (the executions were DGCConv2d methods
before). Run from the repository root (REV is looked up with `git show` there):

    .venv/bin/python benchmarks/ab_layer.py REV [--models densenet86_dgc resnet18_dgc] [--batches 64 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from dgc.layers import executions, set_progress
from dgc.layers.dgc_conv import DGCConv2d
from dgc.measure.calibrate import ready_for_timing
from dgc.measure.latency import median_times
from dgc.models import create_model


def load_rev_module(rev: str, path: str, name: str):
    """Module `path` as it is at commit `rev` (its imports resolve to the current package)."""
    source = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True,
                            check=True).stdout
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / f"{name}.py"
        file.write_text(source)
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the commit to compare with (e.g. HEAD~3)")
    parser.add_argument("--models", nargs="+", default=["densenet86_dgc", "resnet18_dgc"])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 1])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        old_executions = load_rev_module(args.rev, "dgc/layers/executions.py", "executions_ab")
        old_layer = load_rev_module(args.rev, "dgc/layers/dgc_conv.py", "dgc_conv_ab")
    except subprocess.CalledProcessError:
        print(f"error: no dgc/layers/dgc_conv.py and dgc/layers/executions.py at revision {args.rev!r}",
              file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"error: the layer of revision {args.rev!r} does not import with the working tree's "
              f"package: {exc}", file=sys.stderr)
        return 2
    current = dict(executions.EXECUTIONS)
    old_table = {n: old_executions.EXECUTIONS.get(n, e) for n, e in current.items()}  # REV's rows
    impls = {"old": (old_layer.DGCConv2d.select, old_table), "new": (DGCConv2d.select, current)}

    def use(name: str) -> None:
        DGCConv2d.select, table = impls[name]
        executions.EXECUTIONS.clear()  # the dict `choose` reads
        executions.EXECUTIONS.update(table)

    torch.set_num_threads(args.threads)
    try:
        for model_name in args.models:
            torch.manual_seed(0)
            model = create_model(model_name, 10, stem="cifar")
            set_progress(model, 1.0)
            model = ready_for_timing(model, (3, 32, 32), torch.device("cpu"))
            for batch in args.batches:
                x = torch.randn(batch, 3, 32, 32)
                with torch.inference_mode():
                    use("old")
                    y_old = model(x)
                    use("new")
                    diff = (model(x) - y_old).abs().max().item() / max(y_old.abs().max().item(), 1e-30)
                    fns = {name: (lambda name=name: (use(name), model(x))) for name in impls}
                    seconds = median_times(fns, torch.device("cpu"), 12 if batch == 1 else 5, warmup=1)
                med = {k: 1000 * v / batch for k, v in seconds.items()}
                print(f"{model_name} batch {batch}: {args.rev} {med['old']:.2f} ms/image, working tree "
                      f"{med['new']:.2f} ms/image, new/old {med['new'] / med['old']:.3f}; "
                      f"max output difference {diff:.1e} of the largest output", flush=True)
    finally:
        use("new")
    return 0


if __name__ == "__main__":
    sys.exit(main())
