# Every target creates or reuses .venv, so a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: venv demo run test lint bench mutation clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "clusterfed needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m app.demo

run: $(STAMP)
	$(VENV)/bin/clusterfed serve

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) -m bench

# Mutation testing of the trust core (not in CI: slow). What is mutated and which tests
# judge it: MODULES and TESTS in tools/mutation.py. `make mutation MUTATE="tokens cache"`
# runs only those modules.
MUTATE ?=
mutation: $(STAMP)
	$(PY) tools/mutation.py $(MUTATE)

clean:
	rm -rf $(VENV) var .pytest_cache
