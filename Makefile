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
# The JavaScript reader (js/, a zarrita.js store): its npm packages from the committed lock file.
JS_STAMP := js/node_modules/.installed
# Debian's Chromium, for the browser check (tests/test_js_browser.py); CI runs as root and installs it.
CHROMIUM := /usr/bin/chromium

.PHONY: demo test lint format clean js

# constraints.txt pins every dependency of the test environment to versions known to work
# together, so that a fresh clone resolves the same set (the registry changes under us).
$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "Python >= 3.12 is required (see .python-version)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]" -c constraints.txt
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m zarr_manifest_store.cli demo

$(AZURITE): Makefile
	@command -v npm >/dev/null || { echo "npm (Node.js) is required: the tests run Azurite"; exit 1; }
	npm install --prefix $(VENV)/azurite --no-audit --no-fund --silent azurite@$(AZURITE_VERSION)
	@touch $(AZURITE)

$(JS_STAMP): js/package.json js/package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js >= 20) is required: the tests run the JavaScript reader"; exit 1; }
	cd js && npm ci --no-audit --no-fund --silent
	@touch $(JS_STAMP)

# Build the JavaScript reader (tsc) and run its tests (node --test); pytest drives its conformance run.
js: $(JS_STAMP)
	cd js && npm test --silent

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "!!!!!!!! NO BROWSER CHECK: apt-get install chromium failed; tests/test_js_browser.py will skip"; \
	else \
	  echo "!!!!!!!! NO BROWSER CHECK: $(CHROMIUM) is missing and only root can apt-get install chromium;" \
	       "tests/test_js_browser.py will skip"; \
	fi

test: $(STAMP) $(AZURITE) js $(CHROMIUM) lint
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache js/node_modules js/dist
