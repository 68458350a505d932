# The two set-up commands: `make demo` (the main job, end to end on the embedded stack) and
# `make test` (the suite). Both create .venv and install the project into it on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test lint bench install clean-state

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned: an unpinned torch pulls a multi-GB CUDA build
	$(PY) -m pip install -q -e '.[dev]' 'torch==2.13.0'
	touch $@

demo: install
	$(VENV)/bin/booth demo

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# The gate: ruff (lint and format) over everything, mypy over the typed packages (pyproject.toml).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install
	$(PY) -m bench.all --quick

clean-state:
	$(VENV)/bin/booth stack down || true
	rm -rf .booth
