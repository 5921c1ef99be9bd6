"""The RBAC in manifests/ is sufficient and least privilege, proven on the real API server.

The rendered manifests are applied; the operator and the node agent then run as processes
authenticated as their ServiceAccounts (tokens from the TokenRequest API, as a pod's projected
token) and carry the seed's scenario end to end: networks applied, the pod's ovnIfaceList written,
allocations recorded in status, the pod plugged into a real OVS/OVN data plane by the agent
through the CNI shim, then released. Any 403 shows up in their logs and fails the test.
SelfSubjectAccessReviews (`kubectl auth can-i`) then show what each identity is refused.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.stack import Stack, wait_for
from tests.prerequisites import node_missing, require

from .conftest import NAMESPACE, OVERLAYS, REPO, find, kubectl_as, kustomize, objects, service_account_kubeconfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

FORBIDDEN_MARKS = ("403", "forbidden", "Forbidden", "Not enough permissions")
SEED = REPO / "examples" / "seed.yaml"


@pytest.fixture(scope="module")
def installed(stack: Stack) -> Stack:
    # Everything, Deployment and DaemonSet included: with no scheduler or kubelet they stay unrun.
    out = stack.kubectl("apply", "-f", "-", input=kustomize(OVERLAYS["base"]), check=False)
    assert out.returncode == 0, out.stderr
    return stack


@pytest.fixture(scope="module")
def operator_kubeconfig(installed: Stack) -> Path:
    return service_account_kubeconfig(installed, "ovnvnet-operator")


@pytest.fixture(scope="module")
def agent_kubeconfig(installed: Stack) -> Path:
    return service_account_kubeconfig(installed, "ovnvnet-agent")


@pytest.fixture(scope="module")
def operator(installed: Stack, operator_kubeconfig: Path) -> Iterator[Stack]:
    """The operator as a process, as the ovnvnet-operator ServiceAccount, short sweep intervals so
    the drift sweep (its pod and network listings) runs under that identity too."""
    # with leader election, as the Deployment runs it: the Lease RBAC is proven too
    installed.start_operator({"KUBECONFIG": str(operator_kubeconfig), "OVNVNET_SWEEP_INTERVAL": "1",
                              "OVNVNET_LEADER_ELECT": "true", "OVNVNET_NAMESPACE": NAMESPACE,
                              "OVNVNET_RETRY_INTERVAL": "1"})
    yield installed
    installed.stop_operator()


def operator_log(stack: Stack) -> str:
    return (stack.logs / "operator.log").read_text(errors="replace")


def assert_no_forbidden(text: str, who: str) -> None:
    bad = [line for line in text.splitlines() if any(m in line for m in FORBIDDEN_MARKS)]
    assert not bad, f"{who} was refused something it needs:\n" + "\n".join(bad[:20])


def vnet(stack: Stack, name: str) -> dict:
    return json.loads(stack.kubectl("get", "virtualnetwork", name, "-o", "json").stdout)


def allocations(stack: Stack, network: str) -> dict:
    """The network's allocation record: the union of its IPBlock objects."""
    out = json.loads(stack.kubectl("get", "ipblocks", "-l", f"ovnvnet.io/network={network}", "-o", "json").stdout)
    merged: dict = {}
    for block in out["items"]:
        merged.update(block.get("allocations") or {})
    return merged


def pod_annotations(stack: Stack, name: str, namespace: str = "default") -> dict:
    out = stack.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout)["metadata"].get("annotations", {}) if out.returncode == 0 else {}


def iface_list(stack: Stack, name: str) -> list[dict] | None:
    raw = pod_annotations(stack, name).get("ovnIfaceList")
    return json.loads(raw) if raw else None


# ---------------------------------------------------------------------------- operator
def test_operator_runs_the_seed_scenario_as_its_service_account(operator: Stack):
    whoami = kubectl_as(operator.root / "ovnvnet-operator.kubeconfig", "auth", "can-i", "patch", "pods")
    assert whoami.stdout.strip() == "yes"
    operator.kubectl("apply", "-f", str(SEED))
    ifaces = wait_for(lambda: iface_list(operator, "pod-ovn"), 30, "pod-ovn's ovnIfaceList")
    by_name = {i["interface"]: i for i in ifaces}
    assert by_name["net0"]["name"] == "ovn-ls-25" and by_name["net0"]["ip_address"].startswith("172.16.25.")
    assert by_name["net0"]["gateway_ip"] == "172.16.25.1"
    assert (by_name["net1"]["ip_address"], by_name["net1"]["mac_address"]) == ("172.16.26.3", "0a:00:00:00:00:15")

    def recorded() -> bool:
        a25 = allocations(operator, "ovn-ls-25")
        a26 = allocations(operator, "ovn-ls-26")
        return by_name["net0"]["ip_address"] in a25 and "172.16.26.3" in a26
    wait_for(recorded, 30, "allocations in both networks' IPBlock records")
    assert allocations(operator, "ovn-ls-26")["172.16.26.3"]["pod"] == "default/pod-ovn"
    wait_for(lambda: vnet(operator, "ovn-ls-26")["status"].get("usedIPs") == 1, 30, "usedIPs 1")
    # the operator's own NB rows exist (it reached OVN too)
    assert "ovn-ls-25" in operator.nbctl("ls-list") and "ovn-ls-26" in operator.nbctl("ls-list")
    time.sleep(2.5)  # let two drift sweeps run under this identity
    assert_no_forbidden(operator_log(operator), "the operator")


