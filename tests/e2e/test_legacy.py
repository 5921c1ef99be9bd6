"""The legacy single interface: a pod without ovnNetwork, attached to the operator's default
network (OVNVNET_DEFAULT_NETWORK), result in the `ovn` annotation, plumbed as CNI_IFNAME with the
default route via the gateway (it is the pod's primary network in that mode)."""
from __future__ import annotations

import json

import pytest

from harness.kubelet import CniFailed
from harness.stack import Stack

from .conftest import OPERATOR_ENV, Pods, uniq

pytestmark = pytest.mark.timeout(150)


def test_without_default_network_add_says_what_is_missing(pods: Pods, e2e_stack: Stack, tmp_path):
    conflist = e2e_stack.write_conflist(annotation_timeout=2, path=tmp_path / "short.conflist")
    pods.create("pod-plain", annotations={"ovn": json.dumps({"ip_address": "10.65.0.9"})})
    with pytest.raises(CniFailed) as failed:
        pods.kubelet.run_pod(pods.ns, "pod-plain", conflist=conflist)
    msg = failed.value.outcome.message
    assert "no ovnNetwork annotation and no ovn result" in msg, msg
    assert "OVNVNET_DEFAULT_NETWORK" in msg


@pytest.fixture
def default_network(pods: Pods, e2e_stack: Stack):
    """The operator restarted with OVNVNET_DEFAULT_NETWORK; restored afterwards."""
    net = uniq("legacy")
    pods.cluster.create_vnet(net, "10.66.0.0/24", mtu=1400)
    pods.cluster.wait_ready(net)
    e2e_stack.stop_operator()
    e2e_stack.start_operator({**OPERATOR_ENV, "OVNVNET_DEFAULT_NETWORK": net})
    try:
        yield net
    finally:
        e2e_stack.stop_operator()
        e2e_stack.start_operator(OPERATOR_ENV)


def test_legacy_pod_gets_one_interface_on_the_default_network(pods: Pods, default_network: str):
    other = uniq("legacy-peer")
    pods.cluster.create_vnet(other, "10.67.0.0/24")
    pods.cluster.wait_ready(other)
    peer = pods.run("pod-peer", [{"name": other, "interface": "net0", "defaultGateway": True}])
    dyn = pods.run("pod-dyn")                         # no annotation at all
    static = pods.run("pod-static", annotations={"ovn": json.dumps(
        {"ip_address": "10.66.0.50", "mac_address": "0a:00:00:00:00:50"})})

    result = json.loads(pods.cluster.annotations(pods.ns, "pod-dyn")["ovn"])
    assert result["gateway_ip"] == "10.66.0.1" and result["name"] == default_network
    assert result["port"] == f"{pods.ns}_pod-dyn"
    have = dyn.addresses()
    assert list(have) == ["eth0"]
    assert have["eth0"]["ipv4"] == [result["ip_address"]] and have["eth0"]["mtu"] == 1400
    assert any(r.startswith("default via 10.66.0.1 dev eth0") for r in dyn.routes())

    s = static.addresses()["eth0"]
    assert s["ipv4"] == ["10.66.0.50/24"] and s["mac"] == "0a:00:00:00:00:50"

    assert dyn.ping("10.66.0.1") and dyn.ping("10.66.0.50")
    peer_ip = pods.iface_list("pod-peer")[0]["ip_address"]
    assert dyn.ping(peer_ip) and peer.ping("10.66.0.50")      # through the router
    assert pods.kubelet.cni("check", dyn).ok
