"""Dual-stack through the operator (issue 13): the seed's scenario on two dual-stack networks.

Two VirtualNetworks with ``subnets`` of both families, joined by ovnvnet-router; pods with
``ovnNetwork`` on both networks (one with a static address of each family in ``ip_addresses``)
and one single-homed pod on each network with ``defaultGateway``. Everything the operator writes
is its own (allocation, NB ports and router ports, the sealed result); the pods ping each other,
their gateways and across the router over IPv6 (``ping -6``) and IPv4.
"""
from __future__ import annotations

import json

import pytest

from harness.kit import GROUP, PLURAL, VERSION, Cluster
from harness.kubelet import Sandbox

from .conftest import Pods, new_namespace, uniq

pytestmark = pytest.mark.timeout(180)

SUBNETS = {"a": ["10.81.0.0/24", "fd00:81::/64"], "b": ["10.82.0.0/24", "fd00:82::/64"]}
GW = {"a": ("10.81.0.1", "fd00:81::1"), "b": ("10.82.0.1", "fd00:82::1")}


def create_dual_stack(cluster: Cluster, name: str, subnets: list[str]) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualNetwork", "metadata": {"name": name},
            "spec": {"subnets": subnets}}
    cluster.custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)


def ping6(sb: Sandbox, dst: str, *extra: str) -> bool:
    return sb.ping(dst, "-6", *extra)


@pytest.fixture(scope="module")
def ds(e2e_cluster: Cluster, kubelet, e2e_stack):
    from .conftest import OPERATOR_ENV

    if not e2e_stack.running("operator"):
        e2e_stack.start_operator(OPERATOR_ENV)
    nets = {k: uniq(f"ds-{k}") for k in SUBNETS}
    for k, name in nets.items():
        create_dual_stack(e2e_cluster, name, SUBNETS[k])
    for name in nets.values():
        e2e_cluster.wait_ready(name)
    pods = Pods(e2e_cluster, kubelet, new_namespace(e2e_cluster))
    a, b = nets["a"], nets["b"]
    sb = {
        "one": pods.run("pod-one", [{"name": a, "interface": "net0"},
                                    {"name": b, "interface": "net1"}]),
        "two": pods.run("pod-two", [{"name": a, "interface": "net0",
                                     "ip_addresses": ["10.81.0.50", "fd00:81::50"]},
                                    {"name": b, "interface": "net1"}]),
        "pa": pods.run("pod-a", [{"name": a, "interface": "eth1", "defaultGateway": True}]),
        "pb": pods.run("pod-b", [{"name": b, "interface": "eth1", "defaultGateway": True}]),
    }
    names = {"one": "pod-one", "two": "pod-two", "pa": "pod-a", "pb": "pod-b"}
    ips = {}
    for key, pod in names.items():
        ips[key] = {}
        for i in pods.iface_list(pod):
            v4, v6 = (c.split("/")[0] for c in i["ip_addresses"])
            ips[key][i["interface"]] = {"4": v4, "6": v6}
    yield {"pods": pods, "sb": sb, "ips": ips, "nets": nets}
    pods.cleanup()


def test_results_and_pods_carry_both_families(ds):
    ips, sb = ds["ips"], ds["sb"]
    assert ips["two"]["net0"] == {"4": "10.81.0.50", "6": "fd00:81::50"}
    for key in ("one", "two"):
        have = sb[key].addresses()
        for iface, fam in ips[key].items():
            prefix = {"4": 24, "6": 64}
            assert have[iface]["ipv4"] == [f"{fam['4']}/{prefix['4']}"], (key, have)
            assert have[iface]["ipv6"] == [f"{fam['6']}/{prefix['6']}"], (key, have)
    assert any(r.startswith(f"default via {GW['a'][1]} dev eth1") for r in sb["pa"].routes(6))
    assert any(r.startswith(f"default via {GW['a'][0]} dev eth1") for r in sb["pa"].routes(4))
    assert not any(r.startswith("default") for r in sb["one"].routes(6))
    pod = ds["pods"].cluster.pod(ds["pods"].ns, "pod-two")
    assert [p.ip for p in pod.status.pod_ips] == ["10.81.0.50", "fd00:81::50"]


