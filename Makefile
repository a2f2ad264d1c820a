# `make demo` and `make test` work on a fresh clone: they build .venv first.
# The interpreter is the python3 that .python-version selects (pyenv), or python3.12.
PYTHON ?= $(shell for p in python3 python3.13 python3.12; do \
	  $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$p; break; }; \
	done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Azurite, Microsoft's Azure Storage emulator (Node.js, from npm): the tests' az:// sources.
AZURITE_VERSION := 3.35.0
AZURITE := $(VENV)/azurite/node_modules/.bin/azurite-blob

.PHONY: demo test lint format clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python >= 3.12 is required (see .python-version)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m zarr_manifest_store.cli demo

$(AZURITE): Makefile
	@command -v npm >/dev/null || { echo "npm (Node.js) is required: the tests run Azurite"; exit 1; }
	npm install --prefix $(VENV)/azurite --no-audit --no-fund --silent azurite@$(AZURITE_VERSION)
	@touch $(AZURITE)

test: $(STAMP) $(AZURITE) lint
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
