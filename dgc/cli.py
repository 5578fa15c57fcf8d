"""The `dgc` command line: one thin subcommand per pipeline stage, each calling a pure function.

Bad input ends with a one-line `dgc: error: ...` message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence


class UsageError(ValueError):
    """A user-facing error: printed as one line, exit status 2."""


def _parse_override(text: str) -> tuple[str, object]:
    """`key=value` with value parsed as YAML (so `growth=[4,4,4]`, `gate_factor=0.5` work)."""
    import yaml

    if "=" not in text:
        raise UsageError(f"override {text!r} must look like key=value")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def _params(args: argparse.Namespace):
    from dgc.config import load_params

    return load_params(args.params, dict(_parse_override(o) for o in args.set))


def cmd_models(args: argparse.Namespace) -> int:
    from dgc.models import list_models, model_arguments

    for name in list_models():
        print(f"{name:20s} settings: {', '.join(model_arguments(name))}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from dgc.flops import profile
    from dgc.models import create_model

    overrides = dict(_parse_override(o) for o in args.set)
    model = create_model(args.model, args.num_classes, **overrides)
    result = {"model": args.model, "num_classes": args.num_classes, "overrides": overrides,
              "input_size": list(args.input_size), **profile(model, args.input_size)}
    print(json.dumps(result, indent=2))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from dgc.config import check_dataset
    from dgc.data import prepare_dataset

    params = _params(args)
    check_dataset(args.dataset)
    cfg = params.data
    path = prepare_dataset(args.dataset, cfg.root, args.raw_dir, cfg.imagenet_path,
                           cfg.digits_test_fraction, cfg.seed, download=not args.no_download)
    print(f"{args.dataset}: ready in {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from dgc.train import train_model

    from dgc.train import build_for_training

    params = _params(args)
    build_for_training(args.dataset, args.model, params)  # every setting checked before any run
    seeds = [args.seed] if args.seed is not None else list(params.train.seeds)
    for seed in seeds:
        result = train_model(args.dataset, args.model, params, args.runs, seed, fresh=args.fresh)
        if result.final:
            print(f"done: best test top-1 {result.best['test_top1']:.2f}% (epoch {result.best['epoch']}), "
                  f"final {result.final['test_top1']:.2f}%; outputs in {result.out_dir}")
    if args.history_dir:
        from dgc.train import merge_histories

        merge_histories(args.runs, args.dataset, args.model, seeds, args.history_dir)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from dgc.evaluate import evaluate_run, write_evaluation

    result = evaluate_run(args.dataset, args.model, _params(args), args.runs)
    metrics_path, info_path = write_evaluation(result, args.metrics_dir, args.info_dir)
    m = result["metrics"]
    print(f"{metrics_path}: best top-1 err {m['best']['top1_err']:.2f}%, FLOPs expected "
          f"{m['flops_expected']:,} actual {m['flops_actual']:,}, params {m['params']:,}")
    return 0


def _with_params(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="parameters file (default params.yaml)")
    p.add_argument("-S", "--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a parameter, e.g. -S train.epochs=2 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dgc", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the registered models and their settings")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("profile", help="FLOPs (paper convention) and parameters of a model")
    p.add_argument("model")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--input-size", type=int, nargs=3, default=(3, 32, 32), metavar=("C", "H", "W"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model setting, e.g. --set gate_factor=0.5 (repeatable)")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("data", help="prepare a dataset under data/ (digits, cifar10, cifar100, imagenet)")
    p.add_argument("dataset")
    p.add_argument("--raw-dir", default=None, help="where archives are looked for / downloaded "
                                                   "(default <data.root>/raw)")
    p.add_argument("--no-download", action="store_true", help="never download; the archive must be there")
    _with_params(p)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="train a model on a dataset (resumes an interrupted run)")
    p.add_argument("dataset")
    p.add_argument("model")
    p.add_argument("--runs", default="runs", help="runs folder (default runs/)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--seed", type=int, default=None, help="train this seed only (default: train.seeds)")
    p.add_argument("--history-dir", default="reports/history",
                   help="where the seeds' merged history CSV goes ('' to skip)")
    _with_params(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("evaluate", help="accuracy, FLOPs, params and latency of a trained model")
    p.add_argument("dataset")
    p.add_argument("model")
    p.add_argument("--runs", default="runs")
    p.add_argument("--metrics-dir", default="reports/metrics")
    p.add_argument("--info-dir", default="reports/info")
    _with_params(p)
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from dgc.checkpoint import CheckpointError
    from dgc.data.archive import DataError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, DataError, CheckpointError, ValueError, TypeError, FileNotFoundError) as exc:
        print(f"dgc: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # e.g. a diverged training run: not bad input, still one line
        if type(exc).__name__ != "TrainingDiverged":
            raise
        print(f"dgc: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dgc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
