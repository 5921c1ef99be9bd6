"""The real node's lifecycle, with ovnvnet installed as pods (issue 12, scenarios 2, 5, 6 and
`kubectl port-forward`): real kubelet, containerd and runc; everything checked on real state (the
runtime's tasks, veths in the node, OVS ports, NB ports, IPBlock records) and real packets from
inside the containers.

In order, on one node:
- port-forward: bytes from a busybox httpd inside a pod, through `kubectl port-forward` bound to
  127.0.0.1 only (API server -> kubelet -> containerd's stream server -> the pod's netns);
- a Deployment of 20 replicas on two networks scales to 0 (no veth, OVS port, NB port, address
  or IPBlock entry left) and back to 20 (all attached, no address or MAC held twice);
- the kubelet restarts, then containerd: the containers are the same (same ids, no restart),
  keep their interfaces, and pings from inside a container continue throughout;
- the runtime recreates a sandbox (its pause process killed): the new sandbox gets the same
  addresses and MACs (the operator's result on the pod is unchanged; the agent plumbs it again);
- the whole node stops as in a power cut and boots: the pods come back (new sandboxes) with the
  same addresses, and ping.

Runs only with OVNVNET_E2E_NODE=1 (`make e2e-node`). Packets only travel between network
namespaces the run created (the node's and the pods').
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
import urllib.request

import pytest

from harness.kit import check_invariant, sandbox_invariant, wait_until
from harness.realnode import RealNode

from .test_install import node as node  # the install-mode node fixture (explicit re-export)
from .test_install import pods, ready
from .test_realnode import GW25, GW26, NS, _pod, addresses, exec_, ping
from .test_realnode import seed as seed

pytestmark = pytest.mark.timeout(1200)

NETS = ["ovn-ls-25", "ovn-ls-26"]
DEPLOY = "scale"


def veths(node: RealNode) -> set[str]:
    out = subprocess.run(["ip", "-n", node.netns, "-o", "link", "show", "type", "veth"],
                         capture_output=True, text=True, check=True).stdout
    return {line.split()[1].rstrip(":").split("@")[0] for line in out.splitlines()}


def ovs_ports(node: RealNode) -> set[str]:
    return set(node.stack.dataplane().vsctl("list-ports", "br-int").split())


def kube_pod(node: RealNode, name: str, ns: str = NS) -> dict:
    return json.loads(node.stack.kubectl("get", "pod", "-n", ns, name, "-o", "json").stdout)


def container_ids(node: RealNode, names: list[str]) -> dict[str, tuple[str, int]]:
    """{pod: (container id, restart count)} of each pod's one container."""
    out = {}
    for name in names:
        st = kube_pod(node, name)["status"]["containerStatuses"][0]
        out[name] = (st.get("containerID", ""), st["restartCount"])
    return out


def inside(node: RealNode, names: list[str]) -> dict[str, dict]:
    """Every OVN interface's MAC and addresses as seen from inside each container."""
    return {name: {i: v for i, v in addresses(node, name).items() if i not in ("lo", "eth0")} for name in names}


def annotated(seed: dict, names: list[str]) -> dict[str, dict]:
    cluster = seed["cluster"]
    out = {}
    for name in names:
        res = json.loads(cluster.annotations(NS, name)["ovnIfaceList"])
        out[name] = {i["interface"]: {"mac": i["mac_address"], "ipv4": [f"{i['ip_address']}/{i['prefix_length']}"],
                                      "up": True} for i in res}
    return out


