PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: run test test-fast test-postgres lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	@test -f connector.toml || cp connector.example.toml connector.toml
	$(BIN)/hitl-connector serve --config connector.toml

test: $(STAMP_TEST)
	$(BIN)/pytest -q

test-fast: $(STAMP_TEST)
	$(BIN)/pytest -q -m "not slow and not n8n and not browser"

# The app-level tests again, on PostgreSQL (127.0.0.1:5432 or $$TEST_DATABASE_URL).
test-postgres: $(STAMP_TEST)
	$(BIN)/pytest -q --store=postgres -m "not slow and not n8n"

lint: $(STAMP_TEST)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy connector

bench: $(STAMP_TEST)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) var .pytest_cache
