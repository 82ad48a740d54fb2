# `make demo` and `make test` each create or refresh the local virtualenv, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp-install

.PHONY: venv demo test bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(PY) -m bayesgmm demo --out demo_output

test: venv
	$(PY) -m pytest

docs: venv
	$(PY) -m sphinx -W -q -b html docs docs/_build/html
	@echo "API reference: docs/_build/html/index.html"

bench: venv
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) benchmarks/em_vs_sklearn.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache docs/_build docs/generated
