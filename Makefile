# Two commands do all set-up on a fresh machine:
#   make demo   create .venv if missing, install the core (PyTorch, ONNX Runtime), convert hmr2-vit-s to ONNX,
#               validate it, print the result table, where the files went and the next commands
#   make test   install everything the tests use (every runtime, test tools), then the default test tier (what CI
#               runs; prints the 25 slowest tests)
#   make test-slow  the slow tier: published sizes (see README, "Tests")
# Other runtimes install on demand: 'edgehmr doctor' prints the command for each.
PYTHON ?= python3
VENV   ?= .venv
PIP     = $(VENV)/bin/pip
CORE    = $(VENV)/.installed-core
DEV     = $(VENV)/.installed-dev

.PHONY: demo test test-slow install clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# pip's own lines are the progress: what it collects, downloads and installs.
$(CORE): pyproject.toml | $(VENV)/bin/python
	@echo "== installing edgehmr and its core runtime (PyTorch, ONNX Runtime) into $(VENV) (a minute or two)"
	$(PIP) install --disable-pip-version-check -e .
	touch $@

$(DEV): pyproject.toml | $(VENV)/bin/python
	@echo "== installing edgehmr with every runtime the tests use (OpenVINO, ExecuTorch, coremltools) and the test tools into $(VENV) (several minutes)"
	$(PIP) install --disable-pip-version-check -e '.[dev]'
	touch $@ $(CORE)

install: $(DEV)

demo: $(CORE)
	$(VENV)/bin/edgehmr demo
	@echo "(the commands above run in the virtual environment: source $(VENV)/bin/activate, or prefix them with $(VENV)/bin/)"

# One worker per core (pytest-xdist), a test file per worker at a time so module fixtures convert once.
PYTEST  = $(VENV)/bin/python -m pytest -q -p no:cacheprovider --durations=25 -n auto --dist loadfile

test: $(DEV)
	$(PYTEST) tests

test-slow: $(DEV)
	$(PYTEST) -m slow tests

clean:
	rm -rf $(VENV) runs build *.egg-info
