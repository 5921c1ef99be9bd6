# ovnvnet: development entry points. Everything runs on loopback in .stack/ (see README).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STACK := .stack

.PHONY: bootstrap up down status test unit demo bench soak node-bootstrap node-up e2e-node

bootstrap:
	@bash hack/bootstrap.sh

# The real node's extras (issue 12): containerd, runc, buildah, debootstrap, busybox-static,
# kubelet + kube-scheduler built once and cached. Not part of `bootstrap` yet.
node-bootstrap:
	@bash hack/bootstrap-node.sh

# The stack plus a real node-1 (kubelet, containerd, runc; see operator/ovnvnet/testing/realnode.py).
# `make down` stops it too.
node-up: bootstrap node-bootstrap
	@$(PY) -m ovnvnet.testing.realnode up --dir $(STACK)

# The seed's scenario with real busybox containers on the real node. Not in `make test` yet.
e2e-node: bootstrap node-bootstrap
	@OVNVNET_E2E_NODE=1 $(PY) -m pytest -q -rs tests/node

up: bootstrap
	@$(PY) -m ovnvnet.testing.stack up --dir $(STACK)

down:
	@if [ -x $(PY) ]; then $(PY) -m ovnvnet.testing.stack down --dir $(STACK); else rm -rf $(STACK); fi

status:
	@$(PY) -m ovnvnet.testing.stack status --dir $(STACK)

# The seed's scenario on a real data plane (OVS + ovn-controller + CNI agent), with a report.
# Leaves the stack up (source .stack/env); `make down` stops it. Idempotent.
demo: bootstrap
	@$(PY) -m ovnvnet.testing.demo --dir $(STACK)

# The whole test suite: the command the README gives and .ci/run calls.
test: bootstrap
	@$(PY) -m pytest -q -rs

unit: bootstrap
	@$(PY) -m pytest -q tests/unit

# Benchmarks on the real local stack, each with a baseline measured in the same run; tables are
# printed and written to bench/results/*.json. One scenario: `make bench SCENARIOS="s1 s3"`.
SCENARIOS ?= --all
bench: bootstrap
	@$(PY) -m bench $(SCENARIOS)

# Crash-and-churn soak on a private stack: ROUNDS rounds of PODS pods with KILLS operator SIGKILLs.
ROUNDS ?= 3
PODS ?= 300
KILLS ?= 5
soak: bootstrap
	@$(PY) -m ovnvnet.testing.soak --rounds $(ROUNDS) --pods $(PODS) --kills $(KILLS)
