# Two commands: `make demo` runs the main job, `make test` runs the tests. Both set up .venv first,
# from requirements.lock: exactly the versions the suite passed with.
VENV ?= .venv
PYTHON ?= python3
LOCK := requirements.lock
STAMP := $(VENV)/.installed-stamp
LOWEST_VENV := .venv-lowest
LOCK_OPTIONS := --extra dev --extra train --universal --python-version 3.11 --constraint lock-constraints.txt

.PHONY: demo test lint bench lock lowest

$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet --no-deps -r $(LOCK)
	$(VENV)/bin/python -m pip install --quiet --no-deps -e .
	$(VENV)/bin/python -m pip check
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

# Refresh the lock to the newest releases pyproject.toml allows (torch held by lock-constraints.txt).
lock: $(STAMP)
	$(VENV)/bin/uv pip compile pyproject.toml $(LOCK_OPTIONS) --upgrade --quiet -o $(LOCK)

# The suite on the lowest versions pyproject.toml allows: proof that its lower bounds hold.
lowest: $(STAMP)
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --extra train --python-version 3.11 \
		--resolution lowest-direct --quiet -o $(LOWEST_VENV)/requirements.txt
	$(LOWEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOWEST_VENV)/bin/python -m pip install --quiet --no-deps -r $(LOWEST_VENV)/requirements.txt
	$(LOWEST_VENV)/bin/python -m pip install --quiet --no-deps -e .
	$(LOWEST_VENV)/bin/python -m pytest -q -p no:cacheprovider
