# The two commands a newcomer needs: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test lint fmt typecheck pytest demo bench clean

# The interpreter a new $(VENV) is made with.
PYTHON ?= python3
# Every package `.[dev]` installs, and pip and the build backend, pinned: a new release of
# numpy, mypy or ruff reaches `make test` only through `make lock`. One universal file with
# environment markers rather than one per Python: one resolution keeps each package at the same
# version on every Python its wheels allow (numpy 2.5 needs 3.12, so 3.11 keeps 2.4), and a
# refresh is one diff to read. Used as constraints, so what gets installed is still declared in
# pyproject.toml alone.
LOCK   := requirements-dev.lock

.PHONY: lock test-all

install: $(STAMP)

# Re-install only when the project metadata, the lock or the C extension changed: quick and
# idempotent otherwise. pip comes first because --build-constraint (which pins setuptools in
# the isolated build of the C extension) needs pip 25.3 or later.
$(STAMP): pyproject.toml $(LOCK) setup.py harvester/records/_flatjson.c harvester/records/_flatjson_values.h harvester/records/_flatjson_shape.h
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c $(LOCK) --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) --build-constraint $(LOCK) -e '.[dev]'
	touch $(STAMP)

# What the container image holds (Dockerfile runs this target): the package and its runtime
# dependencies, pinned by the same lock and installed by the same pip steps as `make install`,
# without the dev extra and not editable.
.PHONY: install-runtime
install-runtime:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c $(LOCK) --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) --build-constraint $(LOCK) .

# Re-resolve $(LOCK) for every Python from 3.11 up. After a change to the dependencies in
# pyproject.toml `make lock` keeps every pin it can; `make lock UPGRADE=all` takes the newest
# release of everything, `make lock UPGRADE='numpy mypy'` of those alone. Then `make test-all`.
# uv lives in its own venv at a pinned version, so refreshing the lock never depends on what
# the lock installs.
UV_VERSION := 0.13.9
LOCK_VENV  := .venv-lock
UPGRADE    ?=
lock:
	test -x $(LOCK_VENV)/bin/python || $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q uv==$(UV_VERSION)
	$(LOCK_VENV)/bin/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], "pip", sep="\n")' \
	| $(LOCK_VENV)/bin/uv pip compile pyproject.toml - --extra dev --universal --python-version 3.11 \
	    --custom-compile-command 'make lock' --quiet -o $(LOCK) \
	    $(if $(filter all,$(UPGRADE)),--upgrade,$(addprefix --upgrade-package ,$(UPGRADE)))

# `make test` (lint, type check, the whole suite) on each supported Python in turn, each in its
# own .venv-3.X installed from the same lock, then one line per Python: result, pytest's count,
# wall time. A Python that fails does not stop the others. The C extension is optional for
# users, so the install would hide a failed build: the import check makes it count here.
# Interpreters are python3.X from PATH, or PYTHON_3_12=/path/to/python3.12 (etc.). pyenv's shim
# of a version that is installed but not selected does not run: select them all with
# `pyenv shell 3.11.7 3.12.1 3.13.0` or PYENV_VERSION=3.11.7:3.12.1:3.13.0.
TEST_PYTHONS ?= 3.11 3.12 3.13
test-all: SHELL := bash
test-all: .SHELLFLAGS := -o pipefail -c
test-all:
	@summary=(); failed=0; \
	for v in $(TEST_PYTHONS); do \
	    var=PYTHON_$${v/./_}; py=$${!var:-python$$v}; venv=.venv-$$v; \
	    if ! "$$py" -c "import sys; sys.exit(sys.version_info[:2] != ($${v/./, }))" 2>/dev/null; then \
	        echo "test-all: '$$py' is not a runnable Python $$v; set $$var=/path/to/python$$v" >&2; \
	        summary+=("Python $$v: FAIL, no interpreter"); failed=1; continue; \
	    fi; \
	    echo "=== Python $$v: $$py, in $$venv, log in $$venv.log"; \
	    start=$$SECONDS; \
	    ( $(MAKE) --no-print-directory test VENV=$$venv PYTHON="$$py"; status=$$?; \
	      $$venv/bin/python -c 'import harvester.records._flatjson' 2>/dev/null \
	      && echo "test-all: native reader built" || { echo "test-all: native reader NOT built"; status=1; }; \
	      exit $$status ) 2>&1 | tee $$venv.log; \
	    status=$$?; seconds=$$((SECONDS - start)); \
	    count=$$(grep -E '^=* ?[0-9]+ (passed|failed).* in [0-9.]+s' $$venv.log | tail -n 1 | tr -d '='); \
	    native=$$(grep -o 'native reader [A-Z]* *built' $$venv.log | tail -n 1); \
	    result=$$([ $$status = 0 ] && echo pass || echo FAIL); [ $$status = 0 ] || failed=1; \
	    summary+=("Python $$v: $$result, $${count:-no pytest summary}, $${native:-native reader unknown}, wall $$((seconds / 60))m$$((seconds % 60))s"); \
	done; \
	echo "=== test-all"; printf '  %s\n' "$${summary[@]}"; exit $$failed

# The layer rules (.importlinter) are part of lint: a broken contract fails CI.
lint: install
	$(VENV)/bin/ruff check harvester tests scripts fuzz setup.py
	$(VENV)/bin/ruff format --check harvester tests scripts fuzz setup.py
	$(VENV)/bin/lint-imports --no-cache

fmt: install
	$(VENV)/bin/ruff format harvester tests scripts fuzz
	$(VENV)/bin/ruff check --fix harvester tests scripts fuzz

# mypy, strict (pyproject.toml), on the package, then on scripts/. The scripts run as
# `python scripts/X.py`, so scripts/ is where they import each other from (bench.py imports
# bench_checkpoint, measured_child, ...): MYPYPATH and --explicit-package-bases name them so.
# With the shared cache the second run takes about half a second once warm.
typecheck: install
	$(VENV)/bin/mypy
	MYPYPATH=scripts $(VENV)/bin/mypy --explicit-package-bases scripts

# The suite on every core (pytest-xdist): most tests wait on subprocesses, sockets and
# simulated latency, so two workers on two cores take about half the serial time. One process:
# `make pytest PYTEST_WORKERS=0`. compileall first: with PYTHONDONTWRITEBYTECODE set (as on
# our machines) nothing else writes the package's bytecode, and each of the ~150 simulator and
# harvester processes the suite starts would compile it again.
PYTEST_WORKERS ?= auto
pytest: install
	$(PY) -m compileall -q harvester tests scripts
	$(VENV)/bin/pytest -q -n $(PYTEST_WORKERS)

test: lint typecheck pytest

demo: install
	$(VENV)/bin/harvester demo

bench: install
	$(PY) scripts/bench.py

clean:
	rm -rf $(VENV) demo-data .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info

# The native reader under AddressSanitizer and UBSan, differential against pyarrow.json, guided
# by gcc's edge coverage (fuzz/fuzz_flatjson.py): `make fuzz` runs FUZZ_SECONDS (10 minutes),
# `make fuzz-smoke` 25 s, in CI. Findings land in fuzz/build/out/findings.
.PHONY: fuzz fuzz-smoke
FUZZ_SECONDS ?= 600
FUZZ_SEED    ?= 1

fuzz: install
	fuzz/build_sanitized.sh
	$(PY) fuzz/fuzz_flatjson.py --seconds $(FUZZ_SECONDS) --seed $(FUZZ_SEED)

fuzz-smoke: install
	fuzz/build_sanitized.sh
	$(PY) fuzz/fuzz_flatjson.py --seconds 25 --seed $(FUZZ_SEED)