def task_pid(node: RealNode, pod: str) -> int:
    """The host pid of the pod's app container (its init process), from containerd."""
    cid = kube_pod(node, pod)["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    out = node.ctr("tasks", "ls").stdout.splitlines()[1:]
    return int(next(line.split()[1] for line in out if line.split()[0] == cid))


def sandbox_of(node: RealNode, pod: str, ns: str = NS) -> str:
    """The id of the pod's running sandbox (pause) container."""
    running = {line.split()[0] for line in node.ctr("tasks", "ls").stdout.splitlines()[1:]
               if line.split()[-1] == "RUNNING"}
    for cid in node.ctr("containers", "ls", "-q").stdout.split():
        if cid not in running:
            continue
        labels = json.loads(node.ctr("containers", "info", cid).stdout).get("Labels") or {}
        if (labels.get("io.cri-containerd.kind") == "sandbox" and labels.get("io.kubernetes.pod.name") == pod
                and labels.get("io.kubernetes.pod.namespace") == ns):
            return cid
    raise AssertionError(f"no running sandbox for {ns}/{pod}")


# ---------------------------------------------------------------- port-forward
def test_port_forward_carries_bytes_on_loopback_only(node, seed):
    s = node.stack
    s.kubectl("apply", "-f", "-", input=json.dumps(_pod("pod-web", [{"name": "ovn-ls-25", "interface": "net0"}], [
        "sh", "-c", "mkdir -p /tmp/www && head -c 262144 /dev/urandom > /tmp/www/blob && "
                    "exec httpd -f -p 8080 -h /tmp/www"])))
    s.kubectl("wait", "-n", NS, "--for=condition=Ready", "pod/pod-web", "--timeout=120s")
    want = exec_(node, "pod-web", "sha256sum", "/tmp/www/blob").stdout.split()[0]
    pf = subprocess.Popen([str(s.root / "bin" / "kubectl"), f"--kubeconfig={s.kubeconfig}", "port-forward",
                           "-n", NS, "--address", "127.0.0.1", "pod/pod-web", ":8080"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert pf.stdout is not None
        line = pf.stdout.readline()
        m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> 8080", line)
        assert m, line
        port = int(m.group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/blob", timeout=30) as resp:
            body = resp.read()
        assert len(body) == 262144 and hashlib.sha256(body).hexdigest() == want, len(body)
        listening = subprocess.run(["ss", "-Htlnp", f"sport = :{port}"], capture_output=True, text=True).stdout
        assert listening.strip() and all(" 127.0.0.1:" in ln for ln in listening.splitlines()), listening
        print(f"port-forward 127.0.0.1:{port} -> pod-web:8080: {len(body)} bytes, sha256 matches")
    finally:
        pf.terminate()
        pf.wait(10)
    s.kubectl("delete", "pod", "-n", NS, "pod-web", "--timeout=60s")
    wait_until(lambda: not any(p.startswith(f"{NS}_pod-web_") for p in seed["cluster"].nb_pod_ports()), 30,
               what="pod-web's NB port removed")


# ---------------------------------------------------------------- scenario 2: 20 -> 0 -> 20
def _deployment(replicas: int) -> dict:
    tmpl = _pod("x", [{"name": "ovn-ls-25", "interface": "net0"}, {"name": "ovn-ls-26", "interface": "net1"}])
    md = {"labels": {"app": DEPLOY}, "annotations": tmpl["metadata"]["annotations"]}
    spec = dict(tmpl["spec"])
    spec.pop("nodeName")  # scheduled by kube-scheduler
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": DEPLOY, "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": DEPLOY}},
                     "template": {"metadata": md, "spec": spec}}}


def _replicas(node: RealNode) -> list[dict]:
    out = node.stack.kubectl("get", "pods", "-n", NS, "-l", f"app={DEPLOY}", "-o", "json")
    return json.loads(out.stdout)["items"]


def _state(node: RealNode, seed: dict) -> dict[str, set]:
    """What a pod on the node leaves behind if not cleaned: veths in the node, OVS ports, NB pod
    ports, addresses in each network's allocation record, entries of its IPBlock objects."""
    cluster = seed["cluster"]
    out = {"veths": veths(node), "ovs": ovs_ports(node), "nb": set(cluster.nb_pod_ports())}
    for net in NETS:
        out[f"addresses {net}"] = set(cluster.allocations(net))
        out[f"ipblock entries {net}"] = {(b["metadata"]["name"], ip) for b in cluster.ipblocks(net)
                                         for ip in (b.get("allocations") or {})}
    return out


def _added(before: dict[str, set], now: dict[str, set]) -> dict[str, set]:
    return {k: now[k] - before[k] for k in now if now[k] - before[k]}


def _wait_nothing_added(node: RealNode, seed: dict, before: dict[str, set], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (left := _added(before, _state(node, seed))) and time.monotonic() < deadline:
        time.sleep(1)
    assert not left, f"left after {what}: {left}"


def _scale_to(node: RealNode, n: int, timeout: int = 600) -> float:
    t0 = time.monotonic()
    node.stack.kubectl("scale", "-n", NS, f"deployment/{DEPLOY}", f"--replicas={n}")
    if n:
        node.stack.kubectl("rollout", "status", "-n", NS, f"deployment/{DEPLOY}", f"--timeout={timeout}s")
    wait_until(lambda: len(_replicas(node)) == n, timeout, interval=1, what=f"{n} replicas of {DEPLOY}")
    return time.monotonic() - t0


def _check_attached(node: RealNode, seed: dict, n: int) -> None:
    reps = _replicas(node)
    assert len(reps) == n and all(ready(p) for p in reps), [p["status"].get("phase") for p in reps]
    seen: dict[str, set] = {"ip": set(), "mac": set()}
    for p in reps:
        res = json.loads(p["metadata"]["annotations"]["ovnIfaceList"])
        assert {i["interface"] for i in res} == {"net0", "net1"}, res
        for i in res:
            for key, val in (("ip", i["ip_address"]), ("mac", i["mac_address"])):
                assert val not in seen[key], f"{key} {val} held twice ({p['metadata']['name']})"
                seen[key].add(val)
    check_invariant(seed["cluster"], NETS, timeout=60)
    # attached for real: inside two replicas, then a ping between them over each network
    a, b = reps[0]["metadata"]["name"], reps[-1]["metadata"]["name"]
    res_b = {i["interface"]: i for i in json.loads(reps[-1]["metadata"]["annotations"]["ovnIfaceList"])}
    have_a = addresses(node, a)
    res_a = {i["interface"]: i for i in json.loads(reps[0]["metadata"]["annotations"]["ovnIfaceList"])}
    for iface in ("net0", "net1"):
        assert have_a[iface]["ipv4"] == [f"{res_a[iface]['ip_address']}/24"], have_a
        assert have_a[iface]["mac"] == res_a[iface]["mac_address"], have_a
        assert ping(node, a, res_b[iface]["ip_address"]), (a, b, iface)


def test_deployment_20_to_0_and_back_no_leak_no_duplicate(node, seed):
    s = node.stack
    before = _state(node, seed)
    s.kubectl("apply", "-f", "-", input=json.dumps(_deployment(20)))
    took = _scale_to(node, 20)
    print(f"20 replicas Ready in {took:.1f}s")
    _check_attached(node, seed, 20)
    added = {k: len(v) for k, v in _added(before, _state(node, seed)).items()}
    # per replica: 3 veths (eth0, net0, net1), 2 OVS ports, 2 NB ports, 1 address per network
    assert added == {"veths": 60, "ovs": 40, "nb": 40, **{f"addresses {n}": 20 for n in NETS},
                     **{f"ipblock entries {n}": 20 for n in NETS}}, added
    took = _scale_to(node, 0)
    print(f"scaled to 0 in {took:.1f}s")
    _wait_nothing_added(node, seed, before, "scaling to 0")
    check_invariant(seed["cluster"], NETS, timeout=60)
    took = _scale_to(node, 20)
    print(f"back to 20 Ready in {took:.1f}s")
    _check_attached(node, seed, 20)
    s.kubectl("delete", "deployment", "-n", NS, DEPLOY, "--timeout=120s")
    wait_until(lambda: not _replicas(node), 300, interval=1, what=f"{DEPLOY}'s pods gone")
    _wait_nothing_added(node, seed, before, "deleting the Deployment")


# ---------------------------------------------------------------- scenario 5: restarts
SEED = ["pod-ovn", "pod-two", "pod-core", "pod-edge"]


def test_restart_kubelet_then_containerd_pods_keep_interfaces_and_ping(node, seed):
    ids_before, seen_before = container_ids(node, SEED), inside(node, SEED)
    assert seen_before == annotated(seed, SEED)
    target = seed["ips"]["pod-core"]["eth1"]["ip_address"]
    # ping from inside pod-edge's container (its netns, by its pid), independent of the kubelet
    pinger = subprocess.Popen(["nsenter", "-t", str(task_pid(node, "pod-edge")), "-n", "ping", "-c", "120",
                               "-i", "0.25", "-W", "1", target], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    time.sleep(1)
    took_k = node.restart_kubelet()
    took_c = node.restart_containerd()
    print(f"kubelet back after {took_k:.1f}s; containerd back after {took_c:.1f}s")
    out, _ = pinger.communicate(timeout=120)
    m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", out)  # iputils' ping
    assert m and m.group(1) == m.group(2) == "120", out
    # the kubelet and containerd still manage the same containers: exec works, nothing restarted
    wait_until(lambda: all(ready(kube_pod(node, p)) for p in SEED), 120, interval=1, what="seed pods Ready")
    assert container_ids(node, SEED) == ids_before
    assert inside(node, SEED) == seen_before
    assert ping(node, "pod-ovn", seed["ips"]["pod-two"]["net1"]["ip_address"])
    for p in ("pod-ovn", "pod-two"):
        assert ping(node, p, GW25) and ping(node, p, GW26), p
    # the node is usable after both restarts: a new pod attaches
    s = node.stack
    s.kubectl("apply", "-f", "-", input=json.dumps(_pod("pod-after-restart", [{"name": "ovn-ls-26",
                                                                               "interface": "net0"}])))
    s.kubectl("wait", "-n", NS, "--for=condition=Ready", "pod/pod-after-restart", "--timeout=120s")
    assert ping(node, "pod-after-restart", GW26)
    s.kubectl("delete", "pod", "-n", NS, "pod-after-restart", "--timeout=60s")


def test_recreated_sandbox_gets_the_same_addresses(node, seed):
    """The pause process of pod-ovn's sandbox dies: the kubelet sees the sandbox gone, stops the
    pod's container, has the runtime make a NEW sandbox (CNI DEL of the old, ADD of the new) and
    restarts the container in it. The operator's result on the pod is unchanged, so the agent
    plumbs the same addresses and MACs into the new network namespace."""
    name = "pod-ovn"
    before_ids, before = container_ids(node, [name]), inside(node, [name])
    old = sandbox_of(node, name)
    node.ctr("tasks", "kill", "-s", "SIGKILL", old)
    wait_until(lambda: sandbox_of_or_none(node, name) not in (None, old), 120, interval=1,
               what=f"a new sandbox for {name}")
    wait_until(lambda: ready(kube_pod(node, name)) and container_ids(node, [name]) != before_ids, 120, interval=1,
               what=f"{name} Running again in its new sandbox")
    assert container_ids(node, [name])[name][1] > before_ids[name][1]
    assert inside(node, [name]) == before == annotated(seed, [name])
    assert ping(node, name, seed["ips"]["pod-two"]["net0"]["ip_address"]) and ping(node, name, GW26)
    assert ping(node, "pod-two", "172.16.26.3")


def sandbox_of_or_none(node: RealNode, pod: str) -> str | None:
    try:
        return sandbox_of(node, pod)
    except AssertionError:
        return None


# ---------------------------------------------------------------- hot-plug (issue 16) and the runtime
def cni_check(node: RealNode, pod: str) -> subprocess.CompletedProcess:
    """CNI CHECK of the pod's sandbox as containerd would run it (containerd 1.6 itself never
    does): libcni (build/ovnvnet-cni-runtime) with the node's ovnvnet conflist, the sandbox id,
    its netns, ifname eth1 (the second conflist) and containerd's cache (/var/lib/cni), so the
    prevResult is the one the runtime's ADD cached. The conflist's plugins after ours are left
    out: Debian's `tuning` CHECKs a link named CNI_IFNAME (`eth1`), which this node's pods never
    have ("Cannot find container link eth1"), hot-plug or not."""
    conf = json.loads((node.cni_conf / "20-ovnvnet.conflist").read_text())
    assert conf["plugins"][0]["type"] == "ovn-k8s-cni-overlay", conf
    conf["plugins"] = conf["plugins"][:1]
    ours = node.dir / "check-ovnvnet.conflist"
    ours.write_text(json.dumps(conf))
    sandbox = sandbox_of(node, pod)
    info = json.loads(node.ctr("containers", "info", sandbox).stdout)
    netns = next(n["path"] for n in info["Spec"]["linux"]["namespaces"] if n["type"] == "network")
    uid = kube_pod(node, pod)["metadata"]["uid"]
    args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE={NS};K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={sandbox};" \
           f"K8S_POD_UID={uid}"
    return subprocess.run([str(node.stack.cni_runtime), "check", str(ours),
                           sandbox, netns, "eth1", args, str(node.cni_bin), "/var/lib/cni"],
                          capture_output=True, text=True, timeout=60)


def test_hotplug_survives_runtime_restarts_agent_loss_and_a_recreated_sandbox(node, seed):
    """A hot-plugged interface on the real node, through the runtime's own life: CHECK (as the
    runtime runs it, with the ADD's cached prevResult) passes with the new set; containerd and
    the kubelet restart and the agent still converges the same sandbox (net1 removed, added
    back); the agent's container killed while a change is made: the change lands once the
    kubelet restarted it; the sandbox recreated by the runtime (its pause process killed) gets the
    CURRENT set (net0 and the hot-plugged net1 with its new static address); deleting the pod
    leaves nothing."""
    from .test_install import Container, nb_ports, plumbed, request, result

    s, cluster, ips = node.stack, seed["cluster"], seed["ips"]
    name = "pod-hpr"
    peer1 = ips["pod-ovn"]["net1"]["ip_address"]
    one = [{"name": "ovn-ls-25", "interface": "net0"}]
    two = [*one, {"name": "ovn-ls-26", "interface": "net1", "ip_address": "172.16.26.60"}]
    s.build_cni()
    s.kubectl("apply", "-f", "-", input=json.dumps(_pod(name, one)))
    s.kubectl("wait", "-n", NS, "--for=condition=Ready", f"pod/{name}", "--timeout=120s")
    box = Container(node, name)
    chk = cni_check(node, name)
    assert chk.returncode == 0, f"CHECK before the plug: {chk.stdout} {chk.stderr}"
    request(node, name, two)
    wait_until(lambda: ping(node, name, peer1), 60, interval=0.2, what="a ping over the hot-plugged net1")
    chk = cni_check(node, name)
    assert chk.returncode == 0, f"CHECK after the plug: {chk.stdout} {chk.stderr}"

    # -- containerd, then the kubelet restart: the agent still converges the same sandbox
    ids = container_ids(node, [name])
    node.restart_containerd()
    node.restart_kubelet()
    assert container_ids(node, [name]) == ids and set(box.addresses()) == {"net0", "net1"}
    request(node, name, one)
    wait_until(lambda: set(box.addresses()) == {"net0"}, 60, interval=0.3, what="net1 removed after the restarts")
    request(node, name, two)
    wait_until(lambda: ping(node, name, peer1), 60, interval=0.2, what="net1 back after the restarts")

    # -- the agent's container killed; the change made meanwhile lands when the kubelet restarts it
    agent = pods(node, "app.kubernetes.io/name=ovnvnet-agent")[0]
    restarts = agent["status"]["containerStatuses"][0]["restartCount"]
    cid = agent["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    node.ctr("tasks", "kill", "-s", "SIGKILL", cid)
    three = [*one, {"name": "ovn-ls-26", "interface": "net1", "ip_address": "172.16.26.61"}]
    request(node, name, three)
    wait_until(lambda: box.addresses().get("net1", {}).get("ipv4") == ["172.16.26.61/24"], 120, interval=0.5,
               what="the change made while the agent was down, plumbed")
    agent = pods(node, "app.kubernetes.io/name=ovnvnet-agent")[0]
    assert agent["status"]["containerStatuses"][0]["restartCount"] > restarts, agent["status"]
    assert ping(node, name, peer1)
    wait_until(lambda: plumbed(cluster, name) == {"net0": "plumbed", "net1": "plumbed"}, 30, interval=0.3,
               what="the restarted agent's report")
    want = result(cluster, name)

    # -- the runtime recreates the sandbox: the new one gets the current set
    old, before_ids = sandbox_of(node, name), container_ids(node, [name])
    node.ctr("tasks", "kill", "-s", "SIGKILL", old)
    wait_until(lambda: sandbox_of_or_none(node, name) not in (None, old), 120, interval=1,
               what=f"a new sandbox for {name}")
    wait_until(lambda: ready(kube_pod(node, name)) and container_ids(node, [name]) != before_ids, 120, interval=1,
               what=f"{name} Running again in its new sandbox")
    have = box.addresses()
    assert {i: (v["mac"], v["ipv4"]) for i, v in have.items()} == {
        i: (e["mac_address"], [f"{e['ip_address']}/24"]) for i, e in want.items()}, (have, want)
    assert have["net1"]["ipv4"] == ["172.16.26.61/24"]
    assert ping(node, name, peer1) and ping(node, name, GW25)
    chk = cni_check(node, name)
    assert chk.returncode == 0, f"CHECK in the new sandbox: {chk.stdout} {chk.stderr}"
    assert sandbox_invariant(cluster, [box, Container(node, "pod-ovn")]) == 4
    check_invariant(cluster, NETS, timeout=60)

    # -- delete: the runtime's DEL removes the hot-plugged interface too
    before = _state(node, seed)
    s.kubectl("delete", "pod", "-n", NS, name, "--timeout=60s")
    wait_until(lambda: not nb_ports(cluster, name), 30, what=f"{name}'s NB ports removed")
    wait_until(lambda: "172.16.26.61" not in cluster.allocations("ovn-ls-26"), 30, what="172.16.26.61 freed")
    after = _state(node, seed)
    assert not _added(before, after), _added(before, after)
    gone = {k: before[k] - after[k] for k in ("veths", "ovs", "nb")}
    assert (len(gone["veths"]), len(gone["ovs"]), len(gone["nb"])) == (3, 2, 2), gone


# ---------------------------------------------------------------- scenario 6: node reboot
def test_node_reboot_pods_come_back_with_the_same_addresses(node, seed):
    before, before_ids = inside(node, SEED), container_ids(node, SEED)
    took = node.reboot()
    t0 = time.monotonic()
    wait_until(lambda: all(ready(p) for p in pods(node, "app.kubernetes.io/name=ovnvnet-agent")), 180,
               interval=1, what="the agent pod Ready after the reboot")
    wait_until(lambda: all(ready(kube_pod(node, p)) and container_ids(node, [p])[p] != before_ids[p]
                           for p in SEED), 300, interval=2, what="the seed pods Running again after the reboot")
    print(f"node rebooted: Ready {took:.1f}s after the power cut; the seed pods Running "
          f"{took + time.monotonic() - t0:.1f}s after it")
    assert inside(node, SEED) == before == annotated(seed, SEED)
    ips = seed["ips"]
    assert ping(node, "pod-ovn", ips["pod-two"]["net0"]["ip_address"])
    assert ping(node, "pod-two", "172.16.26.3")
    assert ping(node, "pod-core", ips["pod-edge"]["eth1"]["ip_address"])
    for p in ("pod-ovn", "pod-two"):
        assert ping(node, p, GW25) and ping(node, p, GW26), p
    ops = pods(node, "app.kubernetes.io/name=ovnvnet-operator")
    wait_until(lambda: all(ready(p) for p in pods(node, "app.kubernetes.io/name=ovnvnet-operator")), 180,
               interval=1, what="the operator pods Ready after the reboot")
    assert len(ops) == 2
    check_invariant(seed["cluster"], NETS, timeout=60)
