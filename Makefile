# Two commands for a fresh machine (see README.md):
#   make run    create .venv if needed, then run the workflow on the embedded default and write its HTML report
#   make test   create .venv if needed, then run the test suite
# The environment is rebuilt only when requirements.txt or pyproject.toml change.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test env
env: $(STAMP)

$(STAMP): requirements.txt pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python >= 3.11 is needed (found $$($(PYTHON) --version)); set PYTHON=..."; exit 1; }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt
# clip-benchmark: only its class-name and prompt-template JSON files are used (genview/evaluation/catalog.py);
# --no-deps skips its heavy dependencies (pycocoevalcap alone is ~100 MB).
	$(VENV)/bin/python -m pip install --quiet --no-deps clip-benchmark==1.6.2
	$(VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

run: $(STAMP)
	snakemake --cores all
	snakemake --cores all --report results/report.html

test: $(STAMP)
	python -m pytest
