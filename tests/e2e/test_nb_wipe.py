"""The NB restarted with an empty database: the operator rebuilds every switch, router port and
pod port with the same addresses, and the pods ping again on the real data plane."""
from __future__ import annotations

import signal

import pytest

from harness.kit import wait_until
from harness.stack import OVN_NB_SCHEMA, Stack

from .conftest import Pods, uniq

pytestmark = pytest.mark.timeout(180)


def test_pods_ping_again_after_the_nb_is_wiped(pods: Pods, e2e_stack: Stack):
    a, b = uniq("wipe-a"), uniq("wipe-b")
    pods.cluster.create_vnet(a, "10.71.0.0/24")
    pods.cluster.create_vnet(b, "10.72.0.0/24")
    pods.cluster.wait_ready(a)
    pods.cluster.wait_ready(b)
    pods.create("wa", [{"name": a, "interface": "net0"}])
    pods.create("wb", [{"name": b, "interface": "net0", "defaultGateway": True}])
    pods.create("wc", [{"name": a, "interface": "net0", "defaultGateway": True}])
    sa, _ = pods.kubelet.run_pod(pods.ns, "wa")
    sb, _ = pods.kubelet.run_pod(pods.ns, "wb")
    sc, _ = pods.kubelet.run_pod(pods.ns, "wc")
    ip = {n: pods.cluster.iface_list(pods.ns, n)[0]["ip_address"] for n in ("wa", "wb", "wc")}
    assert sa.ping(ip["wc"]) and sb.ping(ip["wc"]), "no connectivity before the wipe"

    e2e_stack.kill("ovsdb-nb", signal.SIGKILL)
    e2e_stack.start_ovsdb("nb", OVN_NB_SCHEMA, e2e_stack._port("nb"), wipe=True)
    assert a not in pods.cluster.nb_switches()

    wait_until(lambda: {a, b} <= set(pods.cluster.nb_switches())
               and {f"{pods.ns}_{p}_net0" for p in ("wa", "wb", "wc")} <= set(pods.cluster.nb_pod_ports()),
               60, what="NB rebuilt by the operator")
    # same addresses, and packets cross again: on a switch and through the router
    assert {n: pods.cluster.iface_list(pods.ns, n)[0]["ip_address"] for n in ("wa", "wb", "wc")} == ip
    wait_until(lambda: sa.ping(ip["wc"], count=1, wait=1), 60, what="ping on the switch after the rebuild")
    wait_until(lambda: sb.ping(ip["wc"], count=1, wait=1), 60, what="ping through the router after the rebuild")
    assert sa.ping("10.71.0.1"), "the gateway answers again"
