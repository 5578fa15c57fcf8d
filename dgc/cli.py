"""The `dgc` command line: one thin subcommand per task, each calling a pure function.

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ValueError, TypeError, FileNotFoundError) as exc:
        print(f"dgc: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
