"""The seed's scenario on a REAL node (issue 12): kubelet 1.20 + containerd + runc run busybox
containers; containerd calls Debian's bridge plugin (eth0) and ovn-k8s-cni-overlay (the OVN
interfaces, plumbed by the node agent), everything checked from inside the containers through
`kubectl exec`. The operator and the agent still run as local processes here.

Runs only with OVNVNET_E2E_NODE=1 (`make e2e-node`): it needs `make node-bootstrap` (kubelet
build, containerd, runc) and takes a couple of minutes. Packets only travel between network
namespaces the run created (the node's and the pods').
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from harness.kit import Cluster, wait_until
from harness.realnode import RealNode
from harness.stack import KUBE_BIN, REPO, Stack

pytestmark = pytest.mark.timeout(600)

NS = "seed"
GW25, GW26 = "172.16.25.1", "172.16.26.1"
OPERATOR_ENV = {"OVNVNET_SWEEP_INTERVAL": "1", "OVNVNET_RETRY_INTERVAL": "1"}


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> RealNode:
    assert (KUBE_BIN / "kubelet").exists(), "run `make node-bootstrap` first (kubelet build)"
    stack = Stack(Path(os.environ.get("OVNVNET_E2E_STACK") or tmp_path_factory.mktemp("rn")))
    n = RealNode(stack)
    t0 = time.monotonic()
    try:
        stack.state["operator_env"] = OPERATOR_ENV
        n.up()
        print(f"stack + real node up in {time.monotonic() - t0:.1f}s")
        yield n
    finally:
        if "realnode" in stack.state or stack.root.exists():
            n.stop()
            stack.down(remove=not os.environ.get("OVNVNET_KEEP_STACK"))


def _pod(name: str, request: list[dict] | None, command: list[str] | None = None, ns: str = NS) -> dict:
    md: dict = {"name": name, "namespace": ns}
    if request is not None:
        md["annotations"] = {"ovnNetwork": json.dumps(request)}
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": md,
        "spec": {"nodeName": "node-1", "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "app", "image": "localhost/busybox:1", "imagePullPolicy": "Never",
                                 "command": command or ["sleep", "100000"]}]},
    }


def _seed_pod() -> dict:
    """examples/seed.yaml's pod-ovn, as written, with the node's image and node-1."""
    docs = [d for d in _yaml_docs(REPO / "examples" / "seed.yaml")]
    pod = next(d for d in docs if d["kind"] == "Pod")
    pod["metadata"]["namespace"] = NS
    c = pod["spec"]["containers"][0]
    c.update({"image": "localhost/busybox:1", "imagePullPolicy": "Never"})
    c.pop("stdin", None), c.pop("tty", None)
    pod["spec"].update({"nodeName": "node-1", "terminationGracePeriodSeconds": 1})
    return pod


def _yaml_docs(path: Path) -> list[dict]:
    import yaml
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def exec_(n: RealNode, pod: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    out = n.stack.kubectl("exec", "-n", NS, pod, "--", *cmd, check=False)
    if check and out.returncode != 0:
        raise AssertionError(f"kubectl exec {pod} -- {' '.join(cmd)}: rc {out.returncode}: {out.stderr}")
    return out


def addresses(n: RealNode, pod: str) -> dict[str, dict]:
    """`ip -o addr` and `ip -o link` from inside the container: {ifname: {mac, ipv4: [cidr]}}."""
    out: dict[str, dict] = {}
    for line in exec_(n, pod, "ip", "-o", "link").stdout.splitlines():
        parts = line.split()
        name = parts[1].rstrip(":").split("@")[0]
        mac = parts[parts.index("link/ether") + 1] if "link/ether" in parts else None
        out[name] = {"mac": mac, "ipv4": [], "up": "UP" in parts[2]}
    for line in exec_(n, pod, "ip", "-o", "-4", "addr").stdout.splitlines():
        parts = line.split()
        out[parts[1]]["ipv4"].append(parts[3])
    return out


def ping(n: RealNode, pod: str, ip: str) -> bool:
    return exec_(n, pod, "ping", "-c", "1", "-W", "2", ip, check=False).returncode == 0


@pytest.fixture(scope="module")
def seed(node: RealNode):
    s = node.stack
    cluster = Cluster(s)
    s.kubectl("create", "namespace", NS)
    node.wait_service_account(NS)
    docs = _yaml_docs(REPO / "examples" / "seed.yaml")
    s.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                   "items": [d for d in docs if d["kind"] == "VirtualNetwork"]}))
    cluster.wait_ready("ovn-ls-25")
    cluster.wait_ready("ovn-ls-26")
    t0 = time.monotonic()
    s.kubectl("apply", "-f", "-", input=json.dumps(_seed_pod()))
    wait_until(lambda: "ovnIfaceList" in cluster.annotations(NS, "pod-ovn"), 60, what="pod-ovn attached")
    for pod in (_pod("pod-two", [{"name": "ovn-ls-25", "interface": "net0"},
                                 {"name": "ovn-ls-26", "interface": "net1"}]),
                _pod("pod-core", [{"name": "ovn-ls-25", "interface": "eth1", "defaultGateway": True}]),
                _pod("pod-edge", [{"name": "ovn-ls-26", "interface": "eth1", "defaultGateway": True}])):
        s.kubectl("apply", "-f", "-", input=json.dumps(pod))
    names = ("pod-ovn", "pod-two", "pod-core", "pod-edge")
    for name in names:
        s.kubectl("wait", "-n", NS, "--for=condition=Ready", f"pod/{name}", "--timeout=180s")
    print(f"4 pods Running in {time.monotonic() - t0:.1f}s")
    ips = {name: {i["interface"]: i for i in json.loads(cluster.annotations(NS, name)["ovnIfaceList"])}
           for name in names}
    return {"cluster": cluster, "ips": ips}


def test_seed_pod_interfaces_inside_the_container(node, seed):
    want = seed["ips"]["pod-ovn"]
    have = addresses(node, "pod-ovn")
    assert want["net1"]["ip_address"] == "172.16.26.3"
    assert have["net1"]["mac"] == "0a:00:00:00:00:15" and have["net1"]["ipv4"] == ["172.16.26.3/24"]
    assert have["net0"]["mac"] == want["net0"]["mac_address"]
    assert have["net0"]["ipv4"] == [f"{want['net0']['ip_address']}/24"]
    # eth0: the default network (Debian's bridge + host-local), as containerd's first conflist
    assert have["eth0"]["ipv4"] and have["eth0"]["ipv4"][0].startswith("10.85.0.")
    routes = exec_(node, "pod-core", "ip", "route").stdout
    assert f"default via {GW25} dev eth1" in routes, routes


def test_pods_ping_each_other_and_the_gateways(node, seed):
    ips = seed["ips"]
    assert ping(node, "pod-ovn", ips["pod-two"]["net0"]["ip_address"])
    assert ping(node, "pod-ovn", ips["pod-two"]["net1"]["ip_address"])
    assert ping(node, "pod-two", "172.16.26.3")
    for pod in ("pod-ovn", "pod-two"):
        assert ping(node, pod, GW25), pod
        assert ping(node, pod, GW26), pod
    # across ovnvnet-router: pod-core (ovn-ls-25) and pod-edge (ovn-ls-26), default routes via OVN
    assert ping(node, "pod-core", ips["pod-edge"]["eth1"]["ip_address"])
    assert ping(node, "pod-edge", ips["pod-core"]["eth1"]["ip_address"])


def test_logs_and_status_from_the_real_kubelet(node, seed):
    s = node.stack
    pod = json.loads(s.kubectl("get", "pod", "-n", NS, "pod-two", "-o", "json").stdout)
    assert pod["status"]["phase"] == "Running"
    assert pod["status"]["containerStatuses"][0]["image"].endswith("localhost/busybox:1")
    s.kubectl("apply", "-f", "-", input=json.dumps(_pod("pod-log", [{"name": "ovn-ls-25", "interface": "net0"}],
                                                         ["sh", "-c", "ip -o -4 addr show net0; sleep 100000"])))
    s.kubectl("wait", "-n", NS, "--for=condition=Ready", "pod/pod-log", "--timeout=120s")
    ip = json.loads(seed["cluster"].annotations(NS, "pod-log")["ovnIfaceList"])[0]["ip_address"]
    wait_until(lambda: f"inet {ip}/24" in s.kubectl("logs", "-n", NS, "pod-log", check=False).stdout,
               20, what="kubectl logs shows the container's own address")


def invalid_pod_stays_creating(node: RealNode, name: str = "pod-bad", ns: str = NS) -> str:
    """A pod whose ovnNetwork names an impossible address: the real kubelet reports
    FailedCreatePodSandBox carrying the operator's message, the pod stays Pending. Returns it."""
    s = node.stack
    s.kubectl("apply", "-f", "-", input=json.dumps(_pod(name, [
        {"name": "ovn-ls-26", "interface": "net1", "ip_address": "172.16.2526.3",
         "mac_address": "0a:00:00:00:00:16"}], ns=ns)))

    def failed_sandbox() -> str:
        ev = json.loads(s.kubectl("get", "events", "-n", ns, "--field-selector",
                                  f"involvedObject.name={name}", "-o", "json").stdout)["items"]
        return next((e["message"] for e in ev if e["reason"] == "FailedCreatePodSandBox"), "")

    msg = wait_until(failed_sandbox, 90, interval=1, what=f"FailedCreatePodSandBox on {name}")
    assert "172.16.2526.3" in msg, msg
    pod = json.loads(s.kubectl("get", "pod", "-n", ns, name, "-o", "json").stdout)
    assert pod["status"]["phase"] == "Pending"
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating", pod["status"]
    return msg


