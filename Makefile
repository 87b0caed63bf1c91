# The two quick-start commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO_OUT := output/demo

.PHONY: demo test seed install clean

$(VPY):
	$(PYTHON) -m venv $(VENV)

# requirements/lock.txt pins torch 2.14.1 / torchvision 0.29.1 (on local disk here) and
# every other package, so pip never pulls another multi-GB torch build.
$(STAMP): $(VPY) pyproject.toml requirements/lock.txt
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -c requirements/lock.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

seed: $(STAMP)
	$(VPY) tools/seed_assets.py

demo: seed
	$(VPY) examples/demo.py --output $(DEMO_OUT)

test: seed
	$(VPY) -m pytest -q

clean:
	rm -rf $(VENV) .assets output