def test_operator_posts_events_as_its_service_account(operator: Stack):
    """A pod asking for an unknown network gets an event (events: create)."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "pod-unknown-net",
                        "annotations": {"ovnNetwork": json.dumps([{"name": "no-such-net", "interface": "net0"}])}},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    operator.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def event_reasons() -> set[str]:
        out = operator.kubectl("get", "events", "-n", "default", "-o", "json",
                               "--field-selector", "involvedObject.name=pod-unknown-net")
        return {e["reason"] for e in json.loads(out.stdout)["items"]}
    assert wait_for(event_reasons, 30, "an event on pod-unknown-net")
    operator.kubectl("delete", "pod", "pod-unknown-net", "--wait=false")


def test_probes_are_served(operator: Stack, rendered):
    """The Deployment's probe paths (and the metrics the Service exposes) answer on a live operator."""
    deploy = find(rendered["base"], "Deployment", "ovnvnet-operator")
    (c,) = deploy["spec"]["template"]["spec"]["containers"]
    for probe in ("livenessProbe", "readinessProbe"):
        path = c[probe]["httpGet"]["path"]
        with urllib.request.urlopen(f"http://127.0.0.1:{operator.health_port}{path}", timeout=5) as r:
            assert r.status == 200, (probe, path)
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.health_port}/metrics", timeout=5) as r:
        assert r.status == 200 and b"# TYPE" in r.read()


def test_operator_restart_and_cleanup_as_its_service_account(operator: Stack):
    """Restart (the allocator rebuild lists networks and pods), a pod's release, a network's
    deletion (Kopf removes its finalizer): all still under the ServiceAccount."""
    ifaces = wait_for(lambda: iface_list(operator, "pod-ovn"), 30, "pod-ovn attached")
    operator.stop_operator()
    operator.start_operator()  # same env: still the ServiceAccount's kubeconfig
    assert iface_list(operator, "pod-ovn") == ifaces

    operator.kubectl("delete", "pod", "pod-ovn", "--wait=true", "--timeout=30s")
    wait_for(lambda: not allocations(operator, "ovn-ls-26"), 30, "pod-ovn's address released in the record")
    operator.kubectl("delete", "virtualnetwork", "ovn-ls-25", "ovn-ls-26", "--wait=true", "--timeout=30s")
    wait_for(lambda: "ovn-ls-2" not in operator.nbctl("ls-list"), 30, "the logical switches removed")
    assert_no_forbidden(operator_log(operator), "the operator")


# ---------------------------------------------------------------------------- node agent
@pytest.fixture(scope="module")
def dataplane_prerequisites() -> None:
    require("the agent's RBAC check on a real data plane", node_missing())


