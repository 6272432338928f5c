# Two commands do everything on a fresh clone: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
SANDBOX_VENV := .venv-mesh-sandbox
BIN := $(VENV)/bin
# pip says what it collects and installs (no progress bars, no version nag): `make demo` is never silent.
PIP_FLAGS := --progress-bar off --disable-pip-version-check

.PHONY: install browser java demo airflow test lint clean

install: $(VENV)/.installed $(SANDBOX_VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-test.txt pyproject.toml
	@echo "== creating $(VENV) and installing Airflow, Great Expectations and the test tools (a few minutes) =="
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/pip install $(PIP_FLAGS) -r requirements-test.txt
	$(BIN)/pip install $(PIP_FLAGS) --no-deps -e .
	@# The editable install leaves plugins/optout.egg-info; Airflow puts plugins/ on sys.path, sees the
	@# package twice and reports "Plugin 'optout' already registered" as a plugin import error.
	rm -rf plugins/*.egg-info
	touch $@

# mesh-sandbox pins a FastAPI that Airflow refuses, so it gets a virtualenv of its own.
$(SANDBOX_VENV)/.installed: requirements-mesh-sandbox.txt
	@echo "== creating $(SANDBOX_VENV) for mesh-sandbox (the local MESH server) =="
	$(PYTHON) -m venv $(SANDBOX_VENV)
	$(SANDBOX_VENV)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(SANDBOX_VENV)/bin/pip install $(PIP_FLAGS) -r requirements-mesh-sandbox.txt
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

# The Spark tests start a real Spark Connect server from the pyspark package: it needs Java 17.
java:
	@command -v java >/dev/null || { \
	  echo "installing Debian's openjdk-17-jre-headless for the Spark tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Quick layers first: lint, then the unit, reliability and integration tests in that order (tests/conftest.py
# sorts them), with a count and progress from the start and the slowest tests at the end.
test: install lint browser java
	CI=$${CI:-} $(BIN)/python -m pytest -p no:cacheprovider --durations=20

clean:
	rm -rf $(VENV) $(SANDBOX_VENV) var .pytest_cache .mypy_cache .ruff_cache
