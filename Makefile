# Every target creates or reuses .venv, so a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Test processes running side by side (pytest-xdist), each given whole files: the suite
# mostly waits on the servers it starts, so two keep a 2-core machine busy. JOBS=0 runs
# in this process only (for a debugger or -x).
JOBS ?= 2
XDIST := $(if $(filter 0,$(JOBS)),-p no:xdist,-n $(JOBS) --dist loadfile)

.PHONY: venv demo run test test-fast example lint docs bench mutation clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "clusterfed needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# On every editable install of a package whose source folder is not named after it,
	@# setuptools prints that same-named folders may shadow it: a notice, not a fault
	@# (this repository has no folder named clusterfed).
	PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

run: $(STAMP)
	$(VENV)/bin/clusterfed serve

# Every test, on SQLite and PostgreSQL: what CI runs. The suite starts hundreds of
# interpreters (clusterfed serve, the CLI); compiling the package once first spares each
# of them compiling it again where bytecode is not written (PYTHONDONTWRITEBYTECODE).
test: $(STAMP)
	$(PY) -m compileall -q app/clusterfed
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

# The loop to run while editing: the in-process tests on SQLite. Not the tests that start
# other processes (clusterfed serve, the CLI, pip) or a browser (marked `server`), nor
# the PostgreSQL half of the two-backend tests (marked `postgres`); `make test` runs all.
test-fast: $(STAMP)
	$(PY) -m pytest $(XDIST) -m "not server and not postgres" $(PYTEST_ARGS)

# The example host (examples/minimal_host, package `app`) against clusterfed installed
# from a freshly built wheel in a fresh virtualenv: what a host's author gets.
EXAMPLE := var/example
example:
	rm -rf $(EXAMPLE) && mkdir -p $(EXAMPLE)
	$(PYTHON) -m venv $(EXAMPLE)/venv
	$(EXAMPLE)/venv/bin/python -m pip install --quiet --upgrade pip
	$(EXAMPLE)/venv/bin/python -m pip wheel --quiet --no-deps -w $(EXAMPLE)/dist .
	$(EXAMPLE)/venv/bin/python -m pip install --quiet "$$(ls $(EXAMPLE)/dist/clusterfed-*.whl)[server]" pytest
	cd examples/minimal_host && ../../$(EXAMPLE)/venv/bin/python -m pytest -q -p no:cacheprovider tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The documentation site (mkdocs.yml, docs/), built into var/site; --strict fails on a
# broken link or a page missing from the nav.
docs: $(STAMP)
	$(PY) -m pip install --quiet -r docs/requirements.txt
	$(VENV)/bin/mkdocs build --strict --quiet --site-dir var/site

# bench.blackbox drives real servers with wrk (Debian's package), installed when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update && $(SUDO) apt-get install -y wrk; }
	$(PY) -m bench

# Mutation testing of the trust core (not in CI: slow). What is mutated and which tests
# judge it: MODULES and TESTS in tools/mutation.py. `make mutation MUTATE="tokens cache"`
# runs only those modules.
MUTATE ?=
mutation: $(STAMP)
	$(PY) tools/mutation.py $(MUTATE)

clean:
	rm -rf $(VENV) var .pytest_cache
