from __future__ import annotations

import itertools
import os
import uuid
from pathlib import Path

import pytest

from harness.stack import KUBE_BIN, Stack
from tests.integration.kit import Cluster
from tests.prerequisites import require, stack_missing

OPERATOR_ENV = {"OVNVNET_SWEEP_INTERVAL": "1", "OVNVNET_RETRY_INTERVAL": "1"}


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Stack:
    require("the integration tests (tests/integration)", stack_missing(KUBE_BIN))
    root = Path(os.environ.get("OVNVNET_TEST_STACK") or tmp_path_factory.mktemp("stack"))
    s = Stack(root)
    try:
        s.up(operator=False)
        s.start_operator(OPERATOR_ENV)
        yield s
    finally:
        s.down(remove=not os.environ.get("OVNVNET_KEEP_STACK"))


@pytest.fixture
def cluster(stack: Stack) -> Cluster:
    if not stack.running("operator"):  # a previous test killed it
        stack.start_operator(OPERATOR_ENV)
    return Cluster(stack)


_subnets = itertools.count(1)


@pytest.fixture
def subnet():
    """A fresh /24 per call (networks may not overlap)."""
    def make(prefix: int = 24) -> str:
        n = next(_subnets)
        return f"10.{100 + n // 200}.{n % 200}.0/{prefix}"
    return make


@pytest.fixture
def ns(cluster: Cluster) -> str:
    name = "t-" + uuid.uuid4().hex[:8]
    cluster.ensure_namespace(name)
    return name


@pytest.fixture
def net_name():
    return lambda base="net": f"{base}-{uuid.uuid4().hex[:6]}"
