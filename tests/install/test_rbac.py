"""The RBAC in manifests/ is sufficient, necessary and least privilege, proven on the real API server.

The rendered manifests are applied; the operator and the node agent then run as processes
authenticated as their ServiceAccounts (tokens from the TokenRequest API, as a pod's projected
token) and carry every shipped feature: the seed's scenario end to end (networks applied, the pod's
ovnIfaceList written, allocations recorded in the IPBlock objects, the pod plugged into a real
OVS/OVN data plane by the agent through the CNI shim, then released), a network's
namespaceSelector, the legacy default network, the seal's Secret. Any 403 shows up in their logs
and fails the test. The webhook's registration under the ServiceAccount is
test_webhook_installed.py's.

Each rule is shown granted by a SelfSubjectAccessReview (`kubectl auth can-i`, one per verb,
resource and name of every rule, read from the rendered Roles), the important ones shown necessary
(a copy of the role without its namespaces rule: a selector network's pod is never attached, and
is once the rule is back), and everything else refused.
"""
from __future__ import annotations

import json
import os
import re
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

FORBIDDEN_MARKS = ("forbidden", "Forbidden", "Not enough permissions")
# the status code, not "vm-24034" (a host name) nor a log time's milliseconds (",403")
FORBIDDEN_CODE = re.compile(r"(?<![\w.,:-])403(?![\w.-])")
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
    bad = [line for line in text.splitlines() if any(m in line for m in FORBIDDEN_MARKS) or FORBIDDEN_CODE.search(line)]
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


# ---------------------------------------------------------------------------- every feature
def _network(stack: Stack, name: str, subnet: str, **spec) -> None:
    body = {"apiVersion": "ovnvnet.io/v1", "kind": "VirtualNetwork", "metadata": {"name": name},
            "spec": {"subnet": subnet, **spec}}
    stack.kubectl("apply", "-f", "-", input=json.dumps(body))
    wait_for(lambda: any(c.get("type") == "Ready" and c.get("status") == "True"
                         for c in (vnet(stack, name).get("status") or {}).get("conditions", [])),
             30, f"network {name} Ready")


def _namespace(stack: Stack, name: str, labels: dict[str, str]) -> None:
    stack.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}))


def _pod(stack: Stack, name: str, namespace: str, annotations: dict, node: str | None = None) -> None:
    spec: dict = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    stack.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace,
                                                          "annotations": annotations}, "spec": spec}))


SELECTOR_NET = "rbac-selector"


def test_namespace_selector_as_its_service_account(operator: Stack):
    """namespaceSelector reads the pod's namespace (namespaces: get): a matching namespace's pod
    is attached, another's is refused with the network's reason."""
    _namespace(operator, "rbac-blue", {"team": "blue"})
    _namespace(operator, "rbac-red", {"team": "red"})
    _network(operator, SELECTOR_NET, "172.31.40.0/24", namespaceSelector={"matchLabels": {"team": "blue"}})
    request = {"ovnNetwork": json.dumps([{"name": SELECTOR_NET, "interface": "net0"}])}
    _pod(operator, "inside", "rbac-blue", request)
    _pod(operator, "outside", "rbac-red", request)
    raw = wait_for(lambda: pod_annotations(operator, "inside", "rbac-blue").get("ovnIfaceList"), 30,
                   "the selected namespace's pod attached")
    assert json.loads(raw)[0]["ip_address"].startswith("172.31.40.")
    error = wait_for(lambda: pod_annotations(operator, "outside", "rbac-red").get("ovnNetworkError"), 30,
                     "the other namespace's pod refused")
    assert f"network {SELECTOR_NET} does not admit pods from namespace rbac-red" in error
    assert_no_forbidden(operator_log(operator), "the operator")


