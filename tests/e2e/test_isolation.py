"""Isolation: a network with `routed: false` has no port on ovnvnet-router, so its pods reach
each other but nothing on the routed networks (and the routed networks do not reach them)."""
from __future__ import annotations

import pytest

from ovnvnet.model import names

from .conftest import Pods, uniq

pytestmark = pytest.mark.timeout(120)


def test_unrouted_network_is_isolated(pods: Pods):
    routed, isolated = uniq("iso-r"), uniq("iso-i")
    pods.cluster.create_vnet(routed, "10.63.0.0/24")
    pods.cluster.create_vnet(isolated, "10.64.0.0/24", routed=False)
    pods.cluster.wait_ready(routed)
    pods.cluster.wait_ready(isolated)
    assert pods.cluster.vnet(isolated)["spec"].get("routed") is False, "the CRD must keep spec.routed"
    lrps = pods.stack_nbctl("--bare", "--columns=name", "list", "Logical_Router_Port").split()
    assert names.router_port_name(routed) in lrps
    assert names.router_port_name(isolated) not in lrps

    # every pod has its default route via its own network's gateway address
    r1 = pods.run("pod-r1", [{"name": routed, "interface": "net0", "defaultGateway": True}])
    i1 = pods.run("pod-i1", [{"name": isolated, "interface": "net0", "defaultGateway": True}])
    i2 = pods.run("pod-i2", [{"name": isolated, "interface": "net0", "defaultGateway": True}])
    ip = {name: pods.iface_list(name)[0]["ip_address"] for name in ("pod-r1", "pod-i1", "pod-i2")}

    assert i1.ping(ip["pod-i2"]) and i2.ping(ip["pod-i1"])    # its own network works
    assert r1.ping("10.63.0.1")                                # the routed gateway answers
    assert not i1.ping(ip["pod-r1"], count=2)                 # no way out of the isolated network
    assert not r1.ping(ip["pod-i1"], count=2)                 # and no way in
    assert not i1.ping("10.64.0.1", count=2)                  # nobody holds its gateway address
