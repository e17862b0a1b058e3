# The two commands in the README are the contract: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv

.PHONY: setup test unit e2e test-postgres demo bench screenshot clean

# The store's own tests and those closest to it (the durable queue, the fan-out, timers, the
# batched registration at start, the SIGKILL restart, a SIGTERM mid quick build), again with
# the store on PostgreSQL: about a minute and a half on 2 cores. The whole suite on PostgreSQL is `make test-postgres`
# (README: --store=postgres).
POSTGRES_TESTS := tests/unit/store tests/unit/triggers tests/unit/test_digest_watch.py \
	tests/unit/test_retention.py tests/unit/test_run_steps_record.py tests/unit/test_tasks.py \
	tests/unit/test_git_poll.py tests/unit/test_registration_batches.py \
	tests/e2e/test_restart.py tests/e2e/test_postgres_store.py tests/e2e/test_shared_logs.py \
	tests/unit/test_run_log_copy.py \
	tests/security/test_runs.py::test_sigterm_during_a_quick_build_keeps_its_upload_for_the_rerun

setup:
	@command -v $(PYTHON) >/dev/null || (apt-get update -qq && apt-get install -y -qq python3 python3-venv)
	$(PYTHON) scripts/stack.py install --venv $(VENV)

# Two workers: most of an end-to-end test is waiting on an engine, a registry or a daemon, so
# the suite takes about 60% of its one-worker time on two cores. Each worker starts its own
# engine; the slowest tests are listed at the end.
test: setup
	$(VENV)/bin/pytest -n 2 --dist loadgroup --durations=15
	$(VENV)/bin/pytest -n 2 --dist loadgroup --store=postgres $(POSTGRES_TESTS)

test-postgres: setup
	$(VENV)/bin/pytest -n 2 --dist loadgroup --store=postgres

unit: setup
	$(VENV)/bin/pytest tests/unit

e2e: setup
	$(VENV)/bin/pytest tests/e2e

demo: setup
	$(VENV)/bin/python scripts/demo.py

# docs/dashboard.png: the dashboard in the middle of a cascade, on a real daemon and engine.
screenshot: setup
	$(VENV)/bin/python scripts/screenshot.py

bench: setup
	$(VENV)/bin/python bench/poll.py
	$(VENV)/bin/python bench/latency.py
	$(VENV)/bin/python bench/fanout.py
	$(VENV)/bin/python bench/build_overhead.py
	$(VENV)/bin/python bench/source_latency.py
	$(VENV)/bin/python bench/steps.py
	$(VENV)/bin/python bench/startup.py
	$(VENV)/bin/python bench/scale.py

clean:
	$(PYTHON) scripts/stack.py down
	rm -rf .stack .basewatch
