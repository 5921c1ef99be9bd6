"""Two nodes (issue 18): pods on different nodes share a virtual network through real Geneve
tunnels, each node's agent serves only its own pods, and losing a node loses nothing else.

A stack of its own with ``nodes=2`` (harness.stack): node-1 and node-2, each its own network
namespace, userspace OVS, ovn-controller (chassis node-1 / node-2, encap IPs 192.168.254.1/.2 on
the stack's private underlay bridge, harness.underlay) and CNI agent; pods are played by one
:class:`harness.kubelet.Kubelet` per node. Packets only travel between this stack's namespaces.
"""
from __future__ import annotations

import json
import re
import secrets
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.kit import Cluster, check_invariant, wait_until
from harness.kubelet import Kubelet, Sandbox
from harness.stack import Stack
from harness.underlay import encap_ip
from ovnvnet.model.names import port_name

from .conftest import OPERATOR_ENV, new_namespace

pytestmark = pytest.mark.timeout(300)

NET_A, NET_B = "tn-a", "tn-b"          # routed, both on ovnvnet-router
SUBNET_A, SUBNET_B = "10.181.0.0/24", "10.182.0.0/24"


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> Iterator[Stack]:
    s = Stack(Path(tmp_path_factory.mktemp("two")))
    try:
        # grown from one node, as `make up` then `make up NODES=2` does (node-1 moves its encap IP
        # from 127.0.0.1 to the underlay while running; a fresh two-node start is test_demo's)
        s.up(operator=False, dataplane=True)
        s.up(operator=False, nodes=2)
        s.start_operator(OPERATOR_ENV)
        yield s
    finally:
        s.down()


