# ovnvnet: development entry points. Everything runs on loopback in .stack/ (see README); the
# local stack, demo and soak are the development harness in harness/ (not in the package).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STACK := .stack

.PHONY: bootstrap up down status lint test unit demo demo-node demo-dataplane bench soak node-bootstrap node-up node-install e2e-node manifests chart-lint node-install-helm

bootstrap:
	@bash hack/bootstrap.sh

# The real node's extras (issue 12): containerd, runc, buildah, debootstrap, busybox-static,
# kubelet + kube-scheduler built once and cached (hack/kube-build.sh, shared with `bootstrap`).
# Idempotent; a second run only checks. `make test` runs it (its real-node subset needs it).
node-bootstrap:
	@bash hack/bootstrap-node.sh

# The stack plus a real node-1 (kubelet, containerd, runc; see harness/realnode.py); NODES=2 (or
# more): node-1..node-N, each its own kubelet, containerd, OVS, ovn-controller and agent (issue 18).
# `make down` stops them too.
node-up: bootstrap node-bootstrap
	@$(PY) -m harness.realnode up --dir $(STACK) $(if $(NODES),--nodes $(NODES))

# The stack plus node-1 with ovnvnet installed AS PODS: `kubectl apply -k
# manifests/overlays/local-node` (operator Deployment, agent DaemonSet, webhook, RBAC); nothing of
# ovnvnet runs as a local process. `make down` stops it too.
node-install: bootstrap node-bootstrap
	@$(PY) -m harness.realnode up --install --dir $(STACK)

# The same, installed with Helm: `helm install ovnvnet charts/ovnvnet -f <values for this node>`
# (harness/realnode.py writes them, like overlays/local-node). `make down` stops it too.
node-install-helm: bootstrap node-bootstrap
	@$(PY) -m harness.realnode up --install --helm --dir $(STACK)

# Every real-node scenario (tests/node, see its conftest.py): the install as pods
# (test_install.py), the operator and agent as local processes (test_realnode.py), the node's
# lifecycle (test_lifecycle.py: scale 20 -> 0 -> 20, kubelet and containerd restarts, a node
# reboot, port-forward, hot-plug through restarts), the real-container demo (test_demo.py), the
# Helm chart's install, upgrade and uninstall (test_helm.py) and two real nodes (test_twonodes.py).
# `make test` runs a subset.
e2e-node: bootstrap node-bootstrap
	@OVNVNET_E2E_NODE=1 $(PY) -m pytest -q -rs tests/node

# The Helm chart (charts/ovnvnet) is the source of the kustomize base: regenerate
# manifests/base/*.yaml from the chart's templates and default values (harness/chart.py);
# tests/install/test_chart.py fails when they are stale.
manifests: bootstrap
	@$(PY) -m harness.chart manifests

# helm lint of the chart with its defaults and with the values file that sets every knob.
chart-lint: bootstrap
	@/var/cache/ovnvnet/helm-3.17.3/helm lint --strict charts/ovnvnet
	@/var/cache/ovnvnet/helm-3.17.3/helm lint --strict charts/ovnvnet -f tests/install/chart-values-all.yaml

# NODES=2 (or more): node-1..node-N, each with its own OVS, ovn-controller (own chassis and encap
# IP on a private underlay) and CNI agent; pods on different nodes talk through Geneve tunnels.
up: bootstrap
	@$(PY) -m harness.stack up --dir $(STACK) $(if $(NODES),--nodes $(NODES))

down:
	@if [ -x $(PY) ]; then $(PY) -m harness.stack down --dir $(STACK); else rm -rf $(STACK); fi

status:
	@$(PY) -m harness.stack status --dir $(STACK)

# The seed's scenario with REAL containers: the real node-1 (kubelet, containerd), ovnvnet installed
# as pods (kubectl apply -k manifests/overlays/local-node), busybox pods; the interface table and
# ping matrix from inside the containers (kubectl exec). Leaves it up; `make down` stops it.
demo: bootstrap node-bootstrap
	@$(PY) -m harness.demo_node --dir $(STACK)

demo-node: demo

# The same scenario (plus a dual-stack network) in about 15 s, without containers: the operator and
# agent as local processes, a played kubelet making each pod's network namespace on the real data
# plane (OVS + ovn-controller). Leaves the stack up; `make down` stops it. Idempotent.
# Two nodes by default (pods spread over node-1 and node-2, pings across Geneve); NODES=1 for one.
demo-dataplane: bootstrap
	@$(PY) -m harness.demo --dir $(STACK) $(if $(NODES),--nodes $(NODES))

# Static checks (config in pyproject.toml): ruff over the whole checkout, mypy over the package
# (strict for model/, ipam/, ovn/). Run first by `make test`, hence by .ci/run.
lint: bootstrap
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy

# The whole test suite: the command the README gives and .ci/run calls. A missing prerequisite
# (root for the data plane, a binary, the kube build) is an error naming it, never a skip. It
# includes a representative subset of the real-node scenarios (tests/node/conftest.py; about
# 5 min with the builds cached), hence `node-bootstrap`; `make e2e-node` runs them all.
test: bootstrap node-bootstrap lint
	@OVNVNET_ALLOW_SKIP= OVNVNET_E2E_NODE= $(PY) -m pytest -q -rs

# The pure unit tests only: an explicitly narrower run (OVNVNET_ALLOW_SKIP=1: see tests/prerequisites.py).
unit: bootstrap
	@OVNVNET_ALLOW_SKIP=1 $(PY) -m pytest -q -rs tests/unit

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
	@$(PY) -m harness.soak --rounds $(ROUNDS) --pods $(PODS) --kills $(KILLS)
