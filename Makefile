# Two commands do everything on a fresh clone: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
SANDBOX_VENV := .venv-mesh-sandbox
BIN := $(VENV)/bin

.PHONY: install browser demo airflow test lint clean

install: $(VENV)/.installed $(SANDBOX_VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-test.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-test.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# mesh-sandbox pins a FastAPI that Airflow refuses, so it gets a virtualenv of its own.
$(SANDBOX_VENV)/.installed: requirements-mesh-sandbox.txt
	$(PYTHON) -m venv $(SANDBOX_VENV)
	$(SANDBOX_VENV)/bin/pip install -q --upgrade pip
	$(SANDBOX_VENV)/bin/pip install -q -r requirements-mesh-sandbox.txt
	touch $@

demo: install
	$(BIN)/python include/demo.py

# Airflow standalone on embedded defaults with the DAGs, the governance page and demo data refreshed.
airflow: install
	$(BIN)/python include/airflow_standalone.py

# The governance page is tested in a real headless Chromium (Debian's, with its driver); the evidence
# pack's PDF is read back with poppler's pdftotext (no NHS number in it).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v pdftotext >/dev/null || { \
	  echo "installing Debian's chromium, chromium-driver and poppler-utils for the browser and PDF tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
	    poppler-utils >/dev/null; }

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install browser lint
	CI=$${CI:-} $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(SANDBOX_VENV) var .pytest_cache .mypy_cache .ruff_cache
