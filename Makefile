# Two commands for a fresh machine (see README.md):
#   make run    create .venv if needed, then run the workflow on the embedded default and write its HTML report
#               (make run CONFIG=config/smoke.yaml: another config file, as given to --configfile)
#   make study  the ablation study (config/study.yaml, about 45-60 minutes on 2 cores): results/study_report.html
#   make test   create .venv if needed, then run the test suite
# The environment is rebuilt only when requirements*.txt, pyproject.toml or this Makefile change.

PYTHON ?= python3
CONFIG ?= config/config.yaml
REPORT ?= results/report.html
VENV := .venv
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run study test env
env: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python >= 3.11 is needed (found $$($(PYTHON) --version)); set PYTHON=..."; exit 1; }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt
	$(VENV)/bin/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# The config is checked first: a missing file or a YAML error is named with its line, where Snakemake would print a
# traceback or a message that names no file.
# flock: one `make run` per checkout at a time (held by the flock process only, -o: the jobs do not inherit it, so it
# ends with the run). Holding it, a Snakemake lock left in .snakemake/locks is removed only when no Snakemake process
# works in this checkout (a plain `snakemake` started by hand holds a live one): then it is stale, from a run that was
# killed, and the profile reruns the jobs the kill left incomplete.
run: $(STAMP)
	@mkdir -p .snakemake
	@flock --close --timeout 10 --conflict-exit-code 75 .snakemake/make-run.lock sh -c \
		'python -m genview config check $(CONFIG) > /dev/null && python -m genview.runtime.processes live-snakemake \
		 && snakemake --unlock --cores 1 > /dev/null && snakemake --cores all --configfile $(CONFIG) \
		 && snakemake --cores all --configfile $(CONFIG) --report $(REPORT)' \
		|| { code=$$?; [ $$code -ne 75 ] || echo "make run: another make run is using this checkout"; exit $$code; }

study:
	$(MAKE) run CONFIG=config/study.yaml REPORT=results/study_report.html

# The suite in two pytest runs, both always run (docs/development.md):
# 1. every test but the end-to-end runs, over one worker process per CPU (pytest-xdist, a test file at a time), each
#    worker's torch on one thread: with a thread per core in every worker, their thread pools wait on each other;
# 2. the end-to-end runs (marked workflow and slow) one at a time: their Snakemake jobs set their own thread counts
#    and use every core already.
test: $(STAMP)
	OMP_NUM_THREADS=1 python -m pytest -m "not (workflow and slow)" --numprocesses logical --dist loadfile; \
		spread=$$?; python -m pytest -m "workflow and slow"; alone=$$?; [ $$spread -eq 0 ] && [ $$alone -eq 0 ]