def test_multus_way_as_its_service_account(operator: Stack):
    """The installed operator publishes a NetworkAttachmentDefinition per network in its own
    namespace (Role ovnvnet-operator-nads), deletes it with the network, and serves a pod asking
    the Multus way (`k8s.v1.cni.cncf.io/networks`)."""
    name = "rbac-multus"
    _network(operator, name, "172.31.41.0/24")

    def published() -> dict | None:
        out = operator.kubectl("-n", "ovnvnet-system", "get", "network-attachment-definitions", name,
                               "-o", "json", check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None
    nad = wait_for(published, 30, "the network's NetworkAttachmentDefinition")
    assert json.loads(nad["spec"]["config"]) == {"cniVersion": "0.4.0", "name": name, "type": "ovn-k8s-cni-overlay",
                                                 "capabilities": {"ips": True, "mac": True}}
    _namespace(operator, "rbac-multus-pods", {})
    _pod(operator, "multus", "rbac-multus-pods", {"k8s.v1.cni.cncf.io/networks": f"ovnvnet-system/{name}@net3"})
    raw = wait_for(lambda: pod_annotations(operator, "multus", "rbac-multus-pods").get("ovnIfaceList"), 30,
                   "the Multus-way pod attached")
    assert [(i["interface"], i["name"]) for i in json.loads(raw)] == [("net3", name)]
    operator.kubectl("-n", "rbac-multus-pods", "delete", "pod", "multus", "--grace-period=0", "--wait=true")
    operator.kubectl("delete", "virtualnetwork", name, "--wait=true")
    wait_for(lambda: published() is None, 30, "the NetworkAttachmentDefinition deleted with its network")
    assert_no_forbidden(operator_log(operator), "the operator")


def test_legacy_default_network_as_its_service_account(operator: Stack):
    """A pod without ovnNetwork on a node gets one interface on OVNVNET_DEFAULT_NETWORK, answered in
    its `ovn` annotation, under the ServiceAccount."""
    _network(operator, "rbac-legacy", "172.31.41.0/24")
    env = dict(operator.state["operator_env"])
    operator.stop_operator()
    operator.start_operator({**env, "OVNVNET_DEFAULT_NETWORK": "rbac-legacy"})
    try:
        _pod(operator, "legacy", "default", {}, node="node1")
        raw = wait_for(lambda: (a := pod_annotations(operator, "legacy").get("ovn")) and "gateway_ip" in a and a,
                       30, "the legacy pod's ovn result")
        result = json.loads(raw)
        assert result["gateway_ip"] == "172.31.41.1" and result["ip_address"].startswith("172.31.41.")
        wait_for(lambda: result["ip_address"].split("/")[0] in allocations(operator, "rbac-legacy"), 30,
                 "the legacy allocation in its IPBlock")
        assert_no_forbidden(operator_log(operator), "the operator")
    finally:
        operator.kubectl("delete", "pod", "legacy", "--grace-period=0", "--force", "--wait=false", check=False)
        operator.stop_operator()
        operator.start_operator(env)


def test_seal_secret_rules_allow_exactly_the_get_or_create(operator: Stack, operator_kubeconfig: Path,
                                                          agent_kubeconfig: Path):
    """What the operator does with the seal's Secret (get ovnvnet-seal; create it when missing)
    is allowed to its ServiceAccount in its namespace, on the API, and nothing around it is."""
    ns = f"--namespace={NAMESPACE}"
    create = kubectl_as(operator_kubeconfig, "create", "secret", "generic", "ovnvnet-seal", ns,
                        "--from-literal=key=" + secrets.token_hex(32), check=False)
    assert create.returncode == 0 or "AlreadyExists" in create.stderr, create.stderr  # the operator made it first
    got = kubectl_as(operator_kubeconfig, "get", "secret", "ovnvnet-seal", ns, "-o", "json")
    assert json.loads(got.stdout)["data"]["key"]
    for args in (("get", "secret", "other", ns), ("get", "secrets", ns), ("delete", "secret", "ovnvnet-seal", ns),
                 ("get", "secret", "ovnvnet-seal", "--namespace=default")):
        out = kubectl_as(operator_kubeconfig, *args, check=False)
        assert out.returncode != 0 and "forbidden" in out.stderr.lower(), (args, out.stderr)
    out = kubectl_as(agent_kubeconfig, "get", "secret", "ovnvnet-seal", ns, check=False)
    assert out.returncode != 0 and "forbidden" in out.stderr.lower(), "the agent reads the key from its mount only"


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
               "CNI_NETNS": f"/var/run/netns/{pod_ns}", "CNI_IFNAME": "net1", "CNI_PATH": "/usr/lib/cni",
               "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-ovn;"
                           f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid}",
               "OVNVNET_AGENT_SOCKET": str(sock)}
        nad = find(objects(kustomize(OVERLAYS["base"])), "NetworkAttachmentDefinition", "ovn-network")
        config = nad["spec"]["config"]  # exactly what Multus hands the shim
        add = subprocess.run([str(shim)], input=config, env={**env, "CNI_COMMAND": "ADD"},
                             capture_output=True, text=True, timeout=120)
        assert add.returncode == 0, (add.stdout, add.stderr, agent_log.read_text()[-3000:])
        result = json.loads(add.stdout)
        # the shipped seed attachment reports only CNI_IFNAME's interface ("resultInterfaces": "ifname",
        # so Multus 4.0.x's one network-status entry is true); the call plumbs both
        assert [ip["address"] for ip in result["ips"]] == ["172.16.26.3/24"]
        assert [i["name"] for i in result["interfaces"] if i.get("sandbox")] == ["net1"]
        links = subprocess.run(["ip", "-n", pod_ns, "-j", "addr"], capture_output=True, text=True).stdout
        assert "172.16.26.3" in links and "0a:00:00:00:00:15" in links and "172.16.25." in links
        # hot-plug's report, written as ovnvnet-agent (patch pods): every interface plumbed
        names = sorted(i["interface"] for i in iface_list(stack, "pod-ovn") or [])

        def plumbed_status() -> dict:
            return json.loads(pod_annotations(stack, "pod-ovn").get("ovnvnet.io/plumbed", "{}"))
        wait_for(lambda: plumbed_status() == dict.fromkeys(names, "plumbed"), 30,
                 "the agent's ovnvnet.io/plumbed on pod-ovn")

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
    "ovnvnet-operator": REFUSED_BOTH + [
        ("update", "virtualnetworks.ovnvnet.io", "--subresource=status"),
        ("list", "secrets", f"--namespace={NAMESPACE}"),
        ("watch", "secrets", f"--namespace={NAMESPACE}"),
        ("get", "secrets/other", f"--namespace={NAMESPACE}"),
        ("update", "secrets/ovnvnet-seal", f"--namespace={NAMESPACE}"),
        ("delete", "secrets/ovnvnet-seal", f"--namespace={NAMESPACE}"),
        ("create", "secrets", "--namespace=default"),
        ("get", "secrets/ovnvnet-seal", "--namespace=default"),
        ("watch", "namespaces"),
        ("patch", "namespaces"),
        ("create", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
        ("update", "validatingwebhookconfigurations.admissionregistration.k8s.io/ovnvnet.io"),
        ("delete", "validatingwebhookconfigurations.admissionregistration.k8s.io/ovnvnet.io"),
        ("list", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
        ("patch", "validatingwebhookconfigurations.admissionregistration.k8s.io/other"),
        ("get", "validatingwebhookconfigurations.admissionregistration.k8s.io/other"),
        ("patch", "mutatingwebhookconfigurations.admissionregistration.k8s.io/ovnvnet.io"),
    ],
    "ovnvnet-agent": REFUSED_BOTH + [
        ("get", "secrets/ovnvnet-seal", f"--namespace={NAMESPACE}"),
        ("create", "secrets", f"--namespace={NAMESPACE}"),
        ("get", "namespaces"),
        ("patch", "validatingwebhookconfigurations.admissionregistration.k8s.io/ovnvnet.io"),
        ("get", "pods", "--all-namespaces"),
        ("patch", "events", "--all-namespaces"),
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
    "ovnvnet-agent": [("list", "pods", "--all-namespaces"), ("watch", "pods", "--all-namespaces"),
                      ("patch", "pods", "--all-namespaces"),  # hot-plug: ovnvnet.io/plumbed
                      ("create", "events", "--namespace=default")],
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


def _rule_checks(rule: dict, namespace: str | None) -> list[tuple[str, ...]]:
    """One `kubectl auth can-i` per verb, resource and name the rule grants."""
    checks = []
    scope = (f"--namespace={namespace}",) if namespace else ("--all-namespaces",)
    for group in rule["apiGroups"]:
        for resource in rule["resources"]:
            base, _, sub = resource.partition("/")
            qualified = f"{base}.{group}" if group else base
            extra = (f"--subresource={sub}",) if sub else ()
            for verb in rule["verbs"]:
                for name in rule.get("resourceNames") or [None]:
                    checks.append((verb, f"{qualified}/{name}" if name else qualified, *extra, *scope))
    return checks


def test_every_rule_is_granted_as_written(installed: Stack, rendered):
    """A SelfSubjectAccessReview for every verb x resource x name of every rule bound to each
    ServiceAccount, read from the rendered Roles: the API server grants exactly what is written."""
    objs = rendered["base"]
    roles = {(o["kind"], o["metadata"]["name"]): o for o in objs if o["kind"] in ("Role", "ClusterRole")}
    bindings = [o for o in objs if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert bindings
    denied = []
    total = 0
    for binding in bindings:
        role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
        namespace = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        for subject in binding["subjects"]:
            kubeconfig = service_account_kubeconfig(installed, subject["name"])
            for rule in role["rules"]:
                for check in _rule_checks(rule, namespace):
                    total += 1
                    out = kubectl_as(kubeconfig, "auth", "can-i", *check, check=False)
                    if out.stdout.strip() != "yes":
                        denied.append(f"{subject['name']}: {' '.join(check)} ({out.stderr.strip()})")
    assert total == 40 and not denied, (total, denied)  # 26 operator (7 for IPClaims), 3 Lease, 2 seal, 5 NADs, 4 agent


# ---------------------------------------------------------------------------- necessary
def test_without_namespaces_get_a_selector_network_never_attaches(operator: Stack, rendered):
    """The operator bound to a copy of its ClusterRole without its namespaces rule (get, list): a
    pod on a namespaceSelector network gets no result (the API refuses the namespace read, logged as
    such); bound back to the shipped role, the same pod is attached."""
    stack = operator
    objs = rendered["base"]
    role = find(objs, "ClusterRole", "ovnvnet-operator")
    binding = find(objs, "ClusterRoleBinding", "ovnvnet-operator")
    reduced = {**role, "metadata": {"name": "ovnvnet-operator-no-namespaces"},
               "rules": [r for r in role["rules"] if r["resources"] != ["namespaces"]]}
    assert len(reduced["rules"]) == len(role["rules"]) - 1

    def bind(role_name: str) -> None:
        stack.kubectl("delete", "clusterrolebinding", "ovnvnet-operator", check=False)
        stack.kubectl("apply", "-f", "-", input=json.dumps(
            {**binding, "roleRef": {**binding["roleRef"], "name": role_name}}))

    _namespace(stack, "rbac-green", {"team": "green"})
    _network(stack, "rbac-green-net", "172.31.42.0/24", namespaceSelector={"matchLabels": {"team": "green"}})
    env = dict(stack.state["operator_env"])
    stack.stop_operator()
    stack.kubectl("apply", "-f", "-", input=json.dumps(reduced))
    bind("ovnvnet-operator-no-namespaces")
    log = stack.logs / "operator.log"
    mark = log.stat().st_size
    try:
        kubeconfig = Path(env["KUBECONFIG"])
        wait_for(lambda: kubectl_as(kubeconfig, "auth", "can-i", "get", "namespaces",
                                    check=False).stdout.strip() == "no", 10, "the reduced role in force")
        stack.start_operator(env)
        _pod(stack, "needs-ns", "rbac-green",
             {"ovnNetwork": json.dumps([{"name": "rbac-green-net", "interface": "net0"}])})
        time.sleep(8)  # several retry rounds (OVNVNET_RETRY_INTERVAL=1)
        assert "ovnIfaceList" not in pod_annotations(stack, "needs-ns", "rbac-green")
        since = log.read_text(errors="replace")[mark:]
        refused = any(m in since for m in FORBIDDEN_MARKS) or FORBIDDEN_CODE.search(since)
        assert "namespaces" in since and refused, since[-2000:]
    finally:
        stack.stop_operator()
        bind("ovnvnet-operator")
        stack.kubectl("delete", "clusterrole", "ovnvnet-operator-no-namespaces", check=False)
    stack.start_operator(env)
    wait_for(lambda: pod_annotations(stack, "needs-ns", "rbac-green").get("ovnIfaceList"), 30,
             "the same pod attached once the rule is back")
