# The two commands a fresh machine needs: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Most tests wait on loopback I/O (sandbox vendors, subprocesses): 3 workers on 2 cores halve the wall time.
TEST_WORKERS ?= 3

.PHONY: run test test-random bench chaos lint install clean postgres browser

# `make run` installs the server ($(SERVER_STAMP): the package with its `server` extra); `make test`
# (and install) add the test extra. `pip install .` alone gives the SDK and the client CLI only.
SERVER_STAMP := $(VENV)/.installed-server

$(SERVER_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[server]'
	touch $(SERVER_STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[server,test]'
	touch $(STAMP) $(SERVER_STAMP)

install: $(STAMP)

run: $(SERVER_STAMP)
	$(BIN)/gpusupply serve $(ARGS)

test: $(STAMP) postgres browser
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -p no:randomly $(PYTEST_ARGS)

# The same suite in a seeded random order, to catch tests that depend on another's leftovers.
# The seed is printed first; repeat an order with `make test-random SEED=N`.
ifndef SEED
SEED := $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
endif
test-random: $(STAMP) postgres browser
	@echo "random order seed: $(SEED) (repeat: make test-random SEED=$(SEED))"
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -p randomly --randomly-seed=$(SEED) $(PYTEST_ARGS)

# The PostgreSQL tests start a throwaway server from the machine's binaries; on a fresh Debian
# machine (CI, as root) install them when missing.
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing PostgreSQL for the tests"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql; \
	  else \
	    echo "PostgreSQL binaries not found: the postgres tests will be skipped (they fail under CI)"; \
	  fi; \
	fi

browser:
	@bash scripts/ensure-browser.sh

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

chaos: $(STAMP)
	$(BIN)/python -m tests.chaos.soak --full $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/lint-imports
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
