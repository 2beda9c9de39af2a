# Two commands: `make demo` runs the main job, `make test` runs the tests. Both set up .venv first.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	RAY_USAGE_STATS_ENABLED=0 $(VENV)/bin/regionkit demo --out out/demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check regionkit tests bench
	$(VENV)/bin/ruff format --check regionkit tests bench

bench: $(STAMP)
	RAY_USAGE_STATS_ENABLED=0 $(VENV)/bin/python bench/build_throughput.py coco
