"""ADD failing fast with the operator's message, and ADD waiting for a network created late."""
from __future__ import annotations

import threading
import time

import pytest

from harness.kubelet import CniFailed
from harness.stack import Stack

from .conftest import OPERATOR_ENV, Pods, uniq

pytestmark = pytest.mark.timeout(120)


def test_errored_pod_fails_add_fast_with_the_operators_message(pods: Pods):
    net = uniq("lc-err")
    pods.cluster.create_vnet(net, "10.61.0.0/24")
    pods.cluster.wait_ready(net)
    pods.create("pod-bad", [{"name": net, "interface": "net0", "ip_address": "10.61.1.5"}])
    operator_msg = pods.cluster.pod_error(pods.ns, "pod-bad")   # the operator has refused it
    assert "10.61.1.5" in operator_msg
    with pytest.raises(CniFailed) as failed:
        pods.kubelet.run_pod(pods.ns, "pod-bad")
    assert operator_msg in failed.value.outcome.message
    # the README's claim: the ADD itself (libcni -> shim -> agent -> error), not the annotation wait
    took = failed.value.outcome.seconds
    assert took < 1.0, f"ADD took {took:.2f}s to fail (the annotation timeout is 30s)"
    # the kubelet tore the sandbox down: nothing left behind
    assert pods.kubelet.sandbox(pods.ns, "pod-bad") is None


def _attach_in_background(pods: Pods, name: str) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def attach() -> None:
        try:
            result["sandbox"], result["outcome"] = pods.kubelet.run_pod(pods.ns, name)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            result["error"] = exc

    t = threading.Thread(target=attach)
    t.start()
    return t, result


def test_annotation_arriving_late_still_succeeds(pods: Pods, e2e_stack: Stack):
    """The operator is down when the pod is created and ADD starts: ADD waits, the operator
    comes back and writes ovnIfaceList, and ADD completes within its wait."""
    net = uniq("lc-late")
    pods.cluster.create_vnet(net, "10.62.0.0/24")
    pods.cluster.wait_ready(net)
    e2e_stack.stop_operator()
    try:
        pods.create("pod-late", [{"name": net, "interface": "net0"}])
        started = time.monotonic()
        t, result = _attach_in_background(pods, "pod-late")
        time.sleep(2)
        assert t.is_alive(), f"ADD returned without an annotation: {result}"
    finally:
        e2e_stack.start_operator(OPERATOR_ENV)
    t.join(60)
    assert "error" not in result, result.get("error")
    assert 2 <= time.monotonic() - started < 30
    sb = result["sandbox"]
    assert sb.addresses()["net0"]["ipv4"] == ["10.62.0.2/24"]
    assert sb.ping("10.62.0.1")


def test_pod_created_before_its_network_attaches_within_the_wait(pods: Pods):
    net = uniq("lc-early")
    pods.create("pod-early", [{"name": net, "interface": "net0"}])   # the network does not exist yet
    started = time.monotonic()
    t, result = _attach_in_background(pods, "pod-early")
    time.sleep(2)
    assert t.is_alive(), f"ADD returned before the network existed: {result}"
    pods.cluster.create_vnet(net, "10.68.0.0/24")
    t.join(60)
    assert "error" not in result, result.get("error")
    assert 2 <= time.monotonic() - started < 30
    assert result["sandbox"].ping("10.68.0.1")
