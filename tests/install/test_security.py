"""Least privilege and the webhook's registration shape, asserted on the manifests as
`kubectl kustomize` renders them (base and the example overlay).

What the workloads may do on a node is fixed here: the agent drops every capability and adds back
NET_ADMIN and SYS_ADMIN only, with RuntimeDefault seccomp, no hostPID, a read-only root; the
operator runs non-root, read-only, with no capability. The webhook is registered through its
Service (never a URL), fails open, is bounded in time and scope, and names what the operator
serves. tests/install/test_webhook_installed.py runs that registration on the real API server.
"""
from __future__ import annotations

import re

import pytest

from .conftest import NAMESPACE, REPO, find

pytestmark = pytest.mark.timeout(120)

AGENT_CAPS = {"NET_ADMIN", "SYS_ADMIN"}
OVERLAY_NAMES = ("base", "example")


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def all_containers(obj: dict) -> list[dict]:
    spec = pod_spec(obj)
    return spec.get("initContainers", []) + spec["containers"]


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_agent_drops_all_and_adds_back_only_what_it_needs(rendered, overlay):
    daemon = find(rendered[overlay], "DaemonSet", "ovnvnet-agent")
    pod = pod_spec(daemon)
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostPID"), "containerd/CRI-O netns paths are under /var/run/netns: no hostPID"
    assert not pod.get("hostIPC")
    for c in all_containers(daemon):
        sc = c["securityContext"]
        assert sc.get("privileged") is False, c["name"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
    (init,) = pod["initContainers"]
    assert not init["securityContext"]["capabilities"].get("add"), "copying files needs no capability"
    (agent,) = pod["containers"]
    assert set(agent["securityContext"]["capabilities"]["add"]) == AGENT_CAPS
    # the manifest says why each capability is there, and why there is no hostPID
    text = (REPO / "manifests" / "base" / "agent.yaml").read_text()
    for cap in AGENT_CAPS:
        assert re.search(rf"^#\s+{cap}\s+\S", text, re.M), f"agent.yaml does not say why {cap}"
    assert "no hostPID" in text and "SYS_PTRACE" in text


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_operator_is_non_root_read_only_without_capabilities(rendered, overlay):
    deploy = find(rendered[overlay], "Deployment", "ovnvnet-operator")
    pod = pod_spec(deploy)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    assert not any("hostPath" in v for v in pod["volumes"])
    for c in all_containers(deploy):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}, "no capability added back"
        assert not sc.get("privileged")
        # the only writable place is /tmp (an emptyDir): where the webhook certificate is made
        writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
        assert writable == {"/tmp"}
        tmp = next(v for v in pod["volumes"] if v["name"] == next(
            m["name"] for m in c["volumeMounts"] if m["mountPath"] == "/tmp"))
        assert tmp == {"name": tmp["name"], "emptyDir": {}}


def _operator_env(objs: list[dict]) -> dict[str, dict]:
    deploy = find(objs, "Deployment", "ovnvnet-operator")
    return {e["name"]: e for e in pod_spec(deploy)["containers"][0]["env"]}