def test_invalid_pod_stays_creating_with_the_operators_message(node, seed):
    invalid_pod_stays_creating(node)


def test_delete_makes_the_runtime_call_del(node, seed):
    s, cluster = node.stack, seed["cluster"]
    ports_before = set(node.stack.dataplane().vsctl("list-ports", "br-int").split())
    port = "seed_pod-two_net0"
    assert port in cluster.nb_pod_ports()
    s.kubectl("delete", "pod", "-n", NS, "pod-two", "--timeout=60s")
    wait_until(lambda: port not in cluster.nb_pod_ports(), 30, what=f"NB port {port} removed")
    ports_after = set(node.stack.dataplane().vsctl("list-ports", "br-int").split())
    assert len(ports_before - ports_after) == 2, (ports_before, ports_after)   # net0 and net1 veths
    for iface, net in (("net0", "ovn-ls-25"), ("net1", "ovn-ls-26")):
        ip = seed["ips"]["pod-two"][iface]["ip_address"]
        wait_until(lambda ip=ip, net=net: ip not in cluster.allocations(net), 30, what=f"{ip} freed in {net}")

def test_project_image_runs_on_the_node(node, seed):
    """localhost/ovnvnet:dev, built from the Dockerfile by buildah (stand-in base), imported into
    containerd with ctr, runs as a pod: its Python has the package and the shim is in place."""
    from harness import images

    t0 = time.monotonic()
    archive = images.ovnvnet_image()
    print(f"ovnvnet image ready in {time.monotonic() - t0:.1f}s: {archive}")
    node.import_images({images.OVNVNET_IMAGE: archive})
    pod = _pod("pod-image", [{"name": "ovn-ls-25", "interface": "net0"}],
               ["python", "-c", "import ovnvnet.cni.agent, kopf, os; "
                "print('ok', os.getuid(), os.access('/opt/ovnvnet/bin/ovn-k8s-cni-overlay', os.X_OK))"])
    c = pod["spec"]["containers"][0]
    c["image"] = images.OVNVNET_IMAGE
    pod["spec"]["restartPolicy"] = "Never"
    node.stack.kubectl("apply", "-f", "-", input=json.dumps(pod))
    wait_until(lambda: json.loads(node.stack.kubectl("get", "pod", "-n", NS, "pod-image", "-o", "json").stdout)
               ["status"]["phase"] in ("Succeeded", "Failed"), 120, interval=1, what="pod-image finished")
    logs = node.stack.kubectl("logs", "-n", NS, "pod-image").stdout
    assert logs.strip() == "ok 65532 True", logs


def test_down_removes_everything(node, seed):
    s = node.stack
    shims = node.shims()
    assert shims, "the pods' containerd shims run"
    pids = {name: s.pid(name) for name in ("kubelet", "containerd", "nsrelay")}
    node.stop()
    assert node.shims() == []
    assert node.mounts() == []
    assert all(p is None or not Path(f"/proc/{p}").exists() for p in pids.values()), pids
    netns_dir = node.dir / "containerd" / "state"
    s.down()
    assert s.stack_netns() == [], s.stack_netns()
    assert not s.root.exists()
    assert not netns_dir.exists()
