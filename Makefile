# Two commands do all the set-up on a fresh machine:
#   make serve   start the server on SQLite (data in $KELPIE_DATA_DIR, default ~/.kelpie)
#   make test    install what the tests need, then run lint, types, layers and the whole suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: serve test check bench sim-sweep clean

$(STAMP): pyproject.toml scripts/bootstrap
	PYTHON=$(PYTHON) scripts/bootstrap
	touch $(STAMP)

serve: $(STAMP)
	@$(BIN)/python -m compileall -q src >/dev/null
	$(BIN)/kelpie serve $(ARGS)

check: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: check
	$(BIN)/pytest -n 2 $(ARGS)

bench: $(STAMP)
	$(BIN)/python bench/bench_api.py $(ARGS)

clean:
	rm -rf $(VENV)
