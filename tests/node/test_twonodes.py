"""Two REAL nodes (issue 18 on issue 12's kind of node): node-1 and node-2, each its own network
namespace, OVS + ovn-controller (own chassis and encap IP on the stack's private underlay),
CNI agent, containerd and kubelet (harness.realnode.up_nodes). Busybox pods on both, checked from
inside the containers (`kubectl exec`):

- both nodes Ready, each with an InternalIP of its own (127.0.0.1, 127.0.0.2: where the relay to
  its kubelet listens), which its pods report as hostIP; podIPs from each node's own default
  network (10.85.0.0/24, 10.85.1.0/24);
- a container on node-1 pings one on node-2 over their OVN network: the underlay carries it and
  node-1's datapath pushes Geneve (tnl_push to 192.168.254.2), node-2's pops it;
- node-2 is lost (kubelet, containers, containerd, agent, ovn-controller and OVS killed) and its
  pods are deleted (force, as the node lifecycle controller does): node-1's pods keep working (a
  ping between them running throughout loses nothing), the lost pods' addresses are released,
  the invariant holds, and a lost pod recreated on node-1 gets an address and pings.

In `make test` (and `make e2e-node`): two kubelets and containerds take about a minute and a
half to start; the module about two minutes. Packets only travel between network namespaces the run created.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.kit import Cluster, check_invariant, wait_until
from harness.realnode import RealNode, up_nodes
from harness.stack import KUBE_BIN, Stack
from harness.underlay import encap_ip

pytestmark = pytest.mark.timeout(900)

NS, NET, SUBNET, GW = "two", "tn-a", "10.181.0.0/24", "10.181.0.1"
OPERATOR_ENV = {"OVNVNET_SWEEP_INTERVAL": "1", "OVNVNET_RETRY_INTERVAL": "1"}


@pytest.fixture(scope="module")
def nodes(tmp_path_factory) -> Iterator[list[RealNode]]:
    assert (KUBE_BIN / "kubelet").exists(), "run `make node-bootstrap` first (kubelet build)"
    stack = Stack(Path(os.environ.get("OVNVNET_E2E_STACK") or tmp_path_factory.mktemp("rn2")))
    stack.state["operator_env"] = OPERATOR_ENV
    t0 = time.monotonic()
    try:
        rns = up_nodes(stack, 2)
        print(f"stack + 2 real nodes up in {time.monotonic() - t0:.1f}s")
        cluster = Cluster(stack)
        stack.kubectl("create", "namespace", NS)
        cluster.create_vnet(NET, SUBNET)
        cluster.wait_ready(NET)
        yield rns
    finally:  # every real node first (Stack.down stops them, harness.realnode.nodes_of), then the stack
        stack.down(remove=not os.environ.get("OVNVNET_KEEP_STACK"))


def pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS,
                         "annotations": {"ovnNetwork": json.dumps([{"name": NET, "interface": "net0"}])}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "app", "image": "localhost/busybox:1", "imagePullPolicy": "Never",
                                     "command": ["sleep", "100000"]}]}}


def run(s: Stack, name: str, node: str) -> str:
    """Create the pod on `node`, wait until Ready; its OVN address."""
    s.kubectl("apply", "-f", "-", input=json.dumps(pod(name, node)))
    s.kubectl("wait", "-n", NS, "--for=condition=Ready", f"pod/{name}", "--timeout=180s")
    return ip_of(s, name)


def ip_of(s: Stack, name: str) -> str:
    ann = json.loads(s.kubectl("get", "pod", "-n", NS, name, "-o", "json").stdout)["metadata"]["annotations"]
    return json.loads(ann["ovnIfaceList"])[0]["ip_address"]


def kube_pod(s: Stack, name: str) -> dict:
    return json.loads(s.kubectl("get", "pod", "-n", NS, name, "-o", "json").stdout)


def ping(s: Stack, name: str, ip: str, count: int = 1) -> bool:
    return s.kubectl("exec", "-n", NS, name, "--", "ping", "-c", str(count), "-i", "0.2", "-W", "2", ip,
                     check=False).returncode == 0


def dp_flows(s: Stack, node: str) -> list[str]:
    ctl = s.node_part(node).dir / "ovs-vswitchd.ctl"
    return subprocess.run(["ovs-appctl", "-t", str(ctl), "dpctl/dump-flows"], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def test_pods_on_two_real_nodes_ping_across_geneve(nodes):
    s = nodes[0].stack
    for rn in nodes:
        node = json.loads(s.kubectl("get", "node", rn.name, "-o", "json").stdout)
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"]), rn.name
        internal = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
        assert internal == [rn.internal_ip], (rn.name, internal)
    assert [rn.internal_ip for rn in nodes] == ["127.0.0.1", "127.0.0.2"]
    ip_a, ip_b = run(s, "pod-a", "node-1"), run(s, "pod-b", "node-2")
    for name, rn in (("pod-a", nodes[0]), ("pod-b", nodes[1])):
        st = kube_pod(s, name)["status"]
        assert st["hostIP"] == rn.internal_ip, (name, st["hostIP"])
        assert st["podIP"].startswith(rn.default_subnet.rsplit(".", 2)[0] + "."), (name, st["podIP"])
    # each node's agent plumbed its own pod: the OVS port is on that node's br-int
    for name, rn in (("pod-a", nodes[0]), ("pod-b", nodes[1])):
        ports = rn.part.dataplane().vsctl("--bare", "--columns=name", "find", "Interface",
                                          f"external_ids:iface-id={NS}_{name}_net0").split()
        assert len(ports) == 1, (name, rn.name, ports)
    assert ping(s, "pod-a", ip_b) and ping(s, "pod-b", ip_a)
    ul = s.underlay()
    before = {i: ul.counters(i) for i in (1, 2)}
    assert ping(s, "pod-a", ip_b, count=20)
    after = {i: ul.counters(i) for i in (1, 2)}
    assert after[1]["rx_packets"] - before[1]["rx_packets"] >= 20, (before, after)
    assert after[2]["tx_packets"] - before[2]["tx_packets"] >= 20, (before, after)
    push = [f for f in dp_flows(s, "node-1") if f"ipv4(src={ip_a}" in f and "tnl_push(" in f and "geneve(" in f]
    assert push, dp_flows(s, "node-1")
    assert f"ipv4(src={encap_ip(1)},dst={encap_ip(2)}" in push[0] and "dst=6081" in push[0], push[0]
    assert any("tnl_pop(" in f for f in dp_flows(s, "node-2"))
    assert ping(s, "pod-b", GW)
    check_invariant(Cluster(s), [NET], timeout=30)
    print(f"pod-a (node-1, {ip_a}) <-> pod-b (node-2, {ip_b}): 20 pings over Geneve 192.168.254.1 -> .2")


def test_node_lost_the_other_nodes_pods_keep_working(nodes):
    s, cluster = nodes[0].stack, Cluster(nodes[0].stack)
    def have(name: str, node: str) -> str:  # made by the test before, or here when run alone
        exists = s.kubectl("get", "pod", "-n", NS, name, check=False).returncode == 0
        return ip_of(s, name) if exists else run(s, name, node)

    ip_a, ip_a2 = have("pod-a", "node-1"), run(s, "pod-a2", "node-1")
    lost = {"pod-b": have("pod-b", "node-2"), "pod-b2": run(s, "pod-b2", "node-2")}
    assert ping(s, "pod-a", lost["pod-b"]) and ping(s, "pod-a", ip_a2)
    check_invariant(cluster, [NET], timeout=30)

    # a ping between node-1's pods running throughout (60 at 0.25 s)
    pinger = subprocess.Popen([str(s.root / "bin" / "kubectl"), f"--kubeconfig={s.kubeconfig}", "exec", "-n", NS,
                               "pod-a", "--", "ping", "-c", "60", "-i", "0.25", "-W", "1", ip_a2],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1)
    took = nodes[1].lose()
    assert nodes[1].shims() == [] and not s.running(nodes[1].proc("kubelet"))
    assert not s.running(nodes[1].part.AGENT)
    assert not ping(s, "pod-a", lost["pod-b"])
    # the node lifecycle controller's deletion of the lost node's pods (force: no kubelet answers)
    for name in lost:
        s.kubectl("delete", "pod", "-n", NS, name, "--force", "--grace-period=0", check=False)
    for name, ip in lost.items():
        wait_until(lambda ip=ip: ip not in cluster.allocations(NET), 30, what=f"{name}'s {ip} released")
    out, _ = pinger.communicate(timeout=60)
    assert "60 packets transmitted, 60 packets received" in out, out
    assert ping(s, "pod-a", ip_a2) and ping(s, "pod-a2", GW)
    counts = check_invariant(cluster, [NET], timeout=30)
    print(f"node-2 lost in {took:.1f}s: 60 pings between node-1's pods, none lost; invariant {counts}")
    # a lost pod recreated on the surviving node: an address again, traffic again
    ip_new = run(s, "pod-b", "node-1")
    assert ping(s, "pod-b", ip_a) and ping(s, "pod-a", ip_new)
    check_invariant(cluster, [NET], timeout=30)
