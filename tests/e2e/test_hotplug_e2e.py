"""Hot-plug end to end (issue 16): the user changes a running pod's `ovnNetwork`; the operator
serves the change (ports, addresses, the sealed `ovnIfaceList`) and the node agent converges the
pod's sandbox on it, through the real API server, OVN and the node's OVS: no test code writes
a result. The halves are tested alone in tests/integration/test_hotplug.py (operator) and
tests/cni/test_hotplug.py (agent); this is the chain a user sees.

Each step checks the packets (a ping over the new interface, a ping over the kept one running
throughout and losing nothing), the sandbox (interfaces and addresses), the agent's report on the
pod (`ovnvnet.io/plumbed`, Events) and the invariant (records, NB ports, results).
"""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from harness.kit import Cluster, check_invariant, sandbox_invariant, wait_until
from harness.kubelet import Sandbox
from ovnvnet.cni.hotplug import STATUS_ANNOTATION

from .conftest import Pods, uniq

pytestmark = pytest.mark.timeout(300)
# the README's stated bound: a user's `ovnNetwork` patch -> the first ping over the new interface
PLUG_WITHIN = 10.0
Nets = tuple[str, str]


def _request(pods: Pods, name: str, request: list[dict]) -> None:
    pods.cluster.core.patch_namespaced_pod(name, pods.ns, {"metadata": {"annotations": {
        "ovnNetwork": json.dumps(request)}}})


def _plumbed(pods: Pods, name: str) -> dict:
    ann = pods.cluster.pod(pods.ns, name).metadata.annotations or {}
    return json.loads(ann.get(STATUS_ANNOTATION) or "{}")


def _ping_throughout(sb: Sandbox, dst: str, count: int = 60) -> subprocess.Popen:
    """A ping every 0.1 s over a kept interface while a change is served (6 s in all)."""
    return subprocess.Popen(["ip", "netns", "exec", sb.netns, "ping", "-n", "-q", "-c", str(count),
                             "-i", "0.1", "-W", "1", dst], stdout=subprocess.PIPE, text=True)


def _loss(proc: subprocess.Popen) -> tuple[int, int, str]:
    out, _ = proc.communicate(timeout=60)
    line = next((li for li in out.splitlines() if "transmitted" in li), "")
    sent, got = (int(x.split()[0]) for x in line.split(",")[:2]) if line else (0, 0)
    return sent, got, line


@pytest.fixture
def two_networks(pods: Pods, e2e_cluster: Cluster, request: pytest.FixtureRequest):
    """Two Ready networks `(a, b)` on the /24s the test names (`@pytest.mark.subnets(...)`);
    afterwards the test's pods and both networks are deleted."""
    prefix, subnets = request.node.get_closest_marker("subnets").args
    a, b = uniq(f"{prefix}a"), uniq(f"{prefix}b")
    for name, subnet in ((a, subnets[0]), (b, subnets[1])):
        e2e_cluster.create_vnet(name, subnet)
    e2e_cluster.wait_ready(a)
    e2e_cluster.wait_ready(b)
    try:
        yield a, b
    finally:
        pods.cleanup()
        pods.created.clear()
        e2e_cluster.delete_vnet(a)
        e2e_cluster.delete_vnet(b)


@pytest.mark.subnets("hp", ("10.197.1.0/24", "10.197.2.0/24"))
def test_change_of_a_running_pods_networks_reaches_its_sandbox(pods: Pods, e2e_cluster: Cluster,
                                                               two_networks: Nets) -> None:
    cluster = e2e_cluster
    a, b = two_networks
    pods.run("peer", [{"name": a, "interface": "net0"}, {"name": b, "interface": "net1"}])
    one = pods.run("one", [{"name": a, "interface": "net0"}])
    peer_ip = {i["interface"]: i["ip_address"] for i in pods.iface_list("peer")}
    before = pods.iface_list("one")
    assert set(one.addresses()) == {"net0"}

    # -- add net1 on b, while a ping over net0 runs
    background = _ping_throughout(one, peer_ip["net0"])
    time.sleep(0.5)
    t0 = time.monotonic()
    _request(pods, "one", [{"name": a, "interface": "net0"}, {"name": b, "interface": "net1"}])
    wait_until(lambda: one.ping(peer_ip["net1"], count=1, wait=0.5), 60, 0.05,
               what="a ping over the hot-plugged net1")
    plug = time.monotonic() - t0
    assert plug < PLUG_WITHIN, f"the first ping over the hot-plugged net1 came {plug:.2f} s after the patch"
    sent, got, line = _loss(background)
    assert sent >= 50 and got == sent, f"the ping over net0 lost packets during the plug: {line}"
    after = pods.iface_list("one")
    assert after[0] == before[0], "the kept interface's result changed"
    have = one.addresses()
    assert have["net1"]["ipv4"] == [f"{after[1]['ip_address']}/24"]
    assert have["net1"]["mac"] == after[1]["mac_address"]
    wait_until(lambda: _plumbed(pods, "one") == {"net0": "plumbed", "net1": "plumbed"}, 30, 0.2,
               what="the agent's report of both interfaces plumbed")
    reasons = [e.reason for e in cluster.events(pods.ns, "one")]
    assert "InterfaceAdded" in reasons, reasons
    check_invariant(cluster, [a, b], timeout=30)

    # -- change net1's address: removed and added again with the new one
    _request(pods, "one", [{"name": a, "interface": "net0"},
                           {"name": b, "interface": "net1", "ip_address": "10.197.2.50"}])
    wait_until(lambda: one.addresses().get("net1", {}).get("ipv4") == ["10.197.2.50/24"], 60, 0.1,
               what="net1 re-plumbed with its new static address")
    assert one.ping(peer_ip["net1"], "-I", "10.197.2.50")
    assert pods.iface_list("one")[0] == before[0]
    check_invariant(cluster, [a, b], timeout=30)

    # -- remove net1: gone from the sandbox and from OVN, net0 untouched
    background = _ping_throughout(one, peer_ip["net0"], count=40)
    _request(pods, "one", [{"name": a, "interface": "net0"}])
    wait_until(lambda: set(one.addresses()) == {"net0"}, 60, 0.1, what="net1 removed from the sandbox")
    sent, got, line = _loss(background)
    assert got == sent, f"the ping over net0 lost packets during the removal: {line}"
    assert pods.iface_list("one") == before
    wait_until(lambda: _plumbed(pods, "one") == {"net0": "plumbed"}, 30, 0.2,
               what="the agent's report of net0 alone")
    assert not one.ping(peer_ip["net1"], count=1, wait=0.5)
    counts = check_invariant(cluster, [a, b], timeout=30)
    assert counts["ports"] == 3, counts   # peer's two, one's net0
    assert sandbox_invariant(cluster, pods.kubelet.sandboxes()) >= 3
    print(f"\nHOTPLUG e2e: ovnNetwork change -> first ping over the new interface {plug:.2f} s; "
          f"{sent} pings over the kept interface, none lost")