class Env:
    """The two-node stack, a Kubelet per node, one namespace; pods made here are removed at the end."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.cluster = Cluster(stack)
        self.kubelets = {n.name: Kubelet(stack, node=n.name) for n in stack.workers}
        self.ns = new_namespace(self.cluster)
        self.created: list[tuple[str, str]] = []

    def run(self, name: str, node: str, request: list[dict]) -> Sandbox:
        self.cluster.create_pod(self.ns, name, request, node=node)
        self.created.append((name, node))
        return self.kubelets[node].run_pod(self.ns, name)[0]

    def ip(self, name: str, iface: str = "eth1") -> str:
        return next(i["ip_address"] for i in self.cluster.iface_list(self.ns, name) if i["interface"] == iface)

    def cleanup(self) -> None:
        for name, node in self.created:
            self.kubelets[node].remove_pod(self.ns, name)


@pytest.fixture(scope="module")
def env(two: Stack) -> Iterator[Env]:
    e = Env(two)
    for net, subnet in ((NET_A, SUBNET_A), (NET_B, SUBNET_B)):
        e.cluster.create_vnet(net, subnet)
    for net in (NET_A, NET_B):
        e.cluster.wait_ready(net)
    yield e
    e.cleanup()


def appctl(stack: Stack, node: str, *args: str) -> str:
    ctl = stack.node_part(node).dir / "ovs-vswitchd.ctl"
    return subprocess.run(["ovs-appctl", "-t", str(ctl), *args], capture_output=True, text=True,
                          check=True).stdout


def dp_flows(stack: Stack, node: str) -> list[str]:
    return appctl(stack, node, "dpctl/dump-flows").splitlines()


def sbctl(stack: Stack, *args: str) -> str:
    return subprocess.run(["ovn-sbctl", f"--db={stack.sb_remote}", "--timeout=10", *args], capture_output=True,
                          text=True, check=True, env=stack.central.ovs_env()).stdout.strip()


def bound_chassis(stack: Stack, lsp: str) -> str:
    """The chassis (node) that claimed the logical port in the SB ("" if none)."""
    uuid = sbctl(stack, "--bare", "--columns=chassis", "find", "Port_Binding", f"logical_port={lsp}")
    return sbctl(stack, "--bare", "--columns=name", "list", "Chassis", uuid) if uuid else ""


def uniq(base: str) -> str:
    return f"{base}-{secrets.token_hex(2)}"


def on(net: str, gw: bool = False) -> list[dict]:
    return [{"name": net, "interface": "eth1", **({"defaultGateway": True} if gw else {})}]


# ---------------------------------------------------------------------------------------------
def test_stack_has_two_chassis_on_the_underlay(two: Stack):
    rows = sbctl(two, "--format=json", "--columns=chassis_name,ip,type", "list", "Encap")
    encaps = {r[0]: (r[1], r[2]) for r in json.loads(rows)["data"]}
    assert encaps == {"node-1": (encap_ip(1), "geneve"), "node-2": (encap_ip(2), "geneve")}
    # each node's OVS has a geneve tunnel port to the other chassis
    for node, other in (("node-1", "node-2"), ("node-2", "node-1")):
        out = two.node_part(node).dataplane().vsctl("--format=json", "--columns=name,type,options", "list", "Interface")
        tunnels = [r for r in json.loads(out)["data"] if r[1] == "geneve"]
        assert len(tunnels) == 1 and dict(tunnels[0][2][1])["remote_ip"] == encap_ip(int(other[-1])), tunnels


def test_cross_node_ping_is_encapsulated_and_port_security_holds(env: Env):
    a = env.run(uniq("xa"), "node-1", on(NET_A))
    b = env.run(uniq("xb"), "node-2", on(NET_A))
    ip_a, ip_b = env.ip(a.name), env.ip(b.name)
    assert a.ping(ip_b) and b.ping(ip_a)

    # encapsulation: the underlay carries every echo request and reply (the ports of node-1 and
    # node-2 on the underlay bridge), and the datapath flows push/pop Geneve between 192.168.254.1/.2
    ul = env.stack.underlay()
    before = {i: ul.counters(i) for i in (1, 2)}
    assert a.ping(ip_b, count=20)
    after = {i: ul.counters(i) for i in (1, 2)}
    # the bridge's port of node-1 receives what node-1 sends (rx) and vice versa
    assert after[1]["rx_packets"] - before[1]["rx_packets"] >= 20
    assert after[2]["tx_packets"] - before[2]["tx_packets"] >= 20
    assert after[2]["rx_packets"] - before[2]["rx_packets"] >= 20   # the replies
    push = [f for f in dp_flows(env.stack, "node-1")
            if f"ipv4(src={ip_a}" in f and "tnl_push(" in f and "geneve(" in f]
    assert push, dp_flows(env.stack, "node-1")
    assert f"ipv4(src={encap_ip(1)},dst={encap_ip(2)}" in push[0] and "dst=6081" in push[0]
    assert any("tnl_pop(" in f for f in dp_flows(env.stack, "node-2"))

    # port security across the tunnel: a source address the pod was not given is dropped on
    # node-1's br-int, before the tunnel (the echo never reaches b; its valid twin does)
    spoofed = ip_a.rsplit(".", 1)[0] + ".250"
    a.run("ip", "addr", "add", f"{spoofed}/32", "dev", "eth1", check=True)
    try:
        assert not a.ping(ip_b, "-I", spoofed, count=5)
        drops = [f for f in dp_flows(env.stack, "node-1") if f"src={spoofed}" in f]
        assert drops and all(f.rstrip().endswith("actions:drop") for f in drops), drops
        assert not any(f"src={spoofed}" in f for f in dp_flows(env.stack, "node-2"))
    finally:
        a.run("ip", "addr", "del", f"{spoofed}/32", "dev", "eth1")
    assert a.ping(ip_b)
    check_invariant(env.cluster)


def test_routed_networks_across_nodes(env: Env):
    a = env.run(uniq("ra"), "node-1", on(NET_A, gw=True))
    b = env.run(uniq("rb"), "node-2", on(NET_B, gw=True))
    ip_a, ip_b = env.ip(a.name), env.ip(b.name)
    assert any(r.startswith("default via 10.181.0.1 dev eth1") for r in a.routes())
    assert a.ping(ip_b) and b.ping(ip_a)
    # through ovnvnet-router: the TTL is decremented once on the way
    out = a.run("ping", "-n", "-c", "1", "-W", "2", ip_b).stdout
    assert re.search(r"ttl=63\b", out), out
    check_invariant(env.cluster)


def test_agent_refuses_a_pod_bound_to_another_node(env: Env):
    name = uniq("elsewhere")
    env.cluster.create_pod(env.ns, name, on(NET_A), node="node-2")
    env.created.append((name, "node-2"))
    env.cluster.iface_list(env.ns, name)  # the operator has answered: only the node is wrong
    k1 = env.kubelets["node-1"]
    pod = env.cluster.pod(env.ns, name)
    sb = Sandbox(namespace=env.ns, name=name, uid=pod.metadata.uid, container_id=secrets.token_hex(32),
                 netns=env.stack.worker.pod_netns_prefix + secrets.token_hex(4), ifname="eth1")
    subprocess.run(["ip", "netns", "add", sb.netns], check=True)
    try:
        outcome = k1.cni("add", sb)   # node-1's runtime, node-1's agent
        assert not outcome.ok
        # (libcni wraps the plugin's error object: its msg and details follow the plugin's name)
        assert (f"pod {env.ns}/{name} is bound to node node-2 (spec.nodeName), not to this node node-1: "
                "the ovnvnet agent serves only pods bound to its own node") in outcome.message, outcome
        # refused at once, not after the annotation wait (30 s in the conflist)
        assert outcome.seconds < 20, outcome
        links = json.loads(sb.run("ip", "-j", "link", "show", check=True).stdout)
        assert [link["ifname"] for link in links] == ["lo"]   # nothing plumbed
        k1.cni("del", sb)
    finally:
        subprocess.run(["ip", "netns", "del", sb.netns], capture_output=True)
    # its own node's agent plumbs it
    sandbox, _ = env.kubelets["node-2"].run_pod(env.ns, name)
    assert sandbox.addresses()["eth1"]["ipv4"] == [f"{env.ip(name)}/24"]


def test_agent_restart_while_other_node_attaches(env: Env):
    peer = env.run(uniq("peer"), "node-2", on(NET_A))
    attached: list[Sandbox] = []
    errors: list[BaseException] = []

    def attach_on_node1() -> None:
        try:
            for _ in range(4):
                attached.append(env.run(uniq("busy"), "node-1", on(NET_A)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    worker = threading.Thread(target=attach_on_node1)
    worker.start()
    node2 = env.stack.node_part("node-2")
    node2.stop_agent()
    assert not env.stack.running(node2.AGENT)
    node2.start_agent()
    worker.join(120)
    assert not errors and len(attached) == 4, errors
    # the restarted agent serves node-2 again, and every new node-1 pod reaches node-2's pods
    fresh = env.run(uniq("fresh"), "node-2", on(NET_A))
    for sb in attached:
        assert sb.ping(env.ip(peer.name)) and sb.ping(env.ip(fresh.name))
    check_invariant(env.cluster)


def test_node_loss_and_recovery(env: Env):
    """Stop node-2 (agent, ovn-controller, OVS: its namespaces go): node-1's pods keep working.
    The lost node's pods are deleted (as the node lifecycle controller would: force, grace 0): one
    while the operator runs (released on its DELETED event), one while it is down (released by
    the sweep: gone on two consecutive passes), and one using an IPClaim (its address passes to
    the claim). Recreated on node-1, they get addresses again, the claimed one the same."""
    stack, cluster = env.stack, env.cluster
    keep = env.run(uniq("keep"), "node-1", on(NET_A))
    keep2 = env.run(uniq("keep2"), "node-1", on(NET_A))
    lost = [env.run(uniq("lost"), "node-2", on(NET_A)) for _ in range(2)]
    # and one whose address outlives it: an IPClaim (issue 15)
    claim = uniq("db")
    cluster.custom.create_namespaced_custom_object("ovnvnet.io", "v1", env.ns, "ipclaims", {
        "apiVersion": "ovnvnet.io/v1", "kind": "IPClaim", "metadata": {"name": claim},
        "spec": {"network": NET_A, "interface": "eth1"}})
    claimed = [{**on(NET_A)[0], "claim": claim}]
    lost.append(env.run(uniq("lostc"), "node-2", claimed))
    lost_ips = {sb.name: env.ip(sb.name) for sb in lost}
    requests = {sb.name: claimed if sb is lost[-1] else on(NET_A) for sb in lost}
    assert keep.ping(lost_ips[lost[0].name])
    check_invariant(cluster)

    node2 = stack.node_part("node-2")
    node2.stop()
    try:
        assert not any(ns.startswith(node2.own_prefix) for ns in node2.stack_netns())
        assert bound_chassis(stack, port_name(env.ns, lost[0].name, "eth1")) in ("", "node-2")
        assert keep.ping(env.ip(keep2.name)) and keep.ping("10.181.0.1")   # node-1 unaffected
        assert not keep.ping(lost_ips[lost[0].name], count=1)
        check_invariant(cluster)

        def released(name: str) -> bool:
            return not any(e["pod"] == f"{env.ns}/{name}" for e in cluster.allocations(NET_A).values())

        # the node lifecycle controller's deletion, operator up: released on the event (the
        # claimed address passes to its claim)
        for sb in (lost[0], lost[2]):
            cluster.core.delete_namespaced_pod(sb.name, env.ns, grace_period_seconds=0)
            wait_until(lambda sb=sb: released(sb.name), 30, what=f"{sb.name}'s address released")
        held = cluster.allocations(NET_A)[lost_ips[lost[2].name]]
        assert held["pod"] == f"ipclaim {env.ns}/{claim}", held
        check_invariant(cluster)
        # operator down meanwhile: the sweep releases it after the restart (two passes)
        stack.stop_operator()
        cluster.core.delete_namespaced_pod(lost[1].name, env.ns, grace_period_seconds=0)
        wait_until(lambda: not cluster.pod_exists(env.ns, lost[1].name), 30, what="pod gone")
        assert not released(lost[1].name)        # nobody released it yet
        stack.start_operator(OPERATOR_ENV)
        wait_until(lambda: released(lost[1].name), 60, what=f"{lost[1].name}'s address released by the sweep")
        check_invariant(cluster)
        for sb in lost:   # the played kubelet of the dead node forgets them (its netns are gone)
            env.kubelets["node-2"]._record(f"{env.ns}/{sb.name}", None)
        env.created = [(n, node) for n, node in env.created if n not in lost_ips]

        # recreated on the surviving node: addresses again (the claim's: the same), traffic again
        for name in lost_ips:
            sb = env.run(name, "node-1", requests[name])
            assert sb.ping(env.ip(keep.name))
        assert env.ip(lost[2].name) == lost_ips[lost[2].name]
        check_invariant(cluster)
    finally:
        node2.start()
    # the node comes back: its chassis and tunnels again, a pod on it reaches node-1
    back = env.run(uniq("back"), "node-2", on(NET_A))
    wait_until(lambda: back.ping(env.ip(keep.name), count=1), 30, what="node-2 back on the overlay")
    # the recreated pods stay node-1's: the returning node's stale OVS rows (their old ports, the
    # veths gone) claim nothing in the SB
    for name in lost_ips:
        assert back.ping(env.ip(name)), name
    for name in lost_ips:
        assert bound_chassis(stack, port_name(env.ns, name, "eth1")) == "node-1"
    check_invariant(cluster)


def test_a_third_node_joins_and_every_pair_of_nodes_talks(env: Env):
    """N > 2: the running stack grows to three nodes (as `make up NODES=3` does on a running one):
    node-3 gets its chassis and encap IP, a Geneve tunnel to each other node and each other node
    one to it, and pods on the three nodes reach each other pairwise, every path encapsulated."""
    stack = env.stack
    stack.up(operator=False, nodes=3)
    env.kubelets["node-3"] = Kubelet(stack, node="node-3")
    rows = json.loads(sbctl(stack, "--format=json", "--columns=chassis_name,ip", "list", "Encap"))["data"]
    assert {r[0]: r[1] for r in rows} == {f"node-{i}": encap_ip(i) for i in (1, 2, 3)}
    pods = {node: env.run(uniq(f"tri{node[-1]}"), node, on(NET_A)) for node in ("node-1", "node-2", "node-3")}
    ips = {node: env.ip(sb.name) for node, sb in pods.items()}
    for src, sb in pods.items():
        for dst, ip in ips.items():
            if src != dst:
                assert sb.ping(ip), f"{src} -> {dst}"
        # every other node is reached through a Geneve push from this node's encap IP
        me = encap_ip(int(src[-1]))
        pushed = {m.group(2) for f in dp_flows(stack, src)
                  if (m := re.search(r"tnl_push\(.*?ipv4\(src=([\d.]+),dst=([\d.]+)", f)) and m.group(1) == me}
        assert pushed >= {encap_ip(i) for i in (1, 2, 3) if encap_ip(i) != me}, (src, pushed)
    check_invariant(env.cluster)
