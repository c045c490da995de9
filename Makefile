# Greenhouse: `make run` for a demo, `make test` for every test. See README.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# PostgreSQL used by the second half of `make test` (skipped with a reason when unreachable).
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test

# PostgreSQL used by `make bench-flush` (only rows it creates are touched, then deleted).
BENCH_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/bench
# PostgreSQL database of `make bench-pages` (its own: re-seeding drops and re-creates it).
BENCH_PAGES_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/bench_pages

.PHONY: setup run migrate test test-sqlite test-postgres lint clean bench bench-fanin bench-storm bench-burst bench-flush bench-pages bench-mqtt

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

setup: $(VENV)/.installed node_modules/.installed

# DEBUG is off by default, so a SECRET_KEY is required: the demo gets a random one in .env (not in git).
.env:
	@$(PYTHON) -c "import secrets; print('SECRET_KEY=' + secrets.token_urlsafe(50))" > .env
	@echo "Wrote a random SECRET_KEY to .env"

migrate: setup .env
	$(PY) manage.py migrate --no-input

run: migrate
	$(PY) manage.py ensure_demo_user
	@echo "Collector on port 5555 with 5 simulated boards; web UI on http://127.0.0.1:8000/"
	@echo "Log in as grower / greenhouse. Ctrl-C stops everything."
	COLLECTOR_STATS_INTERVAL=15 $(VENV)/bin/supervisord -c deploy/demo.conf

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

test: lint test-sqlite test-postgres

# Two pytest workers (pytest-xdist), one per core; a test module runs whole on one worker, so the
# tests of one file (e.g. the two supervisord tests) never overlap. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(PYTEST_WORKERS) --dist loadfile

test-sqlite: setup
	env -u DATABASE_URL $(VENV)/bin/pytest -m "not postgres" $(PYTEST_PARALLEL)

# Only the tests that use the database: the plain-Python ones ran in the SQLite pass.
test-postgres: setup
	DATABASE_URL=$(TEST_POSTGRES_URL) $(VENV)/bin/pytest --database-tests-only $(PYTEST_PARALLEL)

# Benchmarks (docs/benchmarks.md): each starts the real `manage.py collect` on a throwaway SQLite
# database and prints one PASS/FAIL summary line per figure. `make bench` runs them all (~6 min) and goes on
# past a FAIL; `make bench-X` exits non-zero on a FAIL.
bench: setup
	-$(PY) bench/storm.py
	-env -u DATABASE_URL $(PY) bench/flush.py
	-DATABASE_URL=$(BENCH_POSTGRES_URL) $(PY) bench/flush.py
	-$(PY) bench/burst.py
	-$(PY) bench/burst.py --boards 10000 --no-bare
	-$(PY) bench/burst.py --collectors 2 --no-bare
	-$(PY) bench/burst.py --collectors 2 --boards 10000 --no-bare
	-$(PY) bench/fanin.py
	-$(PY) bench/mqtt.py

bench-fanin: setup
	$(PY) bench/fanin.py

# MQTT ingest against a bare paho subscriber on a Mosquitto of its own (needs mosquitto and mosquitto-clients).
bench-mqtt: setup
	$(PY) bench/mqtt.py

bench-storm: setup
	$(PY) bench/storm.py

# One collector with 8 boards (the issue's figure), then two collectors sharing the port (--reuse-port);
# one collector with 10,000 boards over 8 connections falls short (docs/benchmarks.md) and is only in `make bench`.
bench-burst: setup
	$(PY) bench/burst.py
	$(PY) bench/burst.py --collectors 2 --no-bare
	$(PY) bench/burst.py --collectors 2 --boards 10000 --no-bare

bench-flush: setup
	env -u DATABASE_URL $(PY) bench/flush.py
	DATABASE_URL=$(BENCH_POSTGRES_URL) $(PY) bench/flush.py

# The pages a grower opens, through gunicorn, on a month-old database of 200 sensors: seeded once
# (var/bench-pages.sqlite3, ~4 GB; PostgreSQL bench_pages), then reused and brought up to now.
bench-pages: setup
	env -u DATABASE_URL $(PY) bench/pages.py --reuse
	DATABASE_URL=$(BENCH_PAGES_POSTGRES_URL) $(PY) bench/pages.py --reuse

clean:
	rm -rf $(VENV) var/*.sqlite3* .pytest_cache
