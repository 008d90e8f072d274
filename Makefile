# Waybill: `make run` brings the stack up, `make test` runs the whole suite. Both install what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WAYBILL := $(VENV)/bin/waybill
STAMP := $(VENV)/.installed

.PHONY: run test deps lint explain bench bench-outbox bench-http load clean migration crash-soak

# Debian's python3 lacks ensurepip until python3-venv is installed: as root, install it and retry.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    rm -rf $(VENV) && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv \
	    && $(PYTHON) -m venv $(VENV); \
	  else echo "python3 -m venv failed: run 'apt-get install python3-venv' as root" >&2; exit 1; fi; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

deps: $(STAMP)

run: deps
	$(WAYBILL) run

test: deps
	$(VENV)/bin/ruff check .
	$(WAYBILL) test

# The dispatcher's crash scenarios (tests/dispatcher/test_crash.py) CRASH_TRIALS times each (default 300;
# `make test` runs 20-50 per scenario): a soak of several minutes; a failure names its trial.
CRASH_TRIALS ?= 300
crash-soak: deps
	WAYBILL_CRASH_TRIALS=$(CRASH_TRIALS) $(WAYBILL) test tests/dispatcher/test_crash.py

# Lifecycle throughput vs bare-insert baseline at 1/8/32 clients (bench/README.md); BENCH_ARGS passes options.
# Then the webhook outbox's cost: the same lifecycles with the outbox on/off and two NOTIFY designs.
bench: deps
	$(PY) -m bench.lifecycle $(BENCH_ARGS)
	$(PY) -m bench.outbox $(OUTBOX_ARGS)

# Only the outbox comparison (bench/outbox.py); OUTBOX_ARGS passes options (--help lists them).
bench-outbox: deps
	$(PY) -m bench.outbox $(OUTBOX_ARGS)

# HTTP API throughput: gateway vs the same SQL direct vs a no-op app, 1/16/64 clients (bench/README.md).
bench-http: deps
	$(PY) -m bench.http $(BENCH_ARGS)

# Load, soak and chaos over HTTP (bench/load/README.md): locust scenarios, the knee, faults, and the
# report in bench/results/<UTC date>/report.md (~20 min on 2 cores). LOAD_ARGS passes options (--help).
load: deps
	$(PY) -m bench.load $(LOAD_ARGS)

# The EXPLAIN suite (docs/indexes.md): a throw-away cluster, 200,000 orders, every key query's plan
# checked and timed with and without its index. Options: make explain EXPLAIN_ARGS='--help'.
explain: deps
	$(PY) explain/suite.py $(EXPLAIN_ARGS)

# The next numbered migration + its rollback, depending on the newest one: make migration NAME=add_widgets
migration: deps
	@test -n "$(NAME)" || { echo "usage: make migration NAME=short_name" >&2; exit 2; }
	$(WAYBILL) new-migration '$(NAME)'

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache build
