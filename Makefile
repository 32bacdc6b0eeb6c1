# The two commands of the README: `make demo` and `make test`. Each installs what it
# needs into .venv on first use. `make test` is also what CI runs (.ci/run): lint, types
# (engine, store, tui, CLI and tests), then the tests, so a green local run means a green CI.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tunelab-installed
PYTEST_ARGS ?=

.PHONY: demo test check pytest test-all lint typecheck format snapshots-update bench

$(STAMP): pyproject.toml scripts/bootstrap.sh
	VENV=$(VENV) ./scripts/bootstrap.sh
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tunelab demo

# `check` is the same command under the name CI tools expect. The stamp comes first, so a
# fresh clone installs before ruff or mypy is looked for.
test check: $(STAMP) lint typecheck pytest

# One torch thread per test process, two processes: on small machines this beats two
# processes fighting over each other's threads. Collecting no test at all (exit 5) means a
# broken selection or conftest, so it fails too, with a line that says so.
pytest: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -n $${PYTEST_WORKERS:-2} --durations=15 $(PYTEST_ARGS); \
	status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

test-all: $(STAMP)
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	./scripts/typecheck.sh

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

snapshots-update: $(STAMP)
	$(PY) -m pytest tests/test_tui_snapshots.py --snapshot-update

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done
