# sparsearch: `make demo` runs a short local search, `make test` runs the test suite.
# Both create the virtual environment first (pip: uv/poetry would download a CUDA torch).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Bytecode caches on even where the environment turns them off (PYTHONDONTWRITEBYTECODE):
# without them every test process, CLI subprocess and Ray worker compiles the project again.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup demo test test-quick docs datasets toolchain lint bench bench-quality screenshots browser \
	clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) toolchain

demo: $(STAMP) toolchain
	$(VENV)/bin/sparsearch search --dataset digits --flash 24KiB --ram 6KiB --trials 8 \
		--parallel 2 --epochs 6 --seed 0 --db sqlite:///runs/demo.db --artifacts runs/artifacts

# The dashboard's browser tests drive Debian's Chromium (Playwright's own download needs the
# internet); installed here when missing.
browser:
	@command -v chromium >/dev/null || apt-get install -y chromium \
		|| (apt-get update && apt-get install -y chromium)

# Generated C models are measured as Cortex-M firmware (worker/firmware.py): built with Debian's
# Arm compiler and newlib, and run on QEMU by the tests; installed here when missing.
TOOLCHAIN := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
toolchain:
	@(command -v arm-none-eabi-gcc && command -v qemu-system-arm) >/dev/null \
		|| apt-get install -y $(TOOLCHAIN) || (apt-get update && apt-get install -y $(TOOLCHAIN))

# The suite runs in TEST_WORKERS processes (pytest-xdist): most long tests wait (Ray, heartbeats,
# subprocesses), so more processes than cores pays. PYTEST_ARGS adds options (--durations=30).
TEST_WORKERS ?= 4
PYTEST_ARGS  ?=

# The Fashion-MNIST loader's test reads Debian's copy (nothing is downloaded at run time).
datasets:
	@test -d /usr/share/datasets/fashion-mnist || apt-get install -y dataset-fashion-mnist \
		|| (apt-get update && apt-get install -y dataset-fashion-mnist)

# One OpenMP (torch) thread per test process unless set: the processes already fill the cores,
# and OpenMP threads spinning against each other cost about a tenth of the CPU time
# (test-quick: 315 s of user time with torch's default threads, 281 s with one).
test test-quick: export OMP_NUM_THREADS ?= 1

test: $(STAMP) browser datasets toolchain
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The edit-test loop: every test that needs no Ray, no server and no browser.
test-quick: $(STAMP) toolchain
	$(PY) -m pytest -q -n 2 --dist loadgroup -m "not slow and not ray" $(PYTEST_ARGS)

# Re-take the dashboard screenshots in docs/screenshots (the README shows them).
screenshots: $(STAMP) browser
	SPARSEARCH_SCREENSHOTS=docs/screenshots SPARSEARCH_SCREENSHOT_JOB=10,4,2 \
		$(PY) -m pytest -q tests/ui/test_dashboard_browser.py

# docs/cli.md is generated from the CLI itself (tests/test_docs.py fails when it is stale).
docs: $(STAMP)
	$(PY) -m sparsearch.cli._docgen

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	@$(MAKE) --no-print-directory datasets
	$(PY) benchmarks/make_mnist1d.py --out runs/mnist1d.npz
	$(PY) benchmarks/c_vs_tflm.py --workdir runs/c_vs_tflm --out benchmarks/results/c_vs_tflm.json
	$(PY) benchmarks/search_overhead.py --compare-random --out benchmarks/results/search_overhead.json
	$(PY) benchmarks/generation_cost.py --out benchmarks/results/generation_cost.json
	$(PY) benchmarks/space_defaults.py --out benchmarks/results/space_defaults.json
	$(PY) benchmarks/acceptance_digits.py --seeds 0 1 2 --out benchmarks/results/acceptance_digits.json
	$(PY) benchmarks/estimator_accuracy.py --out benchmarks/results/estimator_accuracy.json
	$(PY) benchmarks/finalize_fashion.py --trials 40 --epochs 6 --train-limit 20000 --final-epochs 40 \
		--out benchmarks/results/finalize_fashion_16k_6k.json
	$(PY) benchmarks/api_load.py --rate 200 --seconds 60 --repeat 3 --out benchmarks/results/api_load.json
	$(PY) benchmarks/pruning.py --out benchmarks/results/pruning.json
	$(PY) benchmarks/early_stop_replay.py --workdir runs/early_stop_replay \
		--out benchmarks/results/early_stop_replay.json

# About 1.5 h on two cores: every strategy, two regimes, three seeds (issue 10's evidence).
bench-quality: $(STAMP)
	@$(MAKE) --no-print-directory datasets
	$(PY) benchmarks/search_quality.py --out benchmarks/results/search_quality.json

clean:
	rm -rf $(VENV) runs .pytest_cache
