"""The Helm chart installed on the REAL node (issue 19): `helm install ovnvnet charts/ovnvnet -n
ovnvnet-system --create-namespace -f tests/node/local-node-values.yaml` (harness/realnode.py,
installer "helm") runs the operator Deployment, the agent DaemonSet and the webhook as pods,
nothing of ovnvnet as a local process; then, in order:

- the seed's scenario exactly as with the kustomize install: test_install.py's own checks, called
  on this node (operator and agent as pods under their ServiceAccounts, one leader serving the
  webhook, real busybox containers with their interfaces pinging each other and both gateways over
  OVN, the webhook pod's refusal, FailedCreatePodSandBox with the operator's message, the runtime's
  DEL cleanup);
- `helm upgrade` changing the OVN NB address and the operator replicas: the operator and agent
  pods roll (the ConfigMap checksum on their templates), running pods keep their addresses and a
  ping across the roll loses nothing, a new pod attaches through the new address, and the
  invariant checker finds nothing leaked;
- `helm uninstall`: every object the release created is gone; the CRDs, the VirtualNetworks and
  the namespace (made by --create-namespace, not the chart) stay; so do the shim and the CNI
  configuration the agent's init step wrote on the node (README, "Uninstall", says why).

The tests share one node and run in this order. Only `make e2e-node` runs this module (see
conftest.py): it needs the real node and takes several minutes. Packets only travel between
network namespaces the run created (the node's and the pods').
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest
import yaml

from harness.kit import check_invariant, wait_until
from harness.realnode import RELEASE, SYSTEM_NS, RealNode
from harness.stack import REPO

from . import test_install as kustomize_install
from .test_install import pods, ready
from .test_realnode import GW25, NS, _pod, addresses, ping
from .test_realnode import seed as seed  # a fixture, shared with test_realnode (explicit re-export)

pytestmark = pytest.mark.timeout(900)

CHART = REPO / "charts" / "ovnvnet"
NETS = ["ovn-ls-25", "ovn-ls-26"]
OPS, AGENTS = "app.kubernetes.io/name=ovnvnet-operator", "app.kubernetes.io/name=ovnvnet-agent"
# the NB as the operator pods reach it after the upgrade: the node's 10.96.0.1 (on its lo, where
# the relay listening on the node's 0.0.0.0:6641 answers too) instead of the bridge's 10.85.0.1
NEW_NB = "tcp:10.96.0.1:6641"


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[RealNode]:
    yield from kustomize_install.installed_node(tmp_path_factory, "rnh", installer="helm")


def release(n: RealNode) -> dict:
    return json.loads(n.helm("status", RELEASE, "-n", SYSTEM_NS, "-o", "json").stdout)


def manifest_objects(n: RealNode) -> list[dict]:
    out = n.helm("get", "manifest", RELEASE, "-n", SYSTEM_NS).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def config(n: RealNode) -> dict[str, str]:
    out = n.stack.kubectl("get", "configmap", "-n", SYSTEM_NS, "ovnvnet-config", "-o", "json")
    return json.loads(out.stdout)["data"]


def iface_lists(cluster, names) -> dict[str, list]:
    return {name: json.loads(cluster.annotations(NS, name)["ovnIfaceList"]) for name in names}


def test_helm_install_runs_as_pods(node):
    kustomize_install.test_install_runs_as_pods_under_service_accounts(node)
    rel = release(node)
    assert rel["info"]["status"] == "deployed" and rel["version"] == 1, rel["info"]
    assert "kubectl label namespace ovnvnet-system ovnvnet.io/admission=skip" in rel["info"]["notes"]
    assert "keeps the CRDs and your VirtualNetworks" in rel["info"]["notes"]
    ops, agents = pods(node, OPS), pods(node, AGENTS)
    assert len(ops) == 2 and all(ready(p) for p in ops), [(p["metadata"]["name"], p["status"]) for p in ops]
    assert len(agents) == 1 and ready(agents[0]), agents[0]["status"]
    for p in ops + agents:
        assert p["status"]["containerStatuses"][0]["image"].endswith("localhost/ovnvnet:dev")
        assert "checksum/config" in p["metadata"]["annotations"], p["metadata"]
    assert all(p["spec"]["runtimeClassName"] == "ovnvnet-default-net" for p in ops)
    # the CRDs came from the chart's crds/ (the repository's crds/), installed by helm
    for crd in ("virtualnetworks.ovnvnet.io", "ipblocks.ovnvnet.io"):
        node.stack.kubectl("get", "crd", crd)
    # the agent's init step installed the shim and the conflist given in cni.configs
    shim = node.cni_bin / "ovn-k8s-cni-overlay"
    assert shim.is_file() and not shim.is_symlink() and os.access(shim, os.X_OK)
    conf = json.loads((node.cni_conf / "20-ovnvnet.conflist").read_text())
    assert conf["plugins"][0]["agentSocket"] == f"{node.local_root}/agent/cni.sock"
    assert not node.stack.running("operator") and not node.stack.running(node.stack.worker.AGENT)


def test_seed_scenario_as_with_kustomize(node, seed):
    kustomize_install.test_seed_pods_interfaces_and_pings_from_inside(node, seed)
    kustomize_install.test_webhook_pod_refuses_an_invalid_ovnnetwork_at_apply(node, seed)
    kustomize_install.test_invalid_pod_failed_sandbox_with_the_operator_pods_message(node, seed)
    kustomize_install.test_delete_leaves_no_port_veth_or_address(node, seed)   # pod-two goes
    check_invariant(seed["cluster"], NETS, timeout=60)


def test_helm_upgrade_nb_and_replicas_roll_pods_keep_addresses(node, seed):
    s, cluster = node.stack, seed["cluster"]
    names = ("pod-ovn", "pod-core", "pod-edge")
    before = iface_lists(cluster, names)
    old_ops = {p["metadata"]["name"] for p in pods(node, OPS)}
    old_agent = pods(node, AGENTS)[0]["metadata"]["name"]
    inside = addresses(node, "pod-ovn")
    target = seed["ips"]["pod-core"]["eth1"]["ip_address"]
    # 80 pings at 0.25 s from pod-edge to pod-core (across ovnvnet-router) while everything rolls
    pinger = kustomize_install.background_pings(s, "pod-edge", target, 80)
    time.sleep(1)
    t0 = time.monotonic()
    node.helm("upgrade", RELEASE, str(CHART), "-n", SYSTEM_NS, "-f", str(node.helm_values()),
              "--set", f"ovn.nbRemotes={{{NEW_NB}}}", "--set", "operator.replicas=1")
    node.wait_rolled_out()
    assert config(node)["OVN_NB_DB"] == NEW_NB
    wait_until(lambda: len(pods(node, OPS)) == 1, 120, interval=0.5, what="one operator pod (replicas=1)")
    (op,) = pods(node, OPS)
    assert op["metadata"]["name"] not in old_ops and ready(op), (op["metadata"]["name"], old_ops)
    (agent,) = pods(node, AGENTS)
    assert agent["metadata"]["name"] != old_agent and ready(agent)
    print(f"helm upgrade: operator and agent pods rolled in {time.monotonic() - t0:.1f}s")
    assert release(node)["version"] == 2
    out, _ = pinger.communicate(timeout=120)
    assert "80 packets transmitted, 80 packets received" in out, out
    # running pods keep their addresses, in their annotations and inside the containers
    assert iface_lists(cluster, names) == before
    assert addresses(node, "pod-ovn") == inside
    # the new operator pod uses the new address (its environment, from the ConfigMap)
    env = s.kubectl("exec", "-n", SYSTEM_NS, op["metadata"]["name"], "--", "printenv", "OVN_NB_DB").stdout
    assert env.strip() == NEW_NB, env
    # and attaches a new pod through it
    s.kubectl("apply", "-f", "-", input=json.dumps(_pod("pod-upgraded", [{"name": "ovn-ls-25", "interface": "net0"}])))
    s.kubectl("wait", "-n", NS, "--for=condition=Ready", "pod/pod-upgraded", "--timeout=120s")
    ip = json.loads(cluster.annotations(NS, "pod-upgraded")["ovnIfaceList"])[0]["ip_address"]
    assert ping(node, "pod-upgraded", GW25) and ping(node, "pod-ovn", ip)
    check_invariant(cluster, NETS, timeout=60)


def test_helm_uninstall_removes_what_it_created(node, seed):
    s, cluster = node.stack, seed["cluster"]
    created = manifest_objects(node)
    kinds = {o["kind"] for o in created}
    assert {"Deployment", "DaemonSet", "ClusterRole", "ValidatingWebhookConfiguration", "ConfigMap"} <= kinds
    # pods using ovnvnet go first (their CNI DEL needs the agent), as the README says
    for ns in (NS, "seed-unchecked"):
        s.kubectl("delete", "namespace", ns, "--timeout=180s")
    wait_until(lambda: not any(p.startswith(f"{NS}_") for p in cluster.nb_pod_ports()), 60, what="seed NB ports gone")
    out = node.helm("uninstall", RELEASE, "-n", SYSTEM_NS, "--wait", "--timeout", "180s")
    assert "uninstalled" in out.stdout, out.stdout
    for obj in created:
        md = obj["metadata"]
        args = ["get", obj["kind"].lower() if obj["kind"] != "NetworkAttachmentDefinition"
                else "network-attachment-definitions.k8s.cni.cncf.io", md["name"]]
        if md.get("namespace"):
            args += ["-n", md["namespace"]]
        got = s.kubectl(*args, check=False)
        assert got.returncode != 0 and "NotFound" in got.stderr, (obj["kind"], md, got.stdout)
    wait_until(lambda: not pods(node, OPS) and not pods(node, AGENTS), 120, interval=0.5,
               what="the operator and agent pods gone")
    assert node.helm("list", "-n", SYSTEM_NS, "-q").stdout.strip() == ""
    # Helm's convention: CRDs (and so the VirtualNetworks) stay; the namespace was --create-namespace's
    for crd in ("virtualnetworks.ovnvnet.io", "ipblocks.ovnvnet.io"):
        s.kubectl("get", "crd", crd)
    for net in NETS:
        s.kubectl("get", "virtualnetwork", net)
    s.kubectl("get", "namespace", SYSTEM_NS)
    # the node keeps the shim and the conflist (README "Uninstall": removed by hand, or overwritten
    # by the next install)
    assert (node.cni_bin / "ovn-k8s-cni-overlay").is_file()
    assert (node.cni_conf / "20-ovnvnet.conflist").is_file()
