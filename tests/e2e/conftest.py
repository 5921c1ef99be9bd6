"""End-to-end on the real data plane: the local stack (API server, OVN central, the operator as a
process) plus one node's OVS + ovn-controller in its own netns and the CNI node agent, with
pods played by :class:`harness.kubelet.Kubelet` (netns + libcni + status patch).

Packets only ever travel between network namespaces this run created.
"""
from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.kit import Cluster
from harness.kubelet import Kubelet, Sandbox
from harness.stack import KUBE_BIN, Stack
from tests.prerequisites import missing, node_missing, require, stack_missing

OPERATOR_ENV = {"OVNVNET_SWEEP_INTERVAL": "1", "OVNVNET_RETRY_INTERVAL": "1"}


@pytest.fixture(scope="session", autouse=True)
def prerequisites() -> None:
    """The whole stack and a node's data plane: root, the kube build and the binaries, or an
    error naming what is missing (a skip only in a run that asked for it)."""
    require("the end-to-end tests (tests/e2e)",
            stack_missing(KUBE_BIN) + node_missing() + missing(binaries=("ping",)))


@pytest.fixture(scope="session")
def e2e_stack(tmp_path_factory) -> Iterator[Stack]:
    # a short root: OVS unix socket paths must stay under ~100 characters
    root = Path(os.environ.get("OVNVNET_E2E_STACK") or tmp_path_factory.mktemp("e2e"))
    s = Stack(root)
    try:
        s.up(operator=False, dataplane=True)
        s.start_operator(OPERATOR_ENV)
        yield s
    finally:
        s.down(remove=not os.environ.get("OVNVNET_KEEP_STACK"))


@pytest.fixture(scope="session")
def e2e_cluster(e2e_stack: Stack) -> Cluster:
    return Cluster(e2e_stack)


@pytest.fixture(scope="session")
def kubelet(e2e_stack: Stack) -> Kubelet:
    return Kubelet(e2e_stack)


@pytest.fixture
def operator(e2e_stack: Stack) -> Stack:
    """The stack with the operator running (with the default settings) for this test."""
    if not e2e_stack.running("operator"):
        e2e_stack.start_operator(OPERATOR_ENV)
    return e2e_stack


class Pods:
    """Create pods on node-1 and attach them; everything created is removed at teardown."""

    def __init__(self, cluster: Cluster, kubelet: Kubelet, namespace: str) -> None:
        self.cluster, self.kubelet, self.ns = cluster, kubelet, namespace
        self.created: list[str] = []

    def create(self, name: str, request: Any = None, *, annotations: dict | None = None,
               node: str | None = "node-1") -> Any:
        ann = dict(annotations or {})
        if request is not None:
            ann["ovnNetwork"] = request if isinstance(request, str) else json.dumps(request)
        body: dict = {"metadata": {"name": name, "annotations": ann},
                      "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
        if node:
            body["spec"]["nodeName"] = node
        self.created.append(name)
        return self.cluster.core.create_namespaced_pod(self.ns, body)

    def run(self, name: str, request: Any = None, **kw: Any) -> Sandbox:
        self.create(name, request, **{k: v for k, v in kw.items() if k in ("annotations", "node")})
        sandbox, _ = self.kubelet.run_pod(self.ns, name, **{k: v for k, v in kw.items()
                                                           if k in ("ifname", "conflist")})
        return sandbox

    def stack_nbctl(self, *args: str) -> str:
        return self.cluster.stack.nbctl(*args)

    def iface_list(self, name: str) -> list[dict]:
        return self.cluster.iface_list(self.ns, name)

    def cleanup(self) -> None:
        for name in self.created:
            self.kubelet.remove_pod(self.ns, name)


def new_namespace(cluster: Cluster) -> str:
    ns = "e2e-" + uuid.uuid4().hex[:6]
    cluster.ensure_namespace(ns)
    return ns


@pytest.fixture
def pods(e2e_cluster: Cluster, kubelet: Kubelet, operator: Stack) -> Iterator[Pods]:
    p = Pods(e2e_cluster, kubelet, new_namespace(e2e_cluster))
    yield p
    p.cleanup()


def uniq(base: str) -> str:
    return f"{base}-{uuid.uuid4().hex[:5]}"
