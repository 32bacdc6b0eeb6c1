# The two commands of the README: `make demo` and `make test`. Each installs what it
# needs into .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tunelab-installed
PYTEST_ARGS ?=

.PHONY: demo test test-all check lint typecheck format snapshots-update bench

$(STAMP): pyproject.toml scripts/bootstrap.sh
	VENV=$(VENV) ./scripts/bootstrap.sh
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tunelab demo

# One torch thread per test process, two processes: on small machines this beats two
# processes fighting over each other's threads.
test: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -n $${PYTEST_WORKERS:-2} $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	./scripts/typecheck.sh

check: lint typecheck test

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

snapshots-update: $(STAMP)
	$(PY) -m pytest tests/test_tui_snapshots.py --snapshot-update

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done
