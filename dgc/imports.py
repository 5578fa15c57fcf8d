"""Which package files a `dgc <subcommand>` runs: its import closure read with `ast` (importing nothing), with
the package `__init__.py`s on the way and the files read by `Path(__file__).with_name(...)`, less the DRIVER
files; tests/test_stage_deps.py checks dvc.yaml's deps against it."""

from __future__ import annotations

import ast
import json
from functools import lru_cache
from pathlib import Path
from typing import Iterable

PACKAGE = "dgc"
SOURCE_ROOT = Path(__file__).resolve().parents[1]  # the folder holding the dgc/ package
DRIVER = ("dgc/__init__.py", "dgc/__main__.py", "dgc/cli.py")  # run by every subcommand


def module_file(name: str, root: Path = SOURCE_ROOT) -> Path | None:
    """The file of module `name` (a.b -> a/b.py or a/b/__init__.py), or None when there is none."""
    base = root.joinpath(*name.split("."))
    return next((path for path in (base.with_suffix(".py"), base / "__init__.py") if path.is_file()), None)


def _walk(nodes: Iterable[ast.AST]) -> Iterable[ast.AST]:
    """Every node under `nodes`, less the bodies of `if TYPE_CHECKING:` (never run)."""
    stack = list(nodes)
    while stack:
        node = stack.pop()
        yield node
        test = getattr(node, "test", None)
        skip = isinstance(node, ast.If) and getattr(test, "id", getattr(test, "attr", None)) == "TYPE_CHECKING"
        stack.extend(node.orelse if skip else ast.iter_child_nodes(node))


def _imported(nodes: Iterable[ast.AST], package: str, root: Path) -> set[str]:
    """Names of the package's modules that the import statements among `nodes` import."""
    names: set[str] = set()
    for node in _walk(nodes):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            # `from dgc.a import b`: b is a submodule (imported) or a name of dgc.a
            names.update(f"{module}.{alias.name}" for alias in node.names
                         if module_file(f"{module}.{alias.name}", root))
    return {n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")}


def _sibling_files(tree: ast.AST, path: Path) -> set[Path]:
    """Files named by `Path(__file__).with_name("<literal>")` in the module (e.g. a C++ source)."""
    named = {path.with_name(str(node.args[0].value)) for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr == "with_name" and "__file__" in ast.unparse(node.func.value)
             and node.args and isinstance(node.args[0], ast.Constant)}
    return {sibling for sibling in named if sibling.is_file()}


def _parse(path: Path) -> ast.Module:
    stat = path.stat()
    return _parse_version(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=256)
def _parse_version(path: Path, mtime_ns: int, size: int) -> ast.Module:  # cached per file version
    return ast.parse(path.read_text(), filename=str(path))


def import_closure(entry_modules: Iterable[str], root: Path = SOURCE_ROOT) -> set[Path]:
    """The files run by importing `entry_modules` (dotted names): see the module docstring."""
    todo = list(entry_modules)
    seen: set[str] = set()
    files: set[Path] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:k]) for k in range(1, len(parts)))  # the parent packages
        path = module_file(name, root)
        if path is None:  # not a module (an unknown name fails at run time, not here)
            continue
        files.add(path)
        tree = _parse(path)
        files |= _sibling_files(tree, path)
        package = ".".join(path.relative_to(root).parent.parts)  # where its relative imports start
        todo.extend(_imported(tree.body, package, root))
    return files


def command_entry_modules(command: str, cli: Path | None = None) -> set[str]:
    """The modules that `cmd_<command>` in dgc/cli.py and the cli functions it calls (e.g. `_params`) import."""
    cli = cli or SOURCE_ROOT / PACKAGE / "cli.py"
    functions = {node.name: node for node in _parse(cli).body if isinstance(node, ast.FunctionDef)}
    start = f"cmd_{command.replace('-', '_')}"
    if start not in functions:
        raise ValueError(f"{cli} has no {start}() for the subcommand {command!r}")
    todo, done, modules = [start], set(), set()
    while todo:
        name = todo.pop()
        if name in done:
            continue
        done.add(name)
        body = functions[name].body
        modules |= _imported(body, PACKAGE, cli.parents[1])
        todo.extend(node.func.id for node in _walk(body) if isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name) and node.func.id in functions)
    return modules


def notebook_modules(notebook: str | Path, root: Path = SOURCE_ROOT) -> set[str]:
    """The package modules a notebook's code cells import (`%` and `!` lines skipped)."""
    modules: set[str] = set()
    for cell in json.loads(Path(notebook).read_text())["cells"]:
        if cell["cell_type"] == "code":
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                             for line in source.splitlines())
            modules |= _imported(ast.parse(code).body, PACKAGE, root)
    return modules


def command_closure(command: str, root: Path = SOURCE_ROOT, notebooks: Iterable[str | Path] = ()) -> set[Path]:
    """The package files `dgc <command>` and the `notebooks` it executes run, beyond the DRIVER."""
    entry = command_entry_modules(command, root / PACKAGE / "cli.py")
    for notebook in notebooks:
        entry |= notebook_modules(root / notebook, root)
    return import_closure(entry, root) - {root / d for d in DRIVER}


def code_deps(files: Iterable[Path], root: Path = SOURCE_ROOT) -> list[str]:
    """`files` as dvc.yaml deps relative to `root`: a folder where every file below it is among them."""
    wanted = {Path(f).resolve() for f in files}

    def below(folder: Path) -> set[Path]:
        return {p.resolve() for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}

    deps: list[str] = []
    todo = [root / PACKAGE]
    while todo:
        folder = todo.pop()
        if folder != root / PACKAGE and below(folder) <= wanted:
            deps.append(folder.relative_to(root).as_posix())
            continue
        deps += [p.relative_to(root).as_posix() for p in sorted(folder.iterdir())
                 if p.is_file() and p.resolve() in wanted]
        todo += [p for p in sorted(folder.iterdir()) if p.is_dir() and below(p) & wanted]
    return sorted(deps)