@pytest.mark.subnets("hf", ("10.197.3.0/24", "10.197.4.0/24"))
def test_flapping_requests_end_in_the_last_one_with_nothing_leaked(pods: Pods, e2e_cluster: Cluster,
                                                                   two_networks: Nets) -> None:
    """The user flips a running pod's second interface on and off 40 times, 50 ms apart (faster
    than either side finishes a change): the operator and the agent, both level-driven, end in the
    last request; the records, the NB ports, the result and what is plumbed agree, and no port,
    veth or address is left over."""
    cluster = e2e_cluster
    a, b = two_networks
    pods.run("peer", [{"name": b, "interface": "net0"}])
    one = pods.run("one", [{"name": a, "interface": "net0"}])
    peer_ip = pods.iface_list("peer")[0]["ip_address"]
    with_b = [{"name": a, "interface": "net0"}, {"name": b, "interface": "net1"}]
    without_b = [{"name": a, "interface": "net0"}]
    for i in range(40):
        _request(pods, "one", with_b if i % 2 == 0 else without_b)
        time.sleep(0.05)
    _request(pods, "one", with_b)   # the last word
    wait_until(lambda: [i["interface"] for i in pods.iface_list("one")] == ["net0", "net1"], 60, 0.2,
               what="the operator's result for the last request")
    wait_until(lambda: one.ping(peer_ip, count=1, wait=0.5), 60, 0.2, what="a ping over net1")
    counts = check_invariant(cluster, [a, b], timeout=60)
    assert counts["ports"] == 3, counts
    assert sandbox_invariant(cluster, pods.kubelet.sandboxes(), timeout=60) >= 3
    wait_until(lambda: _plumbed(pods, "one") == {"net0": "plumbed", "net1": "plumbed"}, 30, 0.2,
               what="the agent's report after the flapping")


@pytest.mark.subnets("hr", ("10.197.5.0/24", "10.197.6.0/24"))
def test_refused_change_leaves_the_pod_and_its_packets_alone(pods: Pods, e2e_cluster: Cluster,
                                                             two_networks: Nets) -> None:
    """A change the operator cannot serve (an unknown network, an address another pod holds) is
    refused where the user looks (`ovnNetworkError`, a `ChangeRefused` Event) and changes nothing
    the pod has: its result, its sandbox, and a ping over its interface running throughout loses
    nothing. Asking again for what the pod has clears the error."""
    cluster = e2e_cluster
    a, b = two_networks
    pods.run("peer", [{"name": a, "interface": "net0"}, {"name": b, "interface": "net1"}])
    one = pods.run("one", [{"name": a, "interface": "net0"}])
    peer_ip = {i["interface"]: i["ip_address"] for i in pods.iface_list("peer")}
    before, sandbox = pods.iface_list("one"), one.addresses()
    refusals = [
        ([{"name": a, "interface": "net0"}, {"name": uniq("nosuch"), "interface": "net1"}], "nosuch-"),
        ([{"name": a, "interface": "net0"}, {"name": b, "interface": "net1", "ip_address": peer_ip["net1"]}],
         peer_ip["net1"]),
    ]
    for request, named in refusals:
        background = _ping_throughout(one, peer_ip["net0"], count=30)
        _request(pods, "one", request)
        wait_until(lambda named=named: named in ((cluster.pod(pods.ns, "one").metadata.annotations or {})
                                     .get("ovnNetworkError") or ""), 30, 0.2, what=f"the refusal naming {named}")
        time.sleep(1)   # what a wrongly served change would have done by now (a plug takes ~0.2 s)
        sent, got, line = _loss(background)
        assert got == sent, f"the ping over net0 lost packets during a refused change: {line}"
        assert pods.iface_list("one") == before, "a refused change changed the result"
        assert one.addresses() == sandbox, "a refused change changed the sandbox"
        assert "ChangeRefused" in [e.reason for e in cluster.events(pods.ns, "one")]
        check_invariant(cluster, [a, b], timeout=30)
    _request(pods, "one", [{"name": a, "interface": "net0"}])
    wait_until(lambda: "ovnNetworkError" not in (cluster.pod(pods.ns, "one").metadata.annotations or {}),
               30, 0.2, what="the error cleared by asking for what the pod has")
    assert pods.iface_list("one") == before and one.ping(peer_ip["net0"])
    assert sandbox_invariant(cluster, pods.kubelet.sandboxes()) >= 3
