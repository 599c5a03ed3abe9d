# Two commands matter on a fresh machine: `make demo` and `make test`. Both set themselves up.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_ROOT ?= data
DEMO_ROWS ?= 200000
# A fixed seed: the same synthetic market every demo, so its model clears the guardrails every time
# (they refuse some seeds, as they should; `fp refresh run` without --seed derives one from the version).
DEMO_SEED ?= 0
UI_PORT ?= 3000
# The Dagster instance (SQLite) lives inside the project unless DAGSTER_HOME says otherwise.
DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export DAGSTER_HOME
export FP_DATA_ROOT ?= $(abspath $(DATA_ROOT))

.PHONY: install home postgres browser demo ui check-defs test lint bench schema clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(STAMP)

home:
	@mkdir -p $(DAGSTER_HOME)
	@[ -e $(DAGSTER_HOME)/dagster.yaml ] || ln -s $(CURDIR)/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

# The demo signs what it builds (FP_SIGNING_KEY) and promotes only under a trust policy naming that key
# (FP_TRUST_POLICY): a key pair and policy are made once under the Dagster home.
DEMO_KEYS := $(DAGSTER_HOME)/keys
DEMO_SIGNING := FP_SIGNING_KEY=$(DEMO_KEYS)/signing_key.pem FP_TRUST_POLICY=$(DEMO_KEYS)/trust_policy.toml

demo: $(STAMP) home  ## market data → refresh → features → training → promotion → lineage; a definition-driven and a tensor dataset
	$(BIN)/fp market backfill --start $$(date -u -d yesterday +%F)
	@[ -e $(DEMO_KEYS)/signing_key.pem ] || $(BIN)/fp attest keygen --out $(DEMO_KEYS)
	@printf '[[keys]]\nname = "demo"\npublic_key = "signing_key.pub.pem"\nallow = ["dataset", "model"]\n' \
	  > $(DEMO_KEYS)/trust_policy.toml
	export $(DEMO_SIGNING) && version=demo-$$(date -u +%Y%m%dT%H%M%SZ) && \
	$(BIN)/fp refresh run --version $$version --rows $(DEMO_ROWS) --seed $(DEMO_SEED) && \
	$(BIN)/fp features build --version $$version && \
	$(BIN)/fp training run --payload "{\"dataset_version\": \"$$version\", \"auto_promote\": true}" && \
	$(BIN)/fp lineage --model-key market_regime --alias production && \
	$(BIN)/fp dataset export-croissant --path $(FP_DATA_ROOT)/datasets/market_regime-$$version/manifest.json
	$(BIN)/fp warehouse seed --force
	$(BIN)/fp definitions materialize --version demo-$$(date -u +%Y%m%dT%H%M%SZ)
	$(BIN)/fp dataset build --source simulator --format zarr --out-dir $(FP_DATA_ROOT)/tensor_datasets \
	  --dataset-id demo-simulated --samples 5000 --seed 0 --workers 2 --force
	$(BIN)/fp dataset verify --path $(FP_DATA_ROOT)/tensor_datasets/demo-simulated/manifest.json --reproduce 5
	@echo
	@echo "Dagster instance: $(DAGSTER_HOME)   data: $(FP_DATA_ROOT)"
	@echo "Open the UI with 'make ui', then http://127.0.0.1:$(UI_PORT) (Assets > dataset_refresh)."

# `dg` (dagster-dg-cli) supersedes `dagster dev` and `dagster definitions validate`; pyproject's [tool.dg] makes
# `dg dev` / `dg check defs` work when it is installed. Without it the dagster CLI is used and its
# "superseded" notice is silenced (the only warning it prints for this project).
DG := $(wildcard $(BIN)/dg)
SUPERSEDED := PYTHONWARNINGS='ignore:Function `dev_command` is superseded:FutureWarning,ignore:Function `definitions_validate_command` is superseded:FutureWarning'

# exec, and SIGINT/SIGTERM reset to their defaults (a background start inherits SIGINT ignored, and dagster dev
# maps SIGTERM to it): Ctrl-C or SIGTERM reaches dagster dev itself, which stops the webserver and daemon.
WITH_SIGNALS := $(BIN)/python -m feature_platform.orchestration.dev
ui: $(STAMP) home  ## start the Dagster UI and daemon on this project's instance (Ctrl-C stops both)
ifneq ($(DG),)
	exec $(WITH_SIGNALS) $(BIN)/dg dev -h 127.0.0.1 -p $(UI_PORT)
else
	exec env $(SUPERSEDED) $(WITH_SIGNALS) $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(UI_PORT)
endif

check-defs: $(STAMP) home  ## load the Dagster code location and validate it
ifneq ($(DG),)
	$(BIN)/dg check defs
else
	env $(SUPERSEDED) $(BIN)/dagster definitions validate -w workspace.yaml
endif

# The tests start a real PostgreSQL from the machine's binaries: Debian's package when there are none.
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO="sudo -n"; \
	  echo "installing PostgreSQL (Debian package postgresql) for the tests"; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql \
	  || echo "make: could not install PostgreSQL (needs apt-get as root or passwordless sudo)" >&2; }

# The wizard's browser test drives Debian's chromium through chromedriver: installed the same way when missing.
browser:
	@command -v chromedriver >/dev/null 2>&1 && { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } || { \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO="sudo -n"; \
	  echo "installing Debian's chromium and chromium-driver for the browser tests"; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
	  || echo "make: could not install chromium (needs apt-get as root or passwordless sudo)" >&2; }

test: $(STAMP) postgres browser  ## run the whole test suite
	$(BIN)/python -m pytest

lint: $(STAMP)  ## ruff, mypy and the committed JSON Schema
	$(BIN)/ruff check feature_platform tests bench
	$(BIN)/mypy
	$(BIN)/fp contracts schema --check

bench: $(STAMP)  ## benchmarks: dataset build/verify (5M rows), the demo refresh, tensor datasets (100k samples); several minutes
	$(BIN)/python bench/bench_dataset.py
	$(BIN)/python bench/bench_refresh.py
	$(BIN)/python bench/bench_pit.py
	$(BIN)/python bench/bench_tensor.py
	$(BIN)/python bench/bench_definitions.py
	$(BIN)/python bench/bench_training_set.py
	$(BIN)/python bench/bench_api.py --sample-warehouse --get dataset=/api/datasets/purchases_90d/ \
	  --get query=/api/datasets/purchases_90d/query/
	$(BIN)/python bench/bench_sharding.py
	$(BIN)/python bench/bench_pit_distributed.py

schema: $(STAMP)  ## regenerate the committed JSON Schema from the manifest models
	$(BIN)/fp contracts schema --write

clean:
	rm -rf $(VENV) $(DATA_ROOT) .dagster_home .pytest_cache .mypy_cache .ruff_cache .hypothesis
