# The two commands a newcomer needs: `make run` (the demo) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
SIM_CHARGERS ?= 5

.PHONY: run test lint bench install install-test migrate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

migrate: install
	$(BIN)/python manage.py migrate --noinput

run: migrate
	$(BIN)/python manage.py seed_demo --chargers $(SIM_CHARGERS)
	@echo ""
	@echo "  Dashboard:  http://$(HOST):$(PORT)/   login: admin / cpms-demo-admin"
	@echo "  Admin:      http://$(HOST):$(PORT)/admin/   same login"
	@echo "  OCPP:       ws://$(HOST):$(PORT)/ocpp/<charger_id>   subprotocol ocpp1.6, ocpp2.0.1 or ocpp2.1, HTTP Basic <charger_id>:<password>"
	@echo "  Demo fleet: DEMO-001..DEMO-$$(printf %03d $(SIM_CHARGERS)), password demo-charger-secret"
	@echo ""
	$(BIN)/python -m cpms.demo --host $(HOST) --port $(PORT) --chargers $(SIM_CHARGERS)

test: install-test
	$(BIN)/python -m pytest

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

# The benchmark: every scenario against the baseline and the full stack, side by side.
# `make bench BENCH="s2 s4 --quick"`; DATABASE_URL/REDIS_URL pick PostgreSQL and Redis.
BENCH ?= all
bench: install-test
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) var/*.sqlite3* var/staticfiles
