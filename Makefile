# The two set-up commands: `make demo` (the main job, end to end on the embedded stack) and
# `make test` (the suite). Both create .venv and install the project into it on first use; the
# demo then installs the pose models it lacks into .booth/models (`booth models`).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
DEMO_ARGS ?=
# torch comes from pip's own index unless TORCH_INDEX names another. The pin fixes the version,
# not the build: from the public index torch==2.13.0 on Linux x86_64 is the CUDA 13 build, about
# 2.7 GB of wheels (torch 530 MB, nvidia-* libraries, triton). On a machine without an NVIDIA GPU
# give PyTorch's CPU-only wheel index instead (docs/demo.md, "Installing"): a 190 MB wheel,
# `make demo TORCH_INDEX=<that index's URL>`.
TORCH_INDEX ?=
TORCH := torch==2.13.0

.PHONY: demo test lint bench install clean-state

install: $(VENV)/.installed

# pip shows what it fetches as it goes (a bar on a terminal, one line per package off it).
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) '$(TORCH)'
	$(PY) -m pip install -e '.[dev]'
	touch $@

demo: install
	$(VENV)/bin/booth demo $(DEMO_ARGS)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# The gate: ruff (lint and format) over everything, mypy over the typed packages (pyproject.toml).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install
	$(PY) -m bench.all --quick

# Stops the demo's stack and removes its state (sessions, results, the base-model cache, logs);
# the installed models in .booth/models stay.
clean-state:
	-BOOTH_STATE_DIR=.booth/demo $(VENV)/bin/booth stack down
	-$(VENV)/bin/booth stack down
	find .booth -mindepth 1 -maxdepth 1 ! -name models -exec rm -rf {} + 2>/dev/null || true
