"""The environment that runs the tests is the locked one.

`make install` installs exactly requirements.lock (then the project itself, without dependencies);
`make lock` rewrites the lock from pyproject.toml. These tests fail naming each package whose installed
version differs from the lock, each locked package that is missing and each installed one the lock
lacks, and each requirement of pyproject.toml that the lock does not satisfy (pyproject edited without
`make lock`). Run as a script (`.venv/bin/python tests/test_environment.py`, as .ci/run does) it prints
the same comparison and exits 1 on a mismatch.
"""

import re
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).parents[1]
LOCK = ROOT / "requirements.lock"
# The project itself (installed editable, with --no-deps) and pip (brought by venv, upgraded by
# `make install`) are the only packages of the environment the lock does not pin.
NOT_LOCKED = {"dgc", "pip"}
PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def normalize(name: str) -> str:
    """PEP 503 name: `Jinja2`, `jinja_2` and `jinja-2` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(path: Path = LOCK) -> dict[str, str]:
    """name -> version of each `name==version` line of the lock (comments and annotations ignored)."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.fullmatch(line)
        if match is None:
            raise ValueError(f"{path.name}: {line!r} is not a `name==version` pin")
        name = normalize(match[1])
        if name in pins:
            raise ValueError(f"{path.name}: {name} is pinned twice")
        pins[name] = match[2]
    return pins


def installed() -> dict[str, str]:
    """name -> version of each distribution in this interpreter's site-packages (not the source tree's
    own dgc.egg-info, which is on sys.path when pytest runs from the repository root)."""
    dirs = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    found: dict[str, str] = {}
    for dist in metadata.distributions(path=dirs):
        name = dist.metadata["Name"]
        if name:
            found.setdefault(normalize(name), dist.version)
    return found


def mismatches(pins: dict[str, str], present: dict[str, str]) -> list[str]:
    """One line per difference between the lock and the environment, sorted by package name."""
    problems = []
    for name in sorted((set(pins) | set(present)) - NOT_LOCKED):
        want, have = pins.get(name), present.get(name)
        if want is None:
            problems.append(f"{name}=={have} is installed but not in requirements.lock")
        elif have is None:
            problems.append(f"{name}=={want} is locked but not installed")
        elif Version(want) != Version(have):
            problems.append(f"{name}: locked {want}, installed {have}")
    return problems


def pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


def test_the_lock_pins_each_package_once_with_an_exact_version_and_the_cuda_build_of_torch():
    pins = locked()
    assert len(pins) > 100
    assert not NOT_LOCKED & set(pins)
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert any(name.startswith("nvidia-") for name in pins), "torch's CUDA libraries are locked too"
    assert Version(pins["dvc"]).major == 3


def test_the_lock_satisfies_every_requirement_of_pyproject():
    pins = locked()
    unmet = []
    for req in pyproject_requirements():
        version = pins.get(normalize(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            unmet.append(f"{req}: locked {version or 'nothing'}")
    assert not unmet, "pyproject.toml changed without `make lock`:\n" + "\n".join(unmet)


def test_the_lock_says_how_to_regenerate_it_and_environment_yml_installs_it():
    header = LOCK.read_text().split("==", 1)[0]  # the comment lines before the first pin
    assert "make lock" in header
    conda = (ROOT / "environment.yml").read_text()
    assert "- -r requirements.lock" in conda and "python=3.11" in conda


def test_the_environment_has_exactly_the_locked_versions():
    problems = mismatches(locked(), installed())
    assert not problems, ("this environment is not requirements.lock (`make install` installs it; "
                          "`make clean-venv install` also drops packages the lock lacks):\n" + "\n".join(problems))


def test_mismatches_names_each_kind_of_difference():
    pins = {"a": "1.0", "b": "2.0", "c": "3"}
    present = {"a": "1.0", "b": "2.1", "d": "4", "dgc": "0.1.0", "pip": "26.0", "c": "3.0"}
    assert mismatches(pins, present) == ["b: locked 2.0, installed 2.1",
                                         "d==4 is installed but not in requirements.lock"]
    assert mismatches({"e": "1"}, {}) == ["e==1 is locked but not installed"]


if __name__ == "__main__":
    found = mismatches(locked(), installed())
    print("\n".join(found) if found else
          f"environment matches requirements.lock: {len(locked())} packages at their locked versions")
    sys.exit(1 if found else 0)
