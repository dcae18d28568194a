# telehub — the two commands of the quick start are `make demo` and `make test`.
# Each sets up its own virtual environment on first use.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
ARGS    ?=
N       ?= 2000

.PHONY: demo test lint typecheck chaos bench clean venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/telehub demo $(ARGS)

# drivers/ must keep 100 % branch coverage from its own tests (enforced here), then the rest.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest tests/drivers -q --cov=drivers --cov-branch \
		--cov-report=term-missing:skip-covered --cov-fail-under=100
	$(BIN)/python -m pytest --ignore=tests/drivers $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

chaos: $(STAMP)
	$(BIN)/python -m tests.chaos.matrix --readings $(N) $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
