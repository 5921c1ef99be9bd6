"""The install as pods on the REAL node (issue 12, step 4): `kubectl apply -k
manifests/overlays/local-node` runs the operator Deployment (2 replicas, leader election, the
webhook behind its Service), the agent DaemonSet (its init step installs the shim and the CNI
configuration on the node), RBAC, ConfigMaps and the seal Secret as pods under their
ServiceAccounts; NOTHING of ovnvnet runs as a local process. Then the seed's scenario with
real busybox containers, checked from inside them (`kubectl exec`).

Runs only with OVNVNET_E2E_NODE=1 (`make e2e-node`). Packets only travel between network
namespaces the run created (the node's and the pods').
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.kit import check_invariant, sandbox_invariant, wait_until
from harness.realnode import RealNode
from harness.stack import KUBE_BIN, Stack

from .test_realnode import GW25, GW26, NS, _pod, addresses, exec_, invalid_pod_stays_creating, ping
from .test_realnode import seed as seed  # a fixture, shared with test_realnode (explicit re-export)

pytestmark = pytest.mark.timeout(900)

SYSTEM = "ovnvnet-system"
SEL = "app.kubernetes.io/name=ovnvnet-operator"


def installed_node(tmp_path_factory, prefix: str, **kw) -> Iterator[RealNode]:
    """A stack with a real node and ovnvnet installed as pods (`kw`: RealNode's, e.g.
    installer="helm"), torn down afterwards. The body of the modules' `node` fixtures."""
    assert (KUBE_BIN / "kubelet").exists(), "run `make node-bootstrap` first (kubelet build)"
    assert (KUBE_BIN / "kube-scheduler").exists(), "run `make node-bootstrap` first (kube-scheduler build)"
    stack = Stack(Path(os.environ.get("OVNVNET_E2E_STACK") or tmp_path_factory.mktemp(prefix)))
    n = RealNode(stack, install=True, **kw)
    t0 = time.monotonic()
    try:
        n.up(operator=False)
        print(f"stack + real node + install ({kw or 'kustomize'}) up in {time.monotonic() - t0:.1f}s")
        yield n
    finally:
        n.stop()
        stack.down(remove=not os.environ.get("OVNVNET_KEEP_STACK"))


