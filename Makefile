# Two commands do all set-up on a fresh machine:
#   make demo   create .venv if missing, install, convert hmr2-vit-s to ONNX, validate it, print the result table
#   make test   same install, then the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
PIP     = $(VENV)/bin/pip
STAMP   = $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgehmr demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests

clean:
	rm -rf $(VENV) runs build *.egg-info
