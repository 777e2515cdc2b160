# `make run` and `make test` bootstrap .venv on first use; nothing else needs installing by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# llama-cpp-python compiles from source on first install (about 10 minutes); pip caches the wheel.
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip install -e '.[test,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tarx

test: $(STAMP)
	$(BIN)/ruff check runtime tarx_console tests bench
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/jobs.py
	$(BIN)/python bench/routing.py
	$(BIN)/python bench/console.py

lint: $(STAMP)
	$(BIN)/ruff check runtime tarx_console tests bench
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info
