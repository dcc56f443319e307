# The README's two commands: `make demo` and `make test`. Each does its own set-up, once.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FMNIST_DIR := /usr/share/datasets/fashion-mnist
WHEELS := $(wildcard /opt/wheels)
PIP_LINKS := $(if $(WHEELS),--find-links $(WHEELS),)

.PHONY: demo test lint format setup data bench clean gpu-check

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(PIP_LINKS) torch==2.13.0
	$(BIN)/pip install --quiet $(PIP_LINKS) -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

data:
	@if [ ! -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    (apt-get install -y -q dataset-fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)); \
	  else \
	    echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist' or set ADVKIT_DATA."; exit 1; \
	  fi; \
	fi

demo: $(STAMP) data
	$(BIN)/advkit demo

test: $(STAMP) data
	$(BIN)/python -m pytest -q

# advkit on a CUDA machine, each feature in seconds, then the fast-AT CIFAR-10 benchmark
# (benchmarks/gpucheck); without a GPU it says so and exits 0. GPU_CHECK_ARGS=--cpu-smoke runs the
# same checks on the CPU with tiny shapes; --no-bench, --only PATTERN, --help.
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
