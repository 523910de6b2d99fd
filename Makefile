# The whole set-up is two commands: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lab bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ccops)"
	touch $(STAMP)

# The demo's findings (an error burst, a stopped agent, a day without content) make the
# daily report CRITICAL on purpose: exit codes 1 and 2 are reports, 3 and up are failures.
demo: install
	$(BIN)/ccops demo up --yes
	$(BIN)/ccops backup
	$(BIN)/ccops run health_check; test $$? -le 2
	$(BIN)/ccops run daily; test $$? -le 2
	@echo "Reports: outputs/index.html"

test: install
	$(BIN)/ruff check ccops tests benchmarks
	$(BIN)/pytest -q

lab: install
	$(BIN)/jupyter lab runbooks/

bench: install
	$(BIN)/python -m benchmarks

lint: install
	$(BIN)/ruff check ccops tests benchmarks

clean:
	-$(BIN)/ccops demo down --yes
	rm -rf $(VENV) .ccops outputs/*/ outputs/index.*
