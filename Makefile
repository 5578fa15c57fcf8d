# The two commands of the README: `make repro` (the main job) and `make test` (the tests).
# Both create .venv when it is missing and install into it exactly the versions of requirements.lock
# (made by `make lock` from pyproject.toml, the one list of dependencies), then the project itself.
# PYTHON picks the interpreter that creates the venv: CPython 3.11 (3.11.5 or newer), as the lock is.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: repro test lint install lock clean-venv

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Rewrites requirements.lock from pyproject.toml (dependencies and the test extra) for CPython 3.11 on
# Linux x86_64, whatever machine runs it. Versions already in the lock are kept while pyproject allows
# them; `make lock LOCK_ARGS=--upgrade` takes the newest of everything, `LOCK_ARGS="--upgrade-package
# pandas"` of one package; `git diff requirements.lock` shows what changed. uv comes from the lock itself
# (test extra); it reads PyPI, not pip's configuration.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra test --python-version 3.11.5 \
		--python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" --quiet \
		-o requirements.lock $(LOCK_ARGS)

repro: $(STAMP)
	$(BIN)/dvc config core.analytics false
	$(BIN)/dvc repro

lint: $(STAMP)
	$(BIN)/ruff check dgc tests benchmarks studies

test: lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