def test_ping_each_other_and_gateways_over_both_families(ds):
    one, two, ips = ds["sb"]["one"], ds["sb"]["two"], ds["ips"]
    for iface, net in (("net0", "a"), ("net1", "b")):
        assert ping6(one, ips["two"][iface]["6"]), iface
        assert ping6(two, ips["one"][iface]["6"]), iface
        assert one.ping(ips["two"][iface]["4"]), iface
        for gw in GW[net]:
            assert (ping6(one, gw) if ":" in gw else one.ping(gw)), gw


def test_across_the_router_over_both_families(ds):
    pa, pb, ips = ds["sb"]["pa"], ds["sb"]["pb"], ds["ips"]
    assert ping6(pa, ips["pb"]["eth1"]["6"]) and ping6(pb, ips["pa"]["eth1"]["6"])
    assert pa.ping(ips["pb"]["eth1"]["4"]) and pb.ping(ips["pa"]["eth1"]["4"])
    assert ping6(pa, GW["b"][1])                                   # the router's far side
    r = pa.run("ping", "-6", "-n", "-c", "1", "-W", "2", "-t", "64", ips["pb"]["eth1"]["6"])
    assert "ttl=63" in r.stdout, r.stdout


def test_check_and_port_security_over_ipv6(ds):
    one, two, ips = ds["sb"]["one"], ds["sb"]["two"], ds["ips"]
    assert ds["pods"].kubelet.cni("check", one).ok
    spoof = "fd00:81::99"
    one.run("ip", "-6", "addr", "add", f"{spoof}/64", "dev", "net0", "nodad", check=True)
    try:
        assert not ping6(one, ips["two"]["net0"]["6"], "-I", spoof)
        assert ping6(one, ips["two"]["net0"]["6"], "-I", ips["one"]["net0"]["6"])
    finally:
        one.run("ip", "-6", "addr", "del", f"{spoof}/64", "dev", "net0")
    assert ping6(two, ips["one"]["net0"]["6"])
    # CHECK names a removed IPv6 address; ADD again converges
    kubelet, gone = ds["pods"].kubelet, f"{ips['one']['net1']['6']}/64"
    one.run("ip", "-6", "addr", "del", gone, "dev", "net1", check=True)
    r = kubelet.cni("check", one)
    assert not r.ok and f"net1 lacks address {gone}" in r.message, r.message
    assert kubelet.cni("add", one).ok
    assert kubelet.cni("check", one).ok
    assert ping6(two, ips["one"]["net1"]["6"])


def test_legacy_pod_on_a_dual_stack_default_network(pods: Pods, e2e_stack, ds):
    """A pod without ovnNetwork, the operator's default network dual-stack: `ovn` holds both
    families and eth0 gets both, each with its default route; it reaches the other network's
    pod over IPv6 through the router."""
    from .conftest import OPERATOR_ENV

    net = uniq("ds-legacy")
    create_dual_stack(pods.cluster, net, ["10.83.0.0/24", "fd00:83::/64"])
    pods.cluster.wait_ready(net)
    e2e_stack.stop_operator()
    e2e_stack.start_operator({**OPERATOR_ENV, "OVNVNET_DEFAULT_NETWORK": net})
    try:
        sb = pods.run("pod-legacy")
        result = json.loads(pods.cluster.annotations(pods.ns, "pod-legacy")["ovn"])
        assert result["gateway_ips"] == ["10.83.0.1", "fd00:83::1"], result
        have = sb.addresses()["eth0"]
        assert have["ipv4"] == [result["ip_address"]]
        assert have["ipv6"] == [result["ip_addresses"][1]]
        assert any(r.startswith("default via fd00:83::1 dev eth0") for r in sb.routes(6))
        assert any(r.startswith("default via 10.83.0.1 dev eth0") for r in sb.routes(4))
        assert ping6(sb, "fd00:83::1")
        assert ping6(sb, ds["ips"]["pb"]["eth1"]["6"])          # through the router
        assert pods.kubelet.cni("check", sb).ok
    finally:
        e2e_stack.stop_operator()
        e2e_stack.start_operator(OPERATOR_ENV)
