"""The `dgc` command line: one thin subcommand per pipeline stage, each calling a pure function.

An expected error (a `dgc.errors.DGCError`) ends with a one-line `dgc: error: ...` and its exit status (2, or 1
for a failed run); any other exception is a bug and keeps its traceback."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from dgc.errors import DGCError, MissingInput


class UsageError(DGCError, ValueError):
    """A user-facing error: printed as one line, exit status 2."""


def _parse_override(text: str) -> tuple[str, object]:
    """`key=value` with value parsed as YAML (so `growth=[4,4,4]`, `gate_factor=0.5` work)."""
    import yaml

    if "=" not in text:
        raise UsageError(f"override {text!r} must look like key=value")
    key, value = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise UsageError(f"override {text!r}: the value is not valid YAML "
                         f"({str(exc).splitlines()[0]})") from None


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    return dict(_parse_override(o) for o in args.set)


def _params(args: argparse.Namespace):
    from dgc.config import load_params

    return load_params(args.params, _overrides(args))


def _done(*lines: object) -> int:
    """Print the command's result lines (none: nothing); exit status 0."""
    if lines:
        print(*lines, sep="\n")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from dgc.models import list_models, model_arguments

    return _done(*(f"{name:20s} settings: {', '.join(model_arguments(name))}" for name in list_models()))


def cmd_flops(args: argparse.Namespace) -> int:
    from dgc.measure.flops import count_flops
    from dgc.models import create_model

    overrides = _overrides(args)
    if min(args.input_size) < 1:
        raise UsageError(f"--input-size must be three positive numbers, got {list(args.input_size)}")
    model = create_model(args.model, args.num_classes, **overrides)
    result = {"model": args.model, "num_classes": args.num_classes, "overrides": overrides,
              "input_size": list(args.input_size), **count_flops(model, args.input_size)}
    return _done(json.dumps(result, indent=2))


def cmd_data(args: argparse.Namespace) -> int:
    from dgc.stages.data import prepare

    path = prepare(args.dataset, _params(args), args.raw_dir, download=not args.no_download)
    return _done(f"{args.dataset}: ready in {path}")


def cmd_train(args: argparse.Namespace) -> int:
    from dgc.stages.train import merge_histories, train_model

    params = _params(args)
    seeds = [args.seed] if args.seed is not None else list(params.train.seeds)
    for seed in seeds:
        result = train_model(args.dataset, args.model, params, args.runs, seed, fresh=args.fresh)
        if result.final:
            print(f"done: best test top-1 {result.best['test_top1']:.2f}% (epoch {result.best['epoch']}), "
                  f"final {result.final['test_top1']:.2f}%; outputs in {result.out_dir}")
    if args.history_dir:
        merge_histories(args.runs, args.dataset, args.model, seeds, args.history_dir,
                        keep_others=args.seed is not None)
    return 0


def cmd_train_all(args: argparse.Namespace) -> int:
    from dgc.commands.train_all import train_all

    return train_all(args, _params(args))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from dgc.stages.evaluate import evaluate_run, write_evaluation

    result = evaluate_run(args.dataset, args.model, _params(args), args.runs)
    metrics_path, info_path = write_evaluation(result, args.metrics_dir, args.info_dir)
    m = result["metrics"]
    return _done(f"{metrics_path}: best top-1 err {m['best']['top1_err']:.2f}%, FLOPs expected "
                 f"{m['flops_expected']:,} actual {m['flops_actual']:,}, params {m['params']:,}")


def cmd_export(args: argparse.Namespace) -> int:
    from dgc.commands.export import export_run

    record = export_run(args.dataset, args.model, _params(args), args.runs, args.out, args.seed, args.checkpoint)
    return _done(record["files"]["onnx"], record["files"]["pt2"])


def cmd_compare(args: argparse.Namespace) -> int:
    from dgc.measure.claims import load_claims, load_references
    from dgc.stages.compare import compare, write_comparison

    result = compare(load_claims(args.claims), args.metrics_dir, args.architecture, load_references(args.claims))
    json_path, md_path = write_comparison(result, args.out_dir)
    return _done(", ".join(f"{n} {k}" for k, n in result["summary"].items()) + f" -> {md_path}")