def _kopf_webhook_ids() -> dict[str, str]:
    """Kopf serves each validating handler at /<id>: the ids main.py registers, by resource."""
    src = (REPO / "operator" / "ovnvnet" / "main.py").read_text()
    calls = re.findall(r"kopf\.on\.validate\(([^)]*)\)", src)
    return {re.search(r'id="([\w-]+)"', args).group(1): args for args in calls}


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_webhook_is_registered_through_its_service(rendered, overlay):
    objs = rendered[overlay]
    cfg = find(objs, "ValidatingWebhookConfiguration", "ovnvnet.io")
    svc = find(objs, "Service", "ovnvnet-webhook")
    deploy = find(objs, "Deployment", "ovnvnet-operator")
    env = _operator_env(objs)
    assert env["OVNVNET_WEBHOOK"]["value"] == "true"
    assert env["OVNVNET_WEBHOOK_SERVICE"]["value"] == "$(POD_NAMESPACE)/ovnvnet-webhook"
    assert svc["metadata"]["namespace"] == NAMESPACE
    assert env["OVNVNET_WEBHOOK_CONFIGURATION"]["value"] == cfg["metadata"]["name"]
    assert env["OVNVNET_SERVICE_ACCOUNT"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}
    # the Service reaches the container's webhook port, on the serving replica only
    (port,) = svc["spec"]["ports"]
    container = pod_spec(deploy)["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port["targetPort"] == "webhook" and str(ports["webhook"]) == env["OVNVNET_WEBHOOK_PORT"]["value"]
    assert svc["spec"]["selector"]["ovnvnet.io/webhook"] == "serving"
    template_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert "ovnvnet.io/webhook" not in template_labels, "the leader labels itself; the template must not"
    assert {k: v for k, v in svc["spec"]["selector"].items() if k != "ovnvnet.io/webhook"}.items() \
        <= template_labels.items()
    # every webhook names the Service (no URL), fails open, is bounded, and is served by an id
    ids = _kopf_webhook_ids()
    assert {"ovnnetwork", "ownedannotations", "virtualnetwork"} <= set(ids)
    names = set()
    for hook in cfg["webhooks"]:
        cc = hook["clientConfig"]
        assert "url" not in cc and "caBundle" not in cc, "caBundle comes from the operator at start"
        assert cc["service"]["namespace"] == svc["metadata"]["namespace"]
        assert cc["service"]["name"] == svc["metadata"]["name"] and cc["service"]["port"] == port["port"]
        assert cc["service"]["path"].lstrip("/") in ids, cc["service"]["path"]
        assert hook["failurePolicy"] == "Ignore" and hook["sideEffects"] == "None"
        assert hook["timeoutSeconds"] <= 5
        assert "DELETE" not in {op for r in hook["rules"] for op in r["operations"]}
        names.add(hook["name"])
        if any(r["scope"] == "Namespaced" for r in hook["rules"]):
            (expr,) = hook["namespaceSelector"]["matchExpressions"]
            ns = find(objs, "Namespace", NAMESPACE)
            assert ns["metadata"]["labels"][expr["key"]] in expr["values"] and expr["operator"] == "NotIn", \
                "the operator's own namespace is never sent to its webhook"
    assert len(names) == len(cfg["webhooks"])
    status_hook = next(h for h in cfg["webhooks"] if h["clientConfig"]["service"]["path"] == "/ownedannotations")
    assert status_hook["rules"][0]["resources"] == ["pods/status"]
    assert 'subresource="status"' in ids["ownedannotations"]
    # RBAC: read and patch that one configuration, nothing else of admissionregistration
    role = find(objs, "ClusterRole", "ovnvnet-operator")
    rules = [r for r in role["rules"] if "admissionregistration.k8s.io" in r["apiGroups"]]
    assert rules == [{"apiGroups": ["admissionregistration.k8s.io"],
                      "resources": ["validatingwebhookconfigurations"],
                      "resourceNames": [cfg["metadata"]["name"]], "verbs": ["get", "patch"]}]


def test_every_operator_setting_in_the_manifests_is_read():
    """Each OVNVNET_* variable the Deployment and DaemonSet set is read by the code."""
    src = "\n".join(p.read_text() for p in (REPO / "operator" / "ovnvnet").rglob("*.py")
                    if "testing" not in p.parts)
    text = "\n".join(p.read_text() for p in (REPO / "manifests" / "base").glob("*.yaml"))
    names = set(re.findall(r"name: (OVNVNET_\w+)", text))
    assert names, "no OVNVNET_ settings found"
    unread = sorted(n for n in names if f'"{n}"' not in src)
    assert not unread, f"set by the manifests, read by nothing: {unread}"
