# `make demo` and `make test` each create or refresh the local virtualenv, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp-install

.PHONY: venv demo test bench clean

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

bench: venv
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) benchmarks/em_vs_sklearn.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache
