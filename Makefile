# The two commands of the README's quick start, plus a few conveniences.
#   make run    install (venv) and run the whole monthly job on the embedded defaults, offline
#   make test   install (venv, test services: chromium, Swift, buildah) and run every test
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test test-fast lint install services bench clean

$(BIN)/rotation: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/rotation

run: install
	$(BIN)/rotation run

services:
	bash scripts/test_services.sh

lint: install
	$(BIN)/ruff check job tests bench
	bash scripts/lint_deploy.sh

# pytest's exit code 5 (no test collected) is a failure too.
test: install services lint
	$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi; exit $$rc

test-fast: install
	$(BIN)/pytest -m "not slow and not container and not swift and not browser" $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench.run_all

clean:
	rm -rf artifacts data .pytest_cache .ruff_cache
