"""The seed's scenario on the real data plane: examples/seed.yaml applied as is (pod-ovn is
scheduled by the kubelet's bind), a second pod on both networks, and one single-homed pod on
each network whose default route points at its network's gateway on ovnvnet-router."""
from __future__ import annotations

import subprocess

import pytest

from harness.kit import Cluster
from harness.kubelet import Kubelet
from harness.stack import REPO, Stack
from ovnvnet.cni.netlink import host_veth_name

from .conftest import OPERATOR_ENV, Pods, new_namespace

pytestmark = pytest.mark.timeout(180)

GW25, GW26 = "172.16.25.1", "172.16.26.1"


@pytest.fixture(scope="module")
def seed(e2e_stack: Stack, e2e_cluster: Cluster, kubelet: Kubelet):
    if not e2e_stack.running("operator"):
        e2e_stack.start_operator(OPERATOR_ENV)
    pods = Pods(e2e_cluster, kubelet, new_namespace(e2e_cluster))
    e2e_stack.kubectl("apply", "-n", pods.ns, "-f", str(REPO / "examples" / "seed.yaml"))
    pods.created.append("pod-ovn")
    e2e_cluster.wait_ready("ovn-ls-25")
    e2e_cluster.wait_ready("ovn-ls-26")
    sandboxes = {"pod-ovn": kubelet.run_pod(pods.ns, "pod-ovn")[0]}
    sandboxes["pod-two"] = pods.run("pod-two", [{"name": "ovn-ls-25", "interface": "net0"},
                                                 {"name": "ovn-ls-26", "interface": "net1"}])
    sandboxes["pod-a"] = pods.run("pod-a", [{"name": "ovn-ls-25", "interface": "eth1", "defaultGateway": True}])
    sandboxes["pod-b"] = pods.run("pod-b", [{"name": "ovn-ls-26", "interface": "eth1", "defaultGateway": True}])
    ips = {name: {i["interface"]: i["ip_address"] for i in pods.iface_list(name)} for name in sandboxes}
    yield {"pods": pods, "sb": sandboxes, "ips": ips, "stack": e2e_stack, "kubelet": kubelet}
    pods.cleanup()


def test_seed_pod_gets_both_interfaces(seed):
    sb, ips = seed["sb"]["pod-ovn"], seed["ips"]["pod-ovn"]
    assert ips["net1"] == "172.16.26.3"
    have = sb.addresses()
    assert have["net0"]["ipv4"] == [f"{ips['net0']}/24"] and have["net0"]["state"] == "UP"
    assert have["net1"] == {"mac": "0a:00:00:00:00:15", "mtu": 1500, "state": "UP", "ipv4": ["172.16.26.3/24"]}
    # no defaultGateway: the pod's default route is not ours to touch
    assert not any(r.startswith("default") for r in sb.routes())
    assert any(r.startswith(f"default via {GW25} dev eth1") for r in seed["sb"]["pod-a"].routes())
    # the kubelet patched the status from the CNI result
    pod = seed["pods"].cluster.pod(seed["pods"].ns, "pod-ovn")
    assert pod.status.phase == "Running" and pod.status.pod_ip == ips["net0"]
    assert pod.spec.node_name == "node-1"


def test_ping_each_other_on_each_network(seed):
    one, two = seed["sb"]["pod-ovn"], seed["sb"]["pod-two"]
    ips = seed["ips"]
    assert one.ping(ips["pod-two"]["net0"])
    assert one.ping(ips["pod-two"]["net1"])
    assert two.ping(ips["pod-ovn"]["net0"])
    assert two.ping("172.16.26.3")


def test_pods_ping_their_gateways(seed):
    for name in ("pod-ovn", "pod-two"):
        assert seed["sb"][name].ping(GW25), name
        assert seed["sb"][name].ping(GW26), name
    assert seed["sb"]["pod-a"].ping(GW25)
    assert seed["sb"]["pod-b"].ping(GW26)


def test_other_network_through_the_router(seed):
    a, b, ips = seed["sb"]["pod-a"], seed["sb"]["pod-b"], seed["ips"]
    assert a.ping(ips["pod-b"]["eth1"])   # 172.16.25.x -> router -> 172.16.26.y
    assert b.ping(ips["pod-a"]["eth1"])
    assert a.ping(GW26)                  # the router's far-side port
    r = a.run("ping", "-n", "-c", "1", "-W", "2", "-t", "64", ips["pod-b"]["eth1"])
    assert "ttl=63" in r.stdout, r.stdout   # one routed hop


def test_port_security_drops_spoofed_source(seed):
    one, two = seed["sb"]["pod-ovn"], seed["ips"]["pod-two"]
    spoof = "172.16.25.250"
    one.run("ip", "addr", "add", f"{spoof}/24", "dev", "net0", check=True)
    try:
        assert not one.ping(two["net0"], "-I", spoof, count=3)
        assert one.ping(two["net0"], "-I", seed["ips"]["pod-ovn"]["net0"])
    finally:
        one.run("ip", "addr", "del", f"{spoof}/24", "dev", "net0")
    # a spoofed MAC on the owned address gets nothing through either
    one.run("ip", "link", "set", "net1", "address", "0a:00:00:00:00:99", check=True)
    try:
        one.run("ip", "neigh", "flush", "all")
        assert not one.ping(two["net1"], count=3)
    finally:
        one.run("ip", "link", "set", "net1", "address", "0a:00:00:00:00:15", check=True)
    assert one.ping(two["net1"])


def test_check_then_add_twice_converges(seed):
    kubelet: Kubelet = seed["kubelet"]
    two = seed["sb"]["pod-two"]
    assert kubelet.cni("check", two).ok
    two.run("ip", "link", "del", "net1", check=True)
    r = kubelet.cni("check", two)
    assert not r.ok and "net1 is missing" in r.message, r.message
    for _ in range(2):   # ADD again, twice: converges, no error
        r = kubelet.cni("add", two)
        assert r.ok, r.message
    assert kubelet.cni("check", two).ok
    assert two.ping("172.16.26.3")
    assert seed["sb"]["pod-ovn"].ping(seed["ips"]["pod-two"]["net1"])


def _host_links(stack: Stack) -> str:
    return subprocess.run(["ip", "-n", stack.node_netns, "-o", "link"], capture_output=True, text=True).stdout


def test_del_leaves_no_veth_and_no_ovs_port(seed, e2e_stack: Stack, pods: Pods):
    sb = pods.run("pod-gone", [{"name": "ovn-ls-25", "interface": "net0"},
                               {"name": "ovn-ls-26", "interface": "net1"}])
    hosts = [host_veth_name(sb.container_id, i) for i in ("net0", "net1")]
    dp = e2e_stack.dataplane()
    assert set(hosts) <= set(dp.vsctl("list-ports", "br-int").split())
    assert all(h in _host_links(e2e_stack) for h in hosts)
    assert pods.kubelet.cni("del", sb).ok
    assert not set(hosts) & set(dp.vsctl("list-ports", "br-int").split())
    assert not any(h in _host_links(e2e_stack) for h in hosts)
    assert set(sb.addresses()) == set()
    assert pods.kubelet.cni("del", sb).ok   # idempotent
    # and once the pod object and the netns are gone too
    pods.kubelet.remove_pod(pods.ns, "pod-gone")
    assert pods.kubelet.cni("del", sb).ok
    assert sb.netns not in e2e_stack.stack_netns()
