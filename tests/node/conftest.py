"""The real-node scenarios (kubelet + containerd running the project's image, issue 12).

Two runs:
- `make test` (hence .ci/run) runs a REPRESENTATIVE SUBSET: the install-as-pods module
  (test_install.py) without the tests marked `e2e_node` (about 5 minutes with the builds cached):
  the install under ServiceAccounts, the seed pods' interfaces and pings from inside the
  containers, the invalid pod's FailedCreatePodSandBox, the webhook pod's refusal, hot-plug in a
  running container and the runtime's DEL cleanup; and two real nodes (test_twonodes.py: Geneve
  between their containers, a node lost; about 2 minutes).
- `make e2e-node` (OVNVNET_E2E_NODE=1) runs everything: the subset, the `e2e_node` tests of
  test_install.py, the operator-as-process module (test_realnode.py), the node lifecycle
  (test_lifecycle.py: scale 20 -> 0 -> 20, kubelet/containerd restarts, node reboot,
  port-forward, hot-plug through the runtime's restarts), the Helm chart's install, upgrade and
  uninstall (test_helm.py: a node of its own, several minutes; `make test` checks the chart by
  rendering it, tests/install/test_chart.py).
Nothing is silently skipped: what `make test` leaves out is deselected here, by name, and both
runs need `make node-bootstrap` (which `make test` runs).
"""
from __future__ import annotations

import os

import pytest

FULL = os.environ.get("OVNVNET_E2E_NODE") == "1"
SUBSET_MODULES = {"test_install.py", "test_twonodes.py"}

if not FULL:
    collect_ignore_glob = [f"test_{name}.py" for name in ("realnode", "lifecycle", "demo", "helm")]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e_node: a real-node scenario only `make e2e-node` runs (see conftest)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if FULL:
        return
    keep, drop = [], []
    for item in items:
        in_node = item.path.parent.name == "node" and item.path.parent.parent.name == "tests"
        (drop if in_node and item.get_closest_marker("e2e_node") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
