"""`make demo` (harness/demo_node.py) on a private stack: the demo succeeds (exit 0: the
interfaces inside the containers are the annotated ones, the ping matrix is what the topology
predicts, the invalid pod is refused at apply and gets FailedCreatePodSandBox where admitted) and
its report shows the tables and the kubectl exec commands it tells the reader to try.

Runs only with OVNVNET_E2E_NODE=1 (`make e2e-node`)."""
from __future__ import annotations

import contextlib
import io
import os

import pytest

from harness import demo_node
from harness.realnode import down
from harness.stack import Stack

pytestmark = pytest.mark.timeout(900)


def test_demo_node_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("dn")
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            rc = demo_node.main(["--dir", str(root)])
    finally:
        print(out.getvalue())
        if not os.environ.get("OVNVNET_KEEP_STACK"):
            down(Stack(root))
    text = out.getvalue()
    assert rc == 0, text[-3000:]
    for want in ("Pods and interfaces, from inside each container", "Ping matrix", "refused by the webhook pod",
                 "FailedCreatePodSandBox", "kubectl exec pod-ovn -- ip addr"):
        assert want in text, want
    assert "DIFFERS" not in text and "MISSING" not in text
