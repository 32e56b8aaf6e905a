# Parley developer entry points. Needs only python3 and make: uv is bootstrapped into .tools/ when missing.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS ?= never
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := .tools/bin/uv
endif

.PHONY: run test lint typecheck check bench sync token clean

$(UV):
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv>=0.9,<1"

.venv/.synced: $(UV) uv.lock pyproject.toml libs/common/pyproject.toml services/*/pyproject.toml
	$(UV) sync --frozen --all-packages
	@touch $@

sync: .venv/.synced

## Start nats-server (JetStream, data under .data/) and every service; Ctrl-C stops them all.
## NATS_CLUSTER=3: three clustered nats-servers, every stream in three copies.
run: sync
	$(if $(NATS_CLUSTER),PARLEY_NATS_CLUSTER=$(NATS_CLUSTER) )$(UV) run --frozen python -m parley_common.devstack

## Every test: unit and integration (integration tests spawn their own nats-server).
test: sync
	$(UV) run --frozen pytest

lint: sync
	$(UV) run --frozen ruff check libs services tests bench
	$(UV) run --frozen ruff format --check libs services tests bench

typecheck: sync
	$(UV) run --frozen mypy libs/common/src services/gateway/src services/conference/src services/media/src services/snapshot/src services/chat/src

check: lint typecheck

## Mint a development token, printing only the token: TOKEN=$$(make -s token USER_ID=alice ORG=acme)
token: sync
	@$(UV) run --frozen parley-token --user "$(or $(USER_ID),alice)" --org "$(or $(ORG),parley-dev)"

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache
