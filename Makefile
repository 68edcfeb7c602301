# The two commands a newcomer needs: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test lint fmt typecheck pytest demo bench clean

install: $(STAMP)

# Re-install only when the project metadata or the C extension changed: quick and idempotent
# otherwise.
$(STAMP): pyproject.toml setup.py harvester/records/_flatjson.c harvester/records/_flatjson_values.h harvester/records/_flatjson_shape.h
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check harvester tests scripts setup.py
	$(VENV)/bin/ruff format --check harvester tests scripts setup.py

fmt: install
	$(VENV)/bin/ruff format harvester tests scripts
	$(VENV)/bin/ruff check --fix harvester tests scripts

typecheck: install
	$(VENV)/bin/mypy

pytest: install
	$(VENV)/bin/pytest -q

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
