# One entry point for everything: `make run` starts a coordinator, `make test` runs the suite.
# Each target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTO_OUT := sdk

.PHONY: run test lint proto proto-check install clean

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
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