def background_pings(s: Stack, pod: str, target: str, count: int) -> subprocess.Popen:
    """`count` pings at 0.25 s from inside `pod` (namespace NS) to `target`, running meanwhile."""
    return subprocess.Popen([str(s.root / "bin" / "kubectl"), f"--kubeconfig={s.kubeconfig}", "exec", "-n", NS,
                             pod, "--", "ping", "-c", str(count), "-i", "0.25", "-W", "1", target],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[RealNode]:
    yield from installed_node(tmp_path_factory, "rni")


def pods(n: RealNode, selector: str) -> list[dict]:
    out = n.stack.kubectl("get", "pods", "-n", SYSTEM, "-l", selector, "-o", "json")
    return json.loads(out.stdout)["items"]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def leader(n: RealNode) -> str:
    out = n.stack.kubectl("get", "lease", "-n", SYSTEM, "ovnvnet-operator", "-o", "json", check=False)
    return json.loads(out.stdout)["spec"].get("holderIdentity") or "" if out.returncode == 0 else ""


def container_task(n: RealNode, pod: dict, name: str) -> str:
    """The containerd task id of container `name` of `pod` (the CRI container id)."""
    status = next(c for c in pod["status"]["containerStatuses"] if c["name"] == name)
    return status["containerID"].split("://", 1)[1]


def test_install_runs_as_pods_under_service_accounts(node):
    s = node.stack
    ops = pods(node, "app.kubernetes.io/name=ovnvnet-operator")
    agents = pods(node, "app.kubernetes.io/name=ovnvnet-agent")
    assert len(ops) == 2 and all(ready(p) for p in ops), [(p["metadata"]["name"], p["status"]) for p in ops]
    assert len(agents) == 1 and ready(agents[0]), agents[0]["status"]
    for pod, sa in [(p, "ovnvnet-operator") for p in ops] + [(agents[0], "ovnvnet-agent")]:
        assert pod["spec"]["serviceAccountName"] == sa
        # the ServiceAccount admission mounted its token: the pod talks to the API as that identity
        mounts = [m["mountPath"] for c in pod["spec"]["containers"] for m in c.get("volumeMounts", [])]
        assert "/var/run/secrets/kubernetes.io/serviceaccount" in mounts, mounts
        assert pod["status"]["containerStatuses"][0]["image"].endswith("localhost/ovnvnet:dev")
    # the operator pods: own network namespaces on the default network only (not hostNetwork)
    for p in ops:
        assert not p["spec"].get("hostNetwork") and p["status"]["podIP"].startswith("10.85.0."), p["status"]
        assert p["spec"]["runtimeClassName"] == "ovnvnet-default-net"
    # one leader among the two replicas, serving the webhook behind its Service
    holder = leader(node)
    assert holder in {p["metadata"]["name"] for p in ops}, holder
    ep = json.loads(s.kubectl("get", "endpoints", "-n", SYSTEM, "ovnvnet-webhook", "-o", "json").stdout)
    addrs = [a.get("targetRef", {}).get("name") for sub in ep.get("subsets", []) for a in sub.get("addresses", [])]
    assert addrs == [holder], ep
    # the seal Secret, created by the operator under its ServiceAccount
    s.kubectl("get", "secret", "-n", SYSTEM, "ovnvnet-seal")
    # the agent's init step installed the shim (a file, not the stack's link) and the conflist
    shim = node.cni_bin / "ovn-k8s-cni-overlay"
    assert shim.is_file() and not shim.is_symlink() and os.access(shim, os.X_OK)
    conf = json.loads((node.cni_conf / "20-ovnvnet.conflist").read_text())
    assert conf["plugins"][0]["agentSocket"] == f"{node.local_root}/agent/cni.sock"
    # nothing of ovnvnet runs as a local process of this stack: its 3 processes (2 operators, the
    # agent) descend from this node's containerd shims; none is this stack's own process
    assert not s.running("operator") and not s.running(s.worker.AGENT), s.status()
    shims = set(node.shims())
    procs = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if _runs_ovnvnet(pid)]
    contained = [pid for pid in procs if shims & _ancestors(pid)]
    assert len(contained) == 3, (procs, contained)
    local = [pid for pid in procs if pid not in contained and str(s.root) in _environ(pid)]
    assert local == [], local


