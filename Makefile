# The two commands of the README: `make serve` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: serve test lint typecheck bench screenshots

$(BIN)/.server: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[server,worker]'
	touch $@

$(BIN)/.dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/.server $@

serve: $(BIN)/.server  ## run the registry on the embedded default (SQLite, local blobs, in-process jobs)
	$(BIN)/lorareg serve

lint: $(BIN)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.dev
	$(BIN)/mypy

test: lint typecheck  ## set up and run the whole test suite (two processes, each module in one)
	$(BIN)/pytest -n 2 --dist loadfile

bench: $(BIN)/.dev
	$(BIN)/python bench/transfer.py

screenshots: $(BIN)/.dev  ## the web UI's pages, light and dark, into docs/ui/ (needs /usr/bin/chromium)
	$(BIN)/python docs/screenshots.py
