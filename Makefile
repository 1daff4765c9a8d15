# Two commands do all set-up on a fresh machine:
#   make demo   create .venv if missing, install, convert hmr2-vit-s to ONNX, validate it, print the result table
#   make test   same install, then the default test tier (what CI runs; prints the 25 slowest tests)
#   make test-slow  the slow tier: published sizes (see README, "Tests")
PYTHON ?= python3
VENV   ?= .venv
PIP     = $(VENV)/bin/pip
STAMP   = $(VENV)/.installed

.PHONY: demo test test-slow install clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgehmr demo

# One worker per core (pytest-xdist), a test file per worker at a time so module fixtures convert once.
PYTEST  = $(VENV)/bin/python -m pytest -q -p no:cacheprovider --durations=25 -n auto --dist loadfile

test: $(STAMP)
	$(PYTEST) tests

test-slow: $(STAMP)
	$(PYTEST) -m slow tests

clean:
	rm -rf $(VENV) runs build *.egg-info
