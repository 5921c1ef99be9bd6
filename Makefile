# ovnvnet: development entry points. Everything runs on loopback in .stack/ (see README).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STACK := .stack

.PHONY: bootstrap up down status test unit demo bench

bootstrap:
	@bash hack/bootstrap.sh

up: bootstrap
	@$(PY) -m ovnvnet.testing.stack up --dir $(STACK)

down:
	@if [ -x $(PY) ]; then $(PY) -m ovnvnet.testing.stack down --dir $(STACK); else rm -rf $(STACK); fi

status:
	@$(PY) -m ovnvnet.testing.stack status --dir $(STACK)

# The whole test suite: the command the README gives and .ci/run calls.
test: bootstrap
	@$(PY) -m pytest -q -rs

unit: bootstrap
	@$(PY) -m pytest -q tests/unit
