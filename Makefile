# The README's two set-up commands: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Airflow lives in its own venv (the `airflow` extra): never in the base install.
AIRFLOW_VENV := .venv-airflow
AIRFLOW_PY := $(AIRFLOW_VENV)/bin/python
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed-stamp

.PHONY: install install-airflow demo demo-migrate test test-airflow test-fast bench clean

install: $(STAMP)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install-airflow: $(AIRFLOW_STAMP)

$(AIRFLOW_STAMP): setup.py
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_PY) -m pip install --quiet --upgrade pip
	$(AIRFLOW_PY) -m pip install --quiet -e '.[airflow,dev]'
	touch $(AIRFLOW_STAMP)

demo: install
	$(PY) scripts/demo.py

demo-migrate: install
	$(PY) scripts/demo_migrate.py

# The base suite and the Airflow DAG tests run side by side (the DAG tests mostly wait on
# Airflow's start-up and the trigger's polls); the Airflow log is printed after the base
# suite's, and either failing fails `make test`.
test: install install-airflow
	@$(AIRFLOW_TEST) > $(AIRFLOW_VENV)/test-airflow.log 2>&1 & airflow=$$!; \
	$(PY) -m pytest -q; base=$$?; \
	wait $$airflow; af=$$?; \
	echo "== make test-airflow: tests/airflow_provider (exit $$af) =="; \
	cat $(AIRFLOW_VENV)/test-airflow.log; \
	test $$base -eq 0 && test $$af -eq 0

# The Airflow operators and shipped DAGs, run with `airflow dags test` (tests/airflow_provider/).
# A private --basetemp: the session keeps an Airflow home (SQLite) for minutes, and pytest
# runs of other checkouts on the same machine prune the shared /tmp/pytest-of-<user>.
AIRFLOW_TEST = $(AIRFLOW_PY) -m pytest -q --basetemp=$(AIRFLOW_VENV)/pytest-tmp tests/airflow_provider

test-airflow: install-airflow
	$(AIRFLOW_TEST)

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) scripts/bench_all.py --out bench-results.json

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) demo-out *.egg-info
