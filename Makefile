# The whole set-up is two commands: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
# The kernel the runbooks name in their metadata (tests/test_lab.py keeps the two in step).
KERNEL_NAME := python3
KERNEL_DISPLAY := Python 3 (ccops)
LAB_PORT ?= 8888
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install git-filter demo test test-airflow lab bench lint style clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL_NAME) --display-name "$(KERNEL_DISPLAY)"
	$(MAKE) --no-print-directory git-filter
	touch $(STAMP)

# Runbooks stay clean in git: nbstripout strips outputs, execution counts and run metadata on
# `git add`, so saving a worked runbook in JupyterLab leaves `git status` clean. Cell ids are
# kept (they are the stored ones); language_info (the Python version) and papermill's timings are not.
# git runs nbstripout through ccops.runbook.gitfilter: the same filter without a 1.2 s import.
NBSTRIPOUT_EXTRA_KEYS := metadata.language_info metadata.papermill cell.metadata.papermill
git-filter:
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  $(BIN)/python -m ccops.runbook.gitfilter --install --attributes .gitattributes && \
	  git config filter.nbstripout.clean '"$(abspath $(BIN))/python" -m ccops.runbook.gitfilter --keep-id' && \
	  git config filter.nbstripout.extrakeys '$(NBSTRIPOUT_EXTRA_KEYS)' && \
	  git config diff.ipynb.textconv '"$(abspath $(BIN))/python" -m ccops.runbook.gitfilter --keep-id -t'; \
	else echo "not a git checkout: no nbstripout filter installed"; fi

# The demo's findings (an error burst, a stopped agent, a day without content) make the
# daily report CRITICAL on purpose: exit codes 1 and 2 are reports, 3 and up are failures.
demo: install
	$(BIN)/ccops demo up --yes
	$(BIN)/ccops backup
	$(BIN)/ccops run health_check; test $$? -le 2
	$(BIN)/ccops run daily; test $$? -le 2
	@echo "Reports: outputs/index.html"

# Test by test on one worker more than the machine has cores; a file whose tests share a module-scoped
# fixture stays on one worker (tests/conftest.py marks it as an xdist group). The extra worker fills the
# time the others wait on their subprocesses (kernel and server starts, timeouts): the suite took 386 s
# with 2 workers against 343 s with 3. With 3 the whole machine is busy: /proc/stat counted 653 CPU-s
# over 346 s, 94 % of 2 cores (`time`'s user+sys shows less, about 77 %: it misses the PostgreSQL
# servers, which run detached), and a 4th worker gained nothing (361 s in the same hour).
# mypy runs beside the suite, not before it: on a fresh clone (no .mypy_cache, as in CI) it takes ~17 s
# of one core on the critical path; beside the suite it fills the idle left (cold make test: 334 s against
# 370 s). Its report follows the suite's; either failing fails `make test`; an interrupted run stops mypy
# too (a shell's background job ignores Ctrl-C). ruff and import-linter (under a second together) go first.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
test: style
	@types=$$(mktemp); \
	$(BIN)/mypy > "$$types" 2>&1 & mypy_pid=$$!; \
	trap 'kill $$mypy_pid 2>/dev/null; rm -f "$$types"; exit 130' INT TERM; \
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadgroup; suite=$$?; \
	wait $$mypy_pid; typed=$$?; trap - INT TERM; \
	echo "mypy (run beside the suite):"; cat "$$types"; rm -f "$$types"; \
	test $$suite -eq 0 && test $$typed -eq 0

# The schedule on Apache Airflow (docs/airflow.md): Airflow in a virtualenv of its own, pinned, from PyPI
# without a constraints file; its home and sqlite database in a temporary folder. tests/airflow/ exports the
# demo's DAGs, loads them and runs `airflow dags test` against the demo. Not part of `make test`.
AIRFLOW_VERSION := 3.3.2
AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed-$(AIRFLOW_VERSION)

$(AIRFLOW_STAMP):
	rm -rf $(AIRFLOW_VENV)
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install --quiet apache-airflow==$(AIRFLOW_VERSION)
	touch $@

test-airflow: install $(AIRFLOW_STAMP)
	CCOPS_AIRFLOW_BIN="$(abspath $(AIRFLOW_VENV))/bin/airflow" $(BIN)/pytest -q tests/airflow

# JupyterLab on this machine only (127.0.0.1); as root (the README's container) with --allow-root.
# Jupyter prints the URL with its token; open it, or tunnel the port (ssh -L $(LAB_PORT):127.0.0.1:$(LAB_PORT)).
lab: install
	@echo "JupyterLab on http://127.0.0.1:$(LAB_PORT)/lab - open the URL with ?token=... printed below"
	$(BIN)/jupyter lab --no-browser --ip=127.0.0.1 --port=$(LAB_PORT) --ServerApp.root_dir=runbooks \
	  --ContentsManager.pre_save_hook=ccops.runbook.lab.pre_save_hook $(if $(filter 0,$(shell id -u)),--allow-root)

bench: install
	$(BIN)/python -m benchmarks

# lint: style (ruff), the layer contracts of docs/architecture.md (import-linter) and types (mypy);
# `make test` runs the same three, mypy beside the suite.
lint: style
	$(BIN)/mypy

style: install
	$(BIN)/ruff check ccops tests benchmarks runbooks
	$(BIN)/lint-imports --no-cache

clean:
	-$(BIN)/ccops demo down --yes
	rm -rf $(VENV) .ccops outputs/*/ outputs/index.*
