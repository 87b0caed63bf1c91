# The two quick-start commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO_OUT := output/demo

.PHONY: demo test seed node-deps browser-deps install clean paddlex-env

$(VPY):
	$(PYTHON) -m venv $(VENV)

# requirements/lock.txt pins torch 2.14.1 / torchvision 0.29.1 (on local disk here) and
# every other package, so pip never pulls another multi-GB torch build.
$(STAMP): $(VPY) pyproject.toml requirements/lock.txt
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -c requirements/lock.txt -e '.[dev]'
	$(VPY) -m pip install -q -c requirements/lock.txt -e '.[ray]'  # viewfinder batch: tests/test_batch_ray.py
	$(VPY) -m pip install -q -c requirements/lock.txt -e '.[milvus]'  # the Milvus backend's tests (docs/scale.md)
	touch $(STAMP)

install: $(STAMP)

seed: $(STAMP)
	$(VPY) tools/seed_assets.py

demo: seed
	$(VPY) examples/demo.py --output $(DEMO_OUT)

# Node.js side of the suite: axios for PaddleX's published Node.js client (tests/node, npm ci).
NODE_DIR   := tests/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed-stamp

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm not found: the test suite runs PaddleX's Node.js client;" \
		"install Node.js and npm (e.g. apt-get install nodejs npm)" >&2; exit 1; }
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

node-deps: $(NODE_STAMP)

# Browser side of the suite: headless Chromium and the chromedriver built with it, from Debian
# (tests/test_console_browser.py drives the web console with Selenium; no browser download).
CHROMIUM     := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver

browser-deps:
	@if [ -x $(CHROMIUM) ] && [ -x $(CHROMEDRIVER) ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver (apt-get) for the web console's browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium chromium-driver >/dev/null; \
	else \
		echo "$(CHROMIUM) and $(CHROMEDRIVER) not found: the web console's browser tests need them;" \
			"install them as root: apt-get install chromium chromium-driver" >&2; exit 1; \
	fi

test: seed node-deps browser-deps
	$(VPY) -m pytest -q

# Optional: PaddleX 3.7.2 in its own venv, with random-weight models in PaddleX's format, so
# that benchmarks/engines.py and benchmarks/shitu.py time PaddleX in the same run (--paddlex).
PDX_VENV := .venv-paddlex
PDX_MODELS := .assets/paddlex-models
paddlex-env: $(PDX_MODELS)/PP-ShiTuV2_det/inference.yml

$(PDX_VENV)/bin/python:
	$(PYTHON) -m venv $(PDX_VENV)
	$(PDX_VENV)/bin/pip install -q -r requirements/paddlex.txt
	$(PDX_VENV)/bin/pip install -q --no-deps paddleclas==2.6.0 paddledet==2.6.0

$(PDX_MODELS)/PP-ShiTuV2_det/inference.yml: $(PDX_VENV)/bin/python benchmarks/paddlex/build_models.py
	$(PDX_VENV)/bin/python benchmarks/paddlex/build_models.py $(PDX_MODELS)

clean:
	rm -rf $(VENV) $(PDX_VENV) .assets output $(NODE_DIR)/node_modules