def _runs_ovnvnet(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"-m" in argv[:3] and any(a.startswith(b"ovnvnet") for a in argv[1:4])


def _ancestors(pid: int) -> set[int]:
    out = set()
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        out.add(pid)
    return out


def _environ(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace") + \
            Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_seed_pods_interfaces_and_pings_from_inside(node, seed):
    ips = seed["ips"]
    have = addresses(node, "pod-ovn")
    assert have["net1"]["mac"] == "0a:00:00:00:00:15" and have["net1"]["ipv4"] == ["172.16.26.3/24"]
    assert have["net0"]["ipv4"] == [f"{ips['pod-ovn']['net0']['ip_address']}/24"]
    assert have["net0"]["mac"] == ips["pod-ovn"]["net0"]["mac_address"]
    assert "default via 172.16.25.1 dev eth1" in exec_(node, "pod-core", "ip", "route").stdout
    assert ping(node, "pod-ovn", ips["pod-two"]["net0"]["ip_address"])
    assert ping(node, "pod-two", "172.16.26.3")
    for pod in ("pod-ovn", "pod-two"):
        assert ping(node, pod, GW25) and ping(node, pod, GW26), pod
    assert ping(node, "pod-core", ips["pod-edge"]["eth1"]["ip_address"])
    # the result the agent acted on is sealed by the operator pod's key (the installed Secret)
    assert "ovnvnet.io/seal" in seed["cluster"].annotations(NS, "pod-ovn")


def test_webhook_pod_refuses_an_invalid_ovnnetwork_at_apply(node, seed):
    bad = _pod("pod-refused", [{"name": "ovn-ls-26", "interface": "net1",
                                "ip_address": "172.16.2526.3", "mac_address": "0a:00:00:00:00:16"}])
    out = node.stack.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert out.returncode != 0, out.stdout
    assert "ovnnetwork.ovnvnet.io" in out.stderr and "172.16.2526.3" in out.stderr, out.stderr
    got = node.stack.kubectl("get", "pod", "-n", NS, "pod-refused", check=False)
    assert got.returncode != 0 and "NotFound" in got.stderr


def test_invalid_pod_failed_sandbox_with_the_operator_pods_message(node, seed):
    """Where the webhook does not look (a namespace labelled `ovnvnet.io/admission: skip`), the
    invalid pod is admitted; the operator pod refuses it (ovnNetworkError) and the real kubelet
    reports FailedCreatePodSandBox with that message; the pod stays ContainerCreating."""
    node.stack.kubectl("create", "namespace", "seed-unchecked")
    node.stack.kubectl("label", "namespace", "seed-unchecked", "ovnvnet.io/admission=skip")
    node.wait_service_account("seed-unchecked")
    msg = invalid_pod_stays_creating(node, "pod-bad", ns="seed-unchecked")
    err = seed["cluster"].annotations("seed-unchecked", "pod-bad").get("ovnNetworkError", "")
    assert "172.16.2526.3" in err, err
    print(f"FailedCreatePodSandBox: {msg[:300]}")


# ---------------------------------------------------------------- hot-plug (issue 16) on the real node
HP = "pod-hp"


class Container:
    """A pod's container seen from inside (kubectl exec), as harness.kit.sandbox_invariant
    wants a sandbox: its OVN interfaces only (not lo, not the default network's eth0)."""

    def __init__(self, node: RealNode, name: str, namespace: str = NS):
        self.node, self.name, self.namespace = node, name, namespace

    def addresses(self) -> dict[str, dict]:
        return {i: v for i, v in addresses(self.node, self.name).items() if i not in ("lo", "eth0")}


def request(node: RealNode, name: str, req: list[dict]) -> None:
    """The user's change: `kubectl annotate --overwrite` of the pod's ovnNetwork."""
    node.stack.kubectl("annotate", "--overwrite", "pod", "-n", NS, name, f"ovnNetwork={json.dumps(req)}")


def plumbed(cluster, name: str) -> dict:
    from ovnvnet.cni.hotplug import STATUS_ANNOTATION
    return json.loads(cluster.annotations(NS, name).get(STATUS_ANNOTATION) or "{}")


def result(cluster, name: str) -> dict[str, dict]:
    return {i["interface"]: i for i in json.loads(cluster.annotations(NS, name)["ovnIfaceList"])}


def loss(proc: subprocess.Popen) -> tuple[int, int, str]:
    out, _ = proc.communicate(timeout=120)
    line = next((li for li in out.splitlines() if "transmitted" in li), "")
    sent, got = (int(x.split()[0]) for x in line.split(",")[:2]) if line else (0, 0)
    return sent, got, out


def nb_ports(cluster, name: str) -> set[str]:
    return {p for p in cluster.nb_pod_ports() if p.startswith(f"{NS}_{name}_")}


def test_hotplug_add_in_a_running_container_then_del(node, seed):
    """The `make test` share of hot-plug on the real node (the whole story is the e2e_node test
    below, about 2 minutes on the loaded machine): a running busybox container with net0 gets
    net1 by a change of its `ovnNetwork`; it appears inside with the result's address and MAC and
    pings; the agent pod, under its ServiceAccount, reports it (`ovnvnet.io/plumbed`, an
    `InterfaceAdded` Event); deleting the pod, the runtime's DEL removes the hot-plugged interface
    too (OVS ports, NB ports, addresses)."""
    s, cluster, ips = node.stack, seed["cluster"], seed["ips"]
    name, peer1 = "pod-hpa", ips["pod-ovn"]["net1"]["ip_address"]
    one = [{"name": "ovn-ls-25", "interface": "net0"}]
    s.kubectl("apply", "-f", "-", input=json.dumps(_pod(name, one)))
    s.kubectl("wait", "-n", NS, "--for=condition=Ready", f"pod/{name}", "--timeout=120s")
    box = Container(node, name)
    assert set(box.addresses()) == {"net0"}
    t0 = time.monotonic()
    request(node, name, [*one, {"name": "ovn-ls-26", "interface": "net1"}])
    wait_until(lambda: ping(node, name, peer1), 60, interval=0.2, what="a ping over the hot-plugged net1")
    plug = time.monotonic() - t0
    res, have = result(cluster, name), box.addresses()
    assert have["net1"]["ipv4"] == [f"{res['net1']['ip_address']}/24"], have
    assert have["net1"]["mac"] == res["net1"]["mac_address"], have
    wait_until(lambda: plumbed(cluster, name) == {"net0": "plumbed", "net1": "plumbed"}, 30, interval=0.3,
               what="the agent pod's report of both interfaces plumbed")
    assert "InterfaceAdded" in [e.reason for e in cluster.events(NS, name)]
    ports = set(s.dataplane().vsctl("--bare", "--columns=name", "find", "Interface",
                                    f"external_ids:iface-id={NS}_{name}_net1").split())
    assert len(ports) == 1, ports
    s.kubectl("delete", "pod", "-n", NS, name, "--timeout=60s")
    wait_until(lambda: not nb_ports(cluster, name), 30, what=f"{name}'s NB ports removed")
    wait_until(lambda: not ports & set(s.dataplane().vsctl("list-ports", "br-int").split()), 30,
               what="the hot-plugged net1's OVS port removed by DEL")
    assert not ports & veths(node)
    for iface, net in (("net0", "ovn-ls-25"), ("net1", "ovn-ls-26")):
        ip = res[iface]["ip_address"]
        wait_until(lambda ip=ip, net=net: ip not in cluster.allocations(net), 30, what=f"{ip} freed in {net}")
    print(f"HOTPLUG real node (subset): first ping over net1 from inside {plug:.2f} s after the change")


@pytest.mark.e2e_node
def test_hotplug_in_a_running_container_add_change_remove_then_del(node, seed):
    """Issue 16 on the real node, ovnvnet installed as pods: a running busybox container with one
    OVN interface (net0 on ovn-ls-25) gets a second (net1 on ovn-ls-26) by a change of its
    `ovnNetwork`; the agent pod (under its ServiceAccount: pods patch, events create) plumbs it
    into the sandbox containerd made (its netns under /var/run/netns) and reports it
    (`ovnvnet.io/plumbed`, Events). A ping over net0 from inside runs throughout each change and
    loses nothing. Then net1's static address changes, net1 is removed (port and address
    released), added again, and the pod is deleted: the runtime's DEL removes the hot-plugged
    interface too (no veth, OVS port, NB port or address left)."""
    s, cluster, ips = node.stack, seed["cluster"], seed["ips"]
    peer0, peer1 = ips["pod-ovn"]["net0"]["ip_address"], ips["pod-ovn"]["net1"]["ip_address"]
    one = [{"name": "ovn-ls-25", "interface": "net0"}]
    two = [*one, {"name": "ovn-ls-26", "interface": "net1"}]
    base_ports = set(s.dataplane().vsctl("list-ports", "br-int").split())
    s.kubectl("apply", "-f", "-", input=json.dumps(_pod(HP, one)))
    s.kubectl("wait", "-n", NS, "--for=condition=Ready", f"pod/{HP}", "--timeout=120s")
    box = Container(node, HP)
    before = result(cluster, HP)
    assert set(box.addresses()) == {"net0"} and ping(node, HP, peer0)
    ports0, veths0 = set(s.dataplane().vsctl("list-ports", "br-int").split()), veths(node)

    # -- add net1 while a ping over net0 runs (24 at 0.25 s: 6 s)
    pinger = background_pings(s, HP, peer0, 24)
    time.sleep(1)
    t0 = time.monotonic()
    request(node, HP, two)
    wait_until(lambda: ping(node, HP, peer1), 60, interval=0.2, what="a ping over the hot-plugged net1")
    plug = time.monotonic() - t0
    sent, got, out = loss(pinger)
    assert sent == 24 and got == sent, f"the ping over net0 lost packets during the plug: {out}"
    res = result(cluster, HP)
    assert res["net0"] == before["net0"], "the kept interface's result changed"
    have = box.addresses()
    assert set(have) == {"net0", "net1"}, have
    assert have["net1"]["ipv4"] == [f"{res['net1']['ip_address']}/24"], have
    assert have["net1"]["mac"] == res["net1"]["mac_address"], have
    assert ping(node, HP, GW26)
    # net1's host veth: its OVS port (another pod's sandbox retries may add veths meanwhile)
    plugged_veths = set(s.dataplane().vsctl("--bare", "--columns=name", "find", "Interface",
                                            f"external_ids:iface-id={NS}_{HP}_net1").split())
    assert len(plugged_veths) == 1 and plugged_veths <= veths(node) - veths0, plugged_veths
    wait_until(lambda: plumbed(cluster, HP) == {"net0": "plumbed", "net1": "plumbed"}, 30, interval=0.3,
               what="the agent pod's report of both interfaces plumbed")
    added = [e for e in cluster.events(NS, HP) if e.reason == "InterfaceAdded"]
    assert added and "net1" in added[-1].message, [(e.reason, e.message) for e in cluster.events(NS, HP)]
    check_invariant(cluster, ["ovn-ls-25", "ovn-ls-26"], timeout=30)

    # -- change net1's static address: removed and added again with the new one
    request(node, HP, [*one, {"name": "ovn-ls-26", "interface": "net1", "ip_address": "172.16.26.50"}])
    wait_until(lambda: box.addresses().get("net1", {}).get("ipv4") == ["172.16.26.50/24"], 60, interval=0.3,
               what="net1 re-plumbed with its new static address")
    assert ping(node, HP, peer1) and result(cluster, HP)["net0"] == before["net0"]
    wait_until(lambda: res["net1"]["ip_address"] not in cluster.allocations("ovn-ls-26"), 30,
               what=f"the old address {res['net1']['ip_address']} released")

    # -- remove net1 while a ping over net0 runs: gone from the container, port and address released
    pinger = background_pings(s, HP, peer0, 16)
    time.sleep(1)
    request(node, HP, one)
    wait_until(lambda: set(box.addresses()) == {"net0"}, 60, interval=0.3, what="net1 gone from the container")
    sent, got, out = loss(pinger)
    assert sent == 16 and got == sent, f"the ping over net0 lost packets during the removal: {out}"
    wait_until(lambda: nb_ports(cluster, HP) == {f"{NS}_{HP}_net0"}, 30, what="net1's NB port deleted")
    wait_until(lambda: "172.16.26.50" not in cluster.allocations("ovn-ls-26"), 30, what="172.16.26.50 released")
    wait_until(lambda: set(s.dataplane().vsctl("list-ports", "br-int").split()) == ports0, 30,
               what="net1's OVS port removed")
    assert not plugged_veths & veths(node), f"net1's veth left: {plugged_veths & veths(node)}"
    wait_until(lambda: plumbed(cluster, HP) == {"net0": "plumbed"}, 30, interval=0.3, what="the report of net0 alone")
    assert result(cluster, HP) == before and not ping(node, HP, peer1)
    assert "InterfaceRemoved" in [e.reason for e in cluster.events(NS, HP)]
    check_invariant(cluster, ["ovn-ls-25", "ovn-ls-26"], timeout=30)
    assert sandbox_invariant(cluster, [box, Container(node, "pod-ovn")]) == 3

    # -- plug net1 again, then delete the pod: the runtime's DEL removes both
    request(node, HP, two)
    wait_until(lambda: ping(node, HP, peer1), 60, interval=0.2, what="a ping over net1 plugged again")
    ip1 = result(cluster, HP)["net1"]["ip_address"]
    mine_ports = set(s.dataplane().vsctl("list-ports", "br-int").split()) - base_ports
    # the OVS ports are the host ends of net0 and net1 (the invalid pod's sandbox retries come
    # and go with veths of their own: only ours are counted)
    mine_veths = mine_ports & veths(node)
    assert len(mine_ports) == 2 and mine_veths == mine_ports, (mine_ports, veths(node))
    s.kubectl("delete", "pod", "-n", NS, HP, "--timeout=60s")
    wait_until(lambda: not nb_ports(cluster, HP), 30, what=f"{HP}'s NB ports removed")
    wait_until(lambda: not mine_ports & set(s.dataplane().vsctl("list-ports", "br-int").split()), 30,
               what=f"{HP}'s OVS ports removed (the hot-plugged one too)")
    assert not mine_veths & veths(node), mine_veths & veths(node)
    for ip, net in ((before["net0"]["ip_address"], "ovn-ls-25"), (ip1, "ovn-ls-26")):
        wait_until(lambda ip=ip, net=net: ip not in cluster.allocations(net), 30, what=f"{ip} freed in {net}")
    assert sandbox_invariant(cluster, [Container(node, "pod-ovn")]) == 2
    print(f"HOTPLUG real node: ovnNetwork change -> first ping over the new interface from inside the "
          f"container {plug:.2f} s; 24 + 16 pings over net0 during the add and the removal, none lost")


def veths(node: RealNode) -> set[str]:
    out = subprocess.run(["ip", "-n", node.netns, "-o", "link", "show", "type", "veth"],
                         capture_output=True, text=True, check=True).stdout
    return {line.split()[1].rstrip(":").split("@")[0] for line in out.splitlines()}


def test_delete_leaves_no_port_veth_or_address(node, seed):
    s, cluster = node.stack, seed["cluster"]
    ports_before, veths_before = set(s.dataplane().vsctl("list-ports", "br-int").split()), veths(node)
    nb = {p for p in cluster.nb_pod_ports() if p.startswith(f"{NS}_pod-two_")}
    assert nb == {f"{NS}_pod-two_net0", f"{NS}_pod-two_net1"}, nb
    s.kubectl("delete", "pod", "-n", NS, "pod-two", "--timeout=60s")
    wait_until(lambda: not nb & set(cluster.nb_pod_ports()), 30, what="pod-two's NB ports removed")
    gone_ports = ports_before - set(s.dataplane().vsctl("list-ports", "br-int").split())
    gone_veths = veths_before - veths(node)
    assert len(gone_ports) == 2 and gone_ports <= gone_veths, (gone_ports, gone_veths)
    # the default network's veth went too (3 in all: eth0 by the bridge plugin, net0, net1)
    assert len(gone_veths) == 3, gone_veths
    for iface, net in (("net0", "ovn-ls-25"), ("net1", "ovn-ls-26")):
        ip = seed["ips"]["pod-two"][iface]["ip_address"]
        wait_until(lambda ip=ip, net=net: ip not in cluster.allocations(net), 30, what=f"{ip} freed in {net}")


@pytest.mark.e2e_node
def test_kill_the_leader_pod_standby_takes_over(node, seed):
    """SIGKILL the leader's container (no Lease release) and force-delete its pod (so the kubelet
    does not restart it under the same identity): once the Lease expires a live replica takes it,
    and a new pod attaches. The handover is measured from the kill. The taker is usually the
    standby, but the ReplicaSet's replacement pod races it for the expired Lease and may win:
    either is a correct handover; which one is printed. (A version that waited for the standby
    alone timed out once after 60 s; the next run printed that the replacement took the Lease.)"""
    s, cluster = node.stack, seed["cluster"]
    holder = leader(node)
    ops = pods(node, "app.kubernetes.io/name=ovnvnet-operator")
    pod = next(p for p in ops if p["metadata"]["name"] == holder)
    standby = next(p["metadata"]["name"] for p in ops if p["metadata"]["name"] != holder)
    t0 = time.monotonic()
    node.ctr("tasks", "kill", "-s", "SIGKILL", container_task(node, pod, "operator"))
    s.kubectl("delete", "pod", "-n", SYSTEM, holder, "--grace-period=0", "--force", "--wait=false", check=False)
    last: list[str] = []

    def taken() -> str:
        last[:] = [leader(node)]
        return last[0] if last[0] not in ("", holder) else ""

    try:
        new = wait_until(taken, 60, interval=0.2, what="a live replica holds the Lease")
    except AssertionError:
        now = [(p["metadata"]["name"], p["status"].get("phase")) for p in pods(node, SEL)]
        raise AssertionError(f"the Lease still names {last} 60 s after {holder} was killed; "
                             f"operator pods now: {now}") from None
    took = time.monotonic() - t0
    live = {p["metadata"]["name"] for p in pods(node, SEL)}
    assert new in live, (new, live)
    s.kubectl("apply", "-f", "-", input=json.dumps(_pod("pod-after", [{"name": "ovn-ls-25", "interface": "net0"}])))
    wait_until(lambda: "ovnIfaceList" in cluster.annotations(NS, "pod-after"), 60, what="pod-after attached")
    attached = time.monotonic() - t0
    who = "the standby" if new == standby else "the ReplicaSet's replacement pod"
    print(f"leader {holder} killed: {who} {new} took the Lease after {took:.1f}s; "
          f"a new pod attached {attached:.1f}s after the kill")
    assert took < 30, took
    s.kubectl("wait", "-n", NS, "--for=condition=Ready", "pod/pod-after", "--timeout=120s")


@pytest.mark.e2e_node
def test_delete_agent_pod_daemonset_restarts_it_pings_continue(node, seed):
    s, cluster = node.stack, seed["cluster"]
    old = pods(node, "app.kubernetes.io/name=ovnvnet-agent")[0]["metadata"]["name"]
    target = seed["ips"]["pod-core"]["eth1"]["ip_address"]
    # 40 pings at 0.25 s from pod-edge to pod-core (across ovnvnet-router), while the agent restarts
    pinger = background_pings(s, "pod-edge", target, 40)
    time.sleep(1)
    t0 = time.monotonic()
    s.kubectl("delete", "pod", "-n", SYSTEM, old, "--timeout=60s")
    wait_until(lambda: any(ready(p) and p["metadata"]["name"] != old
                           for p in pods(node, "app.kubernetes.io/name=ovnvnet-agent")), 120, interval=0.5,
               what="the DaemonSet's new agent pod Ready")
    print(f"agent pod {old} deleted: a new one Ready after {time.monotonic() - t0:.1f}s")
    out, _ = pinger.communicate(timeout=60)
    assert "40 packets transmitted, 40 packets received" in out, out
    after = _pod("pod-after-agent", [{"name": "ovn-ls-26", "interface": "net0"}])
    s.kubectl("apply", "-f", "-", input=json.dumps(after))
    s.kubectl("wait", "-n", NS, "--for=condition=Ready", "pod/pod-after-agent", "--timeout=120s")
    ip = json.loads(cluster.annotations(NS, "pod-after-agent")["ovnIfaceList"])[0]["ip_address"]
    assert ping(node, "pod-after-agent", GW26) and ping(node, "pod-ovn", ip)

