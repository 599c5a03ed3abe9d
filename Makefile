# Two commands matter on a fresh machine: `make demo` and `make test`. Both set themselves up.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_ROOT ?= data
DEMO_ID ?= demo_ds
DEMO_ROWS ?= 200000

.PHONY: install demo test lint bench schema clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(STAMP)

demo: $(STAMP)  ## build, verify and publish a synthetic dataset on embedded defaults
	$(BIN)/fp dataset build --out-dir $(DATA_ROOT)/datasets --dataset-id $(DEMO_ID) --source synthetic \
		--rows $(DEMO_ROWS) --seed 42 --force -v
	$(BIN)/fp dataset verify --path $(DATA_ROOT)/datasets/$(DEMO_ID)/manifest.json --base-dir $(DATA_ROOT)/datasets -v
	@echo
	@echo "Results: $(abspath $(DATA_ROOT))/datasets/$(DEMO_ID)/ (data.parquet + manifest.json)"

test: $(STAMP)  ## run the whole test suite
	$(BIN)/python -m pytest

lint: $(STAMP)  ## ruff, mypy and the committed JSON Schema
	$(BIN)/ruff check feature_platform tests bench
	$(BIN)/mypy
	$(BIN)/fp contracts schema --check

bench: $(STAMP)  ## build/verify benchmark: 5M rows x 32 float32 features (several minutes)
	$(BIN)/python bench/bench_dataset.py

schema: $(STAMP)  ## regenerate the committed JSON Schema from the manifest models
	$(BIN)/fp contracts schema --write

clean:
	rm -rf $(VENV) $(DATA_ROOT) .pytest_cache .mypy_cache .ruff_cache .hypothesis
