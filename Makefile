# One entry point for everything: `make run` starts a coordinator, `make test` runs the suite.
# Each target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTO_OUT := sdk
NODE_EXAMPLES := examples/node
# The Node examples' tests and buf need Node.js; say so plainly when it is missing.
NEED_NODE = @command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || \
	{ echo "make $@: node and npm (Node.js 20 or later) must be on PATH" >&2; exit 1; }

.PHONY: run test reliability lint bench proto proto-check proto-lint node-deps install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start a coordinator: DATABASE_URL (or ARGS="--database-url ...") selects Postgres;
## without one it runs on an embedded Postgres kept in .durable/pgdata.
run: $(STAMP)
	$(PY) -m coordinator $(ARGS)

## Run the whole test suite (embedded Postgres unless DATABASE_URL is set).
test: $(STAMP) node-deps
	$(PY) -m pytest $(PYTEST_ARGS)

## The reliability suite at full scale (README "Reliability suite"): coordinator, worker and
## database faults, replica failover, fuzzed input and load; prints a report of its figures
## and writes reliability-report.json. `make test` runs it at CI scale.
reliability: $(STAMP)
	DURABLE_RELIABILITY=full $(PY) -m pytest tests/reliability tests/test_fuzz.py $(PYTEST_ARGS)

## Install the Node examples' dependencies (tests/test_node_client.py runs them).
node-deps: $(NODE_EXAMPLES)/node_modules

$(NODE_EXAMPLES)/node_modules: $(NODE_EXAMPLES)/package.json $(NODE_EXAMPLES)/package-lock.json
	$(NEED_NODE)
	npm ci --prefix $(NODE_EXAMPLES) --no-audit --no-fund
	touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## Serve the web dashboard (docs/dashboard.md) on http://127.0.0.1:8233 for the coordinator
## at $DURABLE_COORDINATOR (default 127.0.0.1:50051); ARGS="--port 9000 --open" etc.
.PHONY: ui
ui: $(STAMP)
	$(PY) -m durable.ui $(ARGS)

## Benchmark against DBOS 3.4.0 side by side (bench/README.md); ARGS="--quick" etc.
## DBOS goes into its own venv, bench/.venv-dbos; if that install fails, the DBOS column
## is skipped.
DBOS_VENV := bench/.venv-dbos
bench: $(STAMP)
	@test -x $(DBOS_VENV)/bin/python && $(DBOS_VENV)/bin/pip show -q dbos 2>/dev/null || \
		{ $(PYTHON) -m venv $(DBOS_VENV) && $(DBOS_VENV)/bin/pip install --quiet dbos==3.4.0; } || \
		echo "make bench: could not install dbos==3.4.0 into $(DBOS_VENV)" >&2
	$(PY) -m bench.run $(ARGS)

## Regenerate the gRPC stubs (with type stubs) from protos/.
proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iprotos \
		--plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy \
		--plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc \
		--python_out=$(PROTO_OUT) --mypy_out=$(PROTO_OUT) \
		--grpc_python_out=$(PROTO_OUT) --mypy_grpc_out=$(PROTO_OUT) \
		protos/durable/v1/*.proto

## Fail when the checked-in stubs differ from what `make proto` generates.
proto-check: proto
	git diff --exit-code -- $(PROTO_OUT)/durable/v1 || \
		(echo "generated stubs are stale: run 'make proto' and commit" >&2; exit 1)

## Lint the .proto files with buf (protos/buf.yaml; buf is pinned in protos/package.json).
proto-lint: protos/node_modules
	cd protos && node_modules/.bin/buf lint

protos/node_modules: protos/package.json protos/package-lock.json
	$(NEED_NODE)
	npm ci --prefix protos --no-audit --no-fund
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
	rm -rf $(NODE_EXAMPLES)/node_modules protos/node_modules