def cmd_architecture(args: argparse.Namespace) -> int:
    from dgc.io import write_json_atomic
    from dgc.measure.claims import load_claims
    from dgc.stages.architecture import count_architectures

    counts = count_architectures(load_claims(args.claims))
    write_json_atomic(args.out, counts)
    return _done(*(f"{run:28s} FLOPs {c['flops_expected']:>13,} (dense {c['flops_dense']:,})  params {c['params']:,}"
                   for run, c in counts.items()))


def cmd_paper_ref(args: argparse.Namespace) -> int:
    from dgc.commands.paper_ref import dvc_command, make_tags
    from dgc.measure.claims import load_claims, load_references

    tags = make_tags(load_claims(args.claims), load_references(args.claims), args.repo)
    return _done(*(f"tag {tag} -> {commit[:12]} ({state}); now run: {dvc_command()} metrics diff {tag} --all"
                   for tag, commit, state in tags))


def cmd_plots(args: argparse.Namespace) -> int:
    from dgc.measure.claims import load_claims
    from dgc.models import model_defaults
    from dgc.stages.plots import make_plots

    params = _params(args)
    settings = {n: {**model_defaults(n), **params.model_overrides(n)} for n in params.pipeline.models}
    gates = {n: s["gate_factor"] for n, s in settings.items() if "gate_factor" in s}
    architectures = json.loads(Path(args.architecture).read_text()) if Path(args.architecture).exists() else {}
    return _done(*make_plots(args.metrics_dir, args.history_dir, load_claims(args.claims), args.out_dir, gates,
                             architectures, args.curves_dir))


def use_profile(name: str, params_path: str | Path = "params.yaml", profile_dir: str | Path = "profiles") -> Path:
    """Validate the complete params file profiles/<name>.yaml and copy it onto params.yaml."""
    from dgc.config import ConfigError, load_params
    from dgc.io import write_text_atomic

    source = Path(profile_dir) / f"{name}.yaml"
    if not source.exists():
        raise ConfigError(f"no profile {name!r}: {source} does not exist")
    load_params(source)  # a broken profile never replaces a working params.yaml
    return write_text_atomic(params_path, source.read_text())


def cmd_use_profile(args: argparse.Namespace) -> int:
    return _done(f"{use_profile(args.profile, args.params)} now holds the {args.profile!r} profile; "
                 f"run `dvc repro` (or `make repro`)")


def cmd_report(args: argparse.Namespace) -> int:
    from dgc.stages.report import render

    params = _params(args)
    parameters = {"profile": params.profile, "datasets": list(params.pipeline.datasets),
                  "models": list(params.pipeline.models), "reports": args.reports}
    return _done(*render(args.notebook, args.reports, parameters, "DGC reproducibility report", cwd="."))


def cmd_ablations(args: argparse.Namespace) -> int:
    from dgc.experiments.queue import render_experiments

    return _done(*render_experiments(args.notebook, args.reports, args.params, {"grid": args.grid or ""},
                                     "DGC ablations", args.from_json, args.all_commits))


def cmd_ablations_queue(args: argparse.Namespace) -> int:
    from dgc.experiments import grid
    from dgc.experiments.queue import queue_points, read_queue_params

    params = read_queue_params(args.params, args.dry_run)
    grid.check_profile(params, args.grid)
    seeds = grid.parse_seeds(args.seeds)
    points = grid.grid_points(params, args.grid, seeds, args.only.split(",") if args.only else None)
    k = grid.baseline_knobs(params)
    print(f"{args.grid} grid on {grid.GRID_DATASET[args.grid]}, seeds {list(seeds)}; baseline from "
          f"{args.params}: heads {k['heads']}, pruning rate {k['pruning']:g}, λ {k['lambda']:g}, "
          f"squeeze rate {k['squeeze']}")
    return queue_points(points, params, len(seeds), args.dry_run, "ablations", grid.describe)


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from dgc.bench.speed import bench_markdown, run_bench
    from dgc.io import write_json_atomic, write_text_atomic
    from dgc.runtime.device import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_bench(resolve_device(args.device), args.repeats, models=not args.no_models)
    write_json_atomic(args.out, result)
    md = bench_markdown(result)
    write_text_atomic(str(args.out).rsplit(".", 1)[0] + ".md", md)
    return _done(md)


