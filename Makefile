# Two entry points, each complete on a fresh machine with Python 3.11+:
#   make demo   -- imageq end to end (embedded Redis and the API simulator when needed)
#   make test   -- lint, type check and the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test lint typecheck unit venv browser clean soak compose-check

demo: $(DEMO_STAMP)
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

# The soak run under chaos, not part of `make test`: 2,000 jobs at production timing while
# workers, Redis, the API and the webhook receiver fail (about 13 min; bench/README.md).
# SOAK_ARGS passes flags, e.g. make soak SOAK_ARGS=--smoke
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

venv: $(STAMP)

# docker-compose.yml and the Dockerfile built and run for real, on a Docker daemon of the
# check's own from Debian's packages (docs/compose.md; a few minutes, more on a cold cache).
# Where Docker cannot be had (not root, no apt) it says so and exits 0.
compose-check: $(STAMP)
	$(BIN)/python -m imageq.devenv.compose_check

# The HTML report's test renders it in Debian's headless Chromium, and the logs' test runs the
# jq recipe of docs/logs.md; where apt-get is missing or refuses, those tests skip and say so.
browser:
	@command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium not installed: the report's browser test will skip"
	@command -v jq >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq jq >/dev/null; } || \
		echo "jq not installed: the logs' jq recipe test will skip (its Python twin still runs)"

define new_venv
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "imageq needs Python 3.11 or newer (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
endef

# The demo installs only its extra (the simulator and an embedded Redis); tests, lint, type
# check and the benchmark install the rest into the same environment.
$(DEMO_STAMP): pyproject.toml
	$(new_venv)
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	touch $@

$(STAMP): pyproject.toml
	$(new_venv)
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded-redis,bench,ops]'
	touch $@

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
