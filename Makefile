# Two entry points, each complete on a fresh machine with Python 3.11+:
#   make demo   -- imageq end to end (embedded Redis and the API simulator when needed)
#   make test   -- lint, type check and the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit venv browser clean

demo: $(STAMP)
	$(BIN)/python -m imageq.devenv.demo

test: lint typecheck browser
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

venv: $(STAMP)

# The HTML report's test renders it in Debian's headless Chromium; where apt-get is missing or
# refuses, that one test skips and says so.
browser:
	@command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium not installed: the report's browser test will skip"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "imageq needs Python 3.11 or newer (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded-redis,bench]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
