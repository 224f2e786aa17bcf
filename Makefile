# dicomvault: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= data
GRPC_PORT ?= 50051

.PHONY: run test bench bench-index proto lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	$(BIN)/dicomvault serve --data $(DATA) --grpc-port $(GRPC_PORT) --ingest-samples

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

bench-index: $(VENV)/.installed
	$(BIN)/python -m dicomvault.tools.bench_index
# Not part of `make test` or CI: generates ~1.5 GB of data on first use (cached),
# runs dicomvault and Orthanc side by side in a private network namespace (root).
bench: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m dicomvault.tools.bench $(BENCH_ARGS)

proto: $(VENV)/.installed-test
	$(BIN)/python -m dicomvault.tools.gen_proto

lint: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/ruff check .
	$(BIN)/mypy archive tiers codecs tools

clean:
	rm -rf $(VENV) $(DATA) build *.egg-info