def cmd_readme(args: argparse.Namespace) -> int:
    from dgc.commands.readme import update_readme

    return _done(*update_readme(args.root, args.reports))


# -- the command line: one table row per subcommand ---------------------------------------------
def arg(*flags: str, **options: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """One argument of a subcommand: argparse's add_argument(*flags, **options); `check="file"`, `"dir"`
    (must exist) or `"out"` (must be writable) is checked before the command runs; `group=` titles its group."""
    return flags, options


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def check_paths(args: argparse.Namespace) -> None:
    """The paths a command was given, before it does any work: inputs exist, outputs can be written."""
    import os

    for dest, kind, flag in args._checks:  # set by _add for every subcommand
        value = getattr(args, dest)
        if value and kind in ("file", "dir") and not getattr(Path(value), f"is_{kind}")():
            raise MissingInput(f"{flag} {value}: no such {'file' if kind == 'file' else 'folder'}")
        if value and kind == "out":
            existing = Path(value).absolute()
            while not existing.exists() and existing != existing.parent:
                existing = existing.parent  # the folder it would be created in
            folder = existing if existing.is_dir() else existing.parent
            if not os.access(folder, os.W_OK):
                raise UsageError(f"{flag} {value}: {folder} cannot be written")


@dataclass(frozen=True)
class Command:
    """A subcommand; `dgc <name>` runs `cmd_<name>` of this module (of the study's, for a study's COMMANDS: see
    main; dashes as underscores; an action `dgc <name> <action>`: `cmd_<name>_<action>`), the function
    dgc/imports.py reads its imports from."""

    name: str
    help: str
    args: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = ()
    actions: tuple[Command, ...] = ()  # sub-subcommands (`dgc ablations queue`)


PARAMS = (arg("--params", default="params.yaml", check="file", help="parameters file (default params.yaml)"),
          arg("-S", "--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
              help="override a parameter, e.g. -S train.epochs=2 (repeatable)"))
RUNS = arg("--runs", default="runs", check="out", help="runs folder (default runs/)")
CLAIMS = arg("--claims", default="claims/paper.yaml", check="file")
METRICS = arg("--metrics-dir", default="reports/metrics", check="dir")
REPORTS = arg("--reports", default="reports", check="out")
ARCHITECTURE = arg("--architecture", default="reports/architecture.json")
FROM = arg("--from", dest="from_json", default=None, metavar="FILE", check="file",
           help="a saved `dvc exp show --json` (e.g. of another clone) instead of this clone's experiments")
ALL_COMMITS = arg("--all-commits", action="store_true", help="also the experiments of other commits than HEAD")
SEEDS = arg("--seeds", default="0,1,2", help="seeds of every point (default 0,1,2)")
DRY_RUN = arg("--dry-run", action="store_true", help="print the `dvc exp run` commands, queue nothing")
GRID_PARAMS = arg("--params", default="params.yaml", check="file", help="the grid's baseline (default params.yaml)")
ONLY = arg("--only", default=None, help=argparse.SUPPRESS)  # the points/axes/variants to queue (tests)
SLURM = "slurm (each overrides its params.yaml `slurm` setting)"

COMMANDS: tuple[Command, ...] = (
    Command("models", "list the registered models and their settings"),
    Command("flops", "FLOPs (paper convention) and parameters of a model", (
        arg("model"), arg("--num-classes", type=int, default=10),
        arg("--input-size", type=int, nargs=3, default=(3, 32, 32), metavar=("C", "H", "W")),
        arg("--set", action="append", default=[], metavar="KEY=VALUE",
            help="override a model setting, e.g. --set gate_factor=0.5 (repeatable)"))),
    Command("data", "prepare a dataset under data/ (digits, cifar10, cifar100, imagenet)", (
        arg("dataset"),
        arg("--raw-dir", default=None, help="where archives are looked for / downloaded (default <data.root>/raw)"),
        arg("--no-download", action="store_true", help="never download; the archive must be there"), *PARAMS)),
    Command("train", "train a model on a dataset (resumes an interrupted run)", (
        arg("dataset"), arg("model"), RUNS, arg("--fresh", action="store_true", help="ignore an existing checkpoint"),
        arg("--seed", type=int, default=None, help="train this seed only (default: train.seeds)"),
        arg("--history-dir", default="reports/history", check="out",
            help="where the seeds' merged history CSV goes ('' to skip)"),
        *PARAMS)),
    Command("train-all", "train every pipeline (dataset, model, seed) as a job of its own, on this host or on "
            "Slurm; then `dvc repro` records them", (
                *PARAMS, arg("--launcher", choices=("local", "slurm"), default="local",
                             help="local: this host, one run per GPU (or -j N CPU runs); slurm: one sbatch job "
                                  "per run with the params.yaml `slurm` settings (default local)"),
                arg("-j", "--jobs", type=int, default=None,
                    help="runs at a time: local default one per visible GPU, 1 without CUDA; slurm default "
                         "slurm.max_jobs (null: every run at once)"),
                arg("--runs", default="runs", help="runs folder (default runs/)"),
                arg("--dry-run", action="store_true", help="print the jobs it would submit, submit nothing"),
                arg("--poll", type=float, default=None,
                    help="seconds between job-state checks (default 2 local, 15 slurm)"),
                arg("--progress", type=float, default=300,
                    help="seconds between progress lines while jobs run (default 300)"),
                *(arg(f"--{flag}", type=kind, default=None, group=SLURM, metavar=metavar) for flag, kind, metavar in (
                    ("partition", str, None), ("account", str, None), ("gpus-per-job", int, None),
                    ("cpus-per-job", int, None), ("mem-gb", float, None), ("time-limit", int, "MINUTES"),
                    ("max-timeouts", int, None))),
                arg("--sbatch", action="append", default=[], metavar="OPTION=VALUE", group=SLURM,
                    help="one more sbatch option, e.g. --sbatch qos=high (repeatable; added to slurm.sbatch)"))),
    Command("evaluate", "accuracy, FLOPs, params and latency of a trained model", (
        arg("dataset"), arg("model"), arg("--runs", default="runs", check="dir"),
        arg("--metrics-dir", default="reports/metrics", check="out"),
        arg("--info-dir", default="reports/info", check="out"), *PARAMS)),
    Command("export", "a trained run's model as ONNX and torch.export (.pt2), checked against eager on the test "
            "set (max |difference|, top-1 agreement; ONNX in ONNX Runtime)", (
                arg("dataset"), arg("model"), arg("--runs", default="runs", check="dir"),
                arg("--out", default=None, check="out", help="output folder (default runs/<dataset>-<model>/export)"),
                arg("--seed", type=int, default=None, help="the run's seed (default: the first of train.seeds)"),
                arg("--checkpoint", choices=["final", "best"], default="final",
                    help="checkpoint.pt (final, default) or best.pt"), *PARAMS)),
    Command("compare", "our metrics against claims/paper.yaml -> reports/vs_paper.{json,md}", (
        CLAIMS, METRICS, ARCHITECTURE, arg("--out-dir", default="reports", check="out"))),
    Command("architecture", "FLOPs/params of the authors' configurations -> reports/architecture.json",
            (CLAIMS, arg("--out", default="reports/architecture.json", check="out"))),
    Command("paper-ref", "create/update the git tags `paper` (and `mlrc2020`, the earlier reproduction) for "
            "`dvc metrics diff paper`", (CLAIMS, arg("--repo", default="."))),
    Command("plots", "PNG figures (accuracy vs FLOPs, curves, schedule, system) and mean curves", (
        CLAIMS, METRICS, arg("--history-dir", default="reports/history", check="dir"), ARCHITECTURE,
        arg("--out-dir", default="reports/figures", check="out"),
        arg("--curves-dir", default="reports/curves", check="out", help="per-run mean curves for `dvc plots show`"),
        *PARAMS)),
    Command("report", "execute notebooks/report.ipynb and render reports/report.html", (
        arg("--notebook", default="notebooks/report.ipynb", check="file"), REPORTS, *PARAMS)),
    Command("ablations", "`dvc exp show --json` + reports/experiments.json -> reports/ablations.html; "
            "`dgc ablations queue` queues the ablation grid", (
                arg("--notebook", default="notebooks/ablations.ipynb", check="file"), REPORTS, GRID_PARAMS,
                arg("--grid", choices=["smoke", "paper"], default=None,
                    help="the grid to show (default: the one of params' profile)"), ALL_COMMITS, FROM),
            actions=(Command("queue", "queue one `dvc exp run --queue` experiment per ablation grid point", (
                arg("--grid", choices=["smoke", "paper"], required=True,
                    help="smoke: digits (smoke profile); paper: cifar10 (after `dgc use-profile paper`)"),
                SEEDS, DRY_RUN, GRID_PARAMS, ONLY)),)),
    Command("bench", "layer and model latency: DGC vs dense vs static group conv", (
        arg("--device", default="auto"), arg("--repeats", type=positive_int, default=10),
        arg("--threads", type=positive_int, default=None, help="CPU threads (default: torch's)"),
        arg("--no-models", action="store_true", help="layers only"),
        arg("--out", default="reports/bench.json", check="out"))),
    Command("readme", "regenerate the generated tables of README.md, docs/results.md and docs/speed.md from "
            "reports/", (
                arg("--root", default=".", help="the folder holding README.md and docs/"), REPORTS)),
    Command("use-profile", "switch params.yaml to a profile (smoke, smoke-all or paper)", (
        arg("profile", choices=["smoke", "smoke-all", "paper"]), arg("--params", default="params.yaml"))),
)


class Parser(argparse.ArgumentParser):
    """argparse, with a bad option in one line (what is wrong, and where the usage is) and exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def _add(sub: argparse._SubParsersAction, command: Command, prefix: str = "cmd") -> None:
    p = sub.add_parser(command.name, help=command.help)
    checks, groups = [], {}
    for flags, options in command.args:
        options = dict(options)
        check, group = options.pop("check", None), options.pop("group", None)
        if group and group not in groups:
            groups[group] = p.add_argument_group(group)
        action = groups.get(group, p).add_argument(*flags, **options)
        if check:
            checks.append((action.dest, check, flags[-1]))
    function = f"{prefix}_{command.name.replace('-', '_')}"
    p.set_defaults(_checks=tuple(checks), func=function)  # func: looked up when it runs (main)
    if command.actions:
        actions = p.add_subparsers(dest="action", required=False, parser_class=Parser)
        for action in command.actions:
            _add(actions, action, function)


def build_parser(module: ModuleType | None = None, prog: str = "dgc") -> argparse.ArgumentParser:
    """The parser of `module`'s COMMANDS (default: this module's, the `dgc` command), described by its docstring's
    first line."""
    module = module or sys.modules[__name__]
    parser = Parser(prog=prog, description=module.__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in module.COMMANDS:
        _add(sub, command)
    return parser


def main(argv: Sequence[str] | None = None, module: ModuleType | None = None, prog: str = "dgc") -> int:
    """Run a subcommand of `module`'s COMMANDS (its `cmd_*` functions; default: this module, `dgc`; a study of
    studies/ passes itself) with its paths checked; an expected error ends in one line `<prog>: error: ...`."""
    module = module or sys.modules[__name__]
    args = build_parser(module, prog).parse_args(argv)
    try:
        check_paths(args)
        return getattr(module, args.func)(args)
    except DGCError as exc:  # expected: one line; anything else is a bug and keeps its traceback
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