@pytest.fixture(scope="module")
def shim(dataplane_prerequisites) -> Path:
    out = subprocess.run(["bash", str(REPO / "hack" / "build-cni.sh")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.split()[0])


def test_agent_plugs_the_seed_pod_as_its_service_account(dataplane_prerequisites, operator: Stack,
                                                         agent_kubeconfig: Path, shim: Path):
    """The node agent, as ovnvnet-agent, learns the pod's ovnIfaceList from its node-scoped watch
    and plugs both interfaces through the CNI shim into a real OVS + ovn-controller data plane."""
    from harness.dataplane import start_dataplane

    node = "node1"
    stack = operator
    netns = f"ovnv-inst-{secrets.token_hex(3)}"
    pod_ns = f"ovnv-inst-pod-{secrets.token_hex(3)}"
    dp = start_dataplane(stack.root / "dp", f"unix:{stack.root / 'ovn' / 'sb.sock'}", node, netns=netns)
    sock = stack.root / "agent.sock"
    agent_log = stack.logs / "agent.log"
    agent = None
    try:
        subprocess.run(["ip", "netns", "add", pod_ns], check=True)
        stack.kubectl("apply", "-f", str(SEED))
        stack.kubectl("delete", "pod", "pod-ovn", "--wait=true", "--timeout=30s")  # recreated on a node
        pod = next(d for d in objects(SEED.read_text()) if d["kind"] == "Pod")
        pod["spec"]["nodeName"] = node
        stack.kubectl("apply", "-f", "-", input=json.dumps(pod))
        uid = json.loads(stack.kubectl("get", "pod", "pod-ovn", "-o", "json").stdout)["metadata"]["uid"]
        wait_for(lambda: iface_list(stack, "pod-ovn"), 30, "pod-ovn's ovnIfaceList")

        with open(agent_log, "ab") as log:
            agent = subprocess.Popen(
                [sys.executable, "-m", "ovnvnet.cni.agent", "--node", node, "--socket", str(sock),
                 "--kubeconfig", str(agent_kubeconfig), "--ovs-db", dp.ovs_remote, "--host-netns", netns],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "OVNVNET_SEAL_KEY_FILE": str(stack.seal_key_file)})
        wait_for(lambda: sock.exists(), 30, "the agent's socket")
        wait_for(lambda: "synced" in agent_log.read_text(), 30, "the agent's pod cache to sync")

        container_id = uuid.uuid4().hex
        env = {"PATH": os.environ["PATH"], "CNI_CONTAINERID": container_id,
               "CNI_NETNS": f"/var/run/netns/{pod_ns}", "CNI_IFNAME": "net0", "CNI_PATH": "/usr/lib/cni",
               "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-ovn;"
                           f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid}",
               "OVNVNET_AGENT_SOCKET": str(sock)}
        nad = find(objects(kustomize(OVERLAYS["base"])), "NetworkAttachmentDefinition", "ovn-network")
        config = nad["spec"]["config"]  # exactly what Multus hands the shim
        add = subprocess.run([str(shim)], input=config, env={**env, "CNI_COMMAND": "ADD"},
                             capture_output=True, text=True, timeout=120)
        assert add.returncode == 0, (add.stdout, add.stderr, agent_log.read_text()[-3000:])
        result = json.loads(add.stdout)
        addresses = {ip["address"] for ip in result["ips"]}
        assert "172.16.26.3/24" in addresses and any(a.startswith("172.16.25.") for a in addresses)
        links = subprocess.run(["ip", "-n", pod_ns, "-j", "addr"], capture_output=True, text=True).stdout
        assert "172.16.26.3" in links and "0a:00:00:00:00:15" in links

        delete = subprocess.run([str(shim)], input=config, env={**env, "CNI_COMMAND": "DEL"},
                                capture_output=True, text=True, timeout=60)
        assert delete.returncode == 0, (delete.stdout, delete.stderr)
        assert_no_forbidden(agent_log.read_text(), "the node agent")
    finally:
        if agent is not None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(20)
            except subprocess.TimeoutExpired:
                agent.kill()
        dp.stop()
        dp.remove_netns()
        subprocess.run(["ip", "netns", "del", pod_ns], capture_output=True)


# ---------------------------------------------------------------------------- refusals
REFUSED_BOTH = [
    ("list", "secrets", "--all-namespaces"),
    ("get", "secrets", f"--namespace={NAMESPACE}"),
    ("delete", "nodes"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
    ("update", "pods", "--all-namespaces"),
    ("create", "pods", "--all-namespaces"),
    ("delete", "pods", "--all-namespaces"),
    ("patch", "pods", "--subresource=status", "--all-namespaces"),
    ("create", "pods", "--subresource=exec", "--all-namespaces"),
    ("create", "clusterrolebindings"),
    ("escalate", "clusterroles"),
    ("create", "serviceaccounts", "--subresource=token", f"--namespace={NAMESPACE}"),
    ("update", "configmaps", f"--namespace={NAMESPACE}"),
    ("create", "virtualnetworks.ovnvnet.io"),
    ("delete", "virtualnetworks.ovnvnet.io"),
]
REFUSED = {
    "ovnvnet-operator": REFUSED_BOTH + [("update", "virtualnetworks.ovnvnet.io", "--subresource=status")],
    "ovnvnet-agent": REFUSED_BOTH + [
        ("patch", "pods", "--all-namespaces"),
        ("get", "pods", "--all-namespaces"),
        ("create", "events", "--all-namespaces"),
        ("list", "virtualnetworks.ovnvnet.io"),
        ("patch", "virtualnetworks.ovnvnet.io", "--subresource=status"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ],
}
ALLOWED = {
    "ovnvnet-operator": [("patch", "pods", "--all-namespaces"), ("watch", "pods", "--all-namespaces"),
                         ("create", "events", "--namespace=default"),
                         ("patch", "virtualnetworks.ovnvnet.io"),
                         ("patch", "virtualnetworks.ovnvnet.io", "--subresource=status")],
    "ovnvnet-agent": [("list", "pods", "--all-namespaces"), ("watch", "pods", "--all-namespaces")],
}


@pytest.mark.parametrize("account", sorted(REFUSED))
def test_service_accounts_are_refused_the_rest(installed: Stack, account: str):
    """SelfSubjectAccessReview as each identity (what `kubectl auth can-i` sends)."""
    kubeconfig = service_account_kubeconfig(installed, account)
    wrongly_allowed = []
    for check in REFUSED[account]:
        out = kubectl_as(kubeconfig, "auth", "can-i", *check, check=False)
        if out.stdout.strip() != "no":
            wrongly_allowed.append(" ".join(check))
    assert not wrongly_allowed, f"{account} may: {wrongly_allowed}"
    for check in ALLOWED[account]:
        out = kubectl_as(kubeconfig, "auth", "can-i", *check, check=False)
        assert out.stdout.strip() == "yes", (account, check, out.stderr)
