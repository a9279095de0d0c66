# Two commands do all the set-up on a fresh machine:
#   make serve   start the server on SQLite (data in $KELPIE_DATA_DIR, default ~/.kelpie)
#   make test    install what the tests need, then run lint, types, layers and the whole suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: serve test check bench fuzz sim-sweep clean

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

# The whole suite on SQLite, then the API suite again with every server on PostgreSQL (the
# storage conformance suite and the kill test run both backends in the first pass).
test: check
	$(BIN)/pytest -n 2 $(ARGS)
	KELPIE_TEST_BACKEND=postgres $(BIN)/pytest -n 2 tests/api $(ARGS)

# The long OpenAPI fuzz (the suite runs a short, deterministic one): 100 cases per
# operation per phase, random under a seed; pass another with FUZZ_SEED=N.
FUZZ_SEED ?= 1
fuzz: $(STAMP)
	KELPIE_FUZZ_EXAMPLES=100 KELPIE_FUZZ_SEED=$(FUZZ_SEED) $(BIN)/pytest --timeout=1800 \
		tests/api/test_openapi_fuzz.py $(ARGS)

bench: $(STAMP)
	$(BIN)/python bench/bench_api.py $(ARGS)

clean:
	rm -rf $(VENV)
