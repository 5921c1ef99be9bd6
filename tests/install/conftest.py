"""Fixtures for the install checks: the rendered manifests and the real local stack.

The stack (etcd, kube-apiserver 1.20, kube-controller-manager, OVN NB/SB + northd on loopback)
lives in a temp directory per module and is always brought down at the end. Its API server runs
with `--enable-aggregator-routing=true`: the manifests register the webhook by Service, and with no
kube-proxy the API server must resolve that Service to its Endpoints (see podnet.py), never dial a
ClusterIP. Identities for the ServiceAccounts come from the TokenRequest API, exactly what a pod's
projected token is.
"""
from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.stack import KUBE_BIN, Stack
from tests.prerequisites import missing, require, stack_missing

REPO = Path(__file__).resolve().parents[2]
KUBECTL = KUBE_BIN / "kubectl"
NAD_CRD = Path(__file__).with_name("nad-crd.yaml")
NAMESPACE = "ovnvnet-system"
OVERLAYS = {"base": REPO / "manifests", "example": REPO / "manifests" / "overlays" / "example"}


class InstallStack(Stack):
    """The local stack, its API server resolving Services through their Endpoints."""

    def spawn(self, name: str, argv: list[str], env: dict | None = None):
        if name == "kube-apiserver":
            argv = [*argv, "--enable-aggregator-routing=true"]
        return super().spawn(name, argv, env)


def kustomize(path: Path) -> str:
    """Render with Debian's kubectl 1.20 (kustomize v2.0.3), the oldest client we support."""
    out = subprocess.run([str(KUBECTL), "kustomize", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, f"kubectl kustomize {path}: {out.stderr}"
    return out.stdout


def objects(rendered: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def find(objs: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    require("rendering the manifests", missing(files=[KUBECTL]))
    return {name: objects(kustomize(path)) for name, path in OVERLAYS.items()}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    require("the install checks on the local stack", stack_missing(KUBE_BIN))
    root = Path(tempfile.mkdtemp(prefix="ovnv-install-", dir="/tmp"))
    s = InstallStack(root)
    try:
        s.up(operator=False)
        # Multus is a prerequisite of the install: it brings the NetworkAttachmentDefinition CRD.
        s.kubectl("apply", "-f", str(NAD_CRD))
        s.kubectl("wait", "--for=condition=Established", "--timeout=30s", "-f", str(NAD_CRD))
        yield s
    finally:
        s.down()


def kubectl_as(kubeconfig: Path, *args: str, input: str | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([str(KUBECTL), f"--kubeconfig={kubeconfig}", *args], input=input,
                         capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {out.stderr}")
    return out


def service_account_kubeconfig(stack: Stack, name: str, namespace: str = NAMESPACE) -> Path:
    """A kubeconfig authenticating as ServiceAccount `name`, with a token from TokenRequest."""
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"expirationSeconds": 3600}}
    out = stack.kubectl("create", "--raw",
                        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                        "-f", "-", input=json.dumps(request))
    token = json.loads(out.stdout)["status"]["token"]
    cfg = json.loads(stack.kubeconfig.read_text())
    cfg["users"] = [{"name": name, "user": {"token": token}}]
    for ctx in cfg["contexts"]:
        ctx["context"]["user"] = name
    path = stack.root / (f"{name}.kubeconfig" if namespace == NAMESPACE else f"{namespace}-{name}.kubeconfig")
    path.write_text(json.dumps(cfg))
    path.chmod(0o600)
    return path


def container_env(objs: list[dict], kind: str, name: str, pod: dict[str, str],
                  overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The `env` a workload's first container gets, as the kubelet resolves it for a pod
    (`pod`: metadata.name, metadata.namespace, spec.serviceAccountName...), then `overrides`."""
    spec = find(objs, kind, name)["spec"]["template"]["spec"]
    fields = {"spec.serviceAccountName": spec.get("serviceAccountName", "default"), **pod}
    env: dict[str, str] = {}
    for var in spec["containers"][0].get("env", []):
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), var["value"])
        elif "fieldRef" in var.get("valueFrom", {}):
            env[var["name"]] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
    env.update(overrides or {})
    return env


POD_AUTHOR = [{"apiGroups": [""], "resources": ["pods"],
               "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]


def namespace_with_user(stack: Stack, namespace: str, user: str, rules: list[dict] | None = None,
                        labels: dict[str, str] | None = None) -> Path:
    """Namespace `namespace` (with `labels`) and ServiceAccount `user` in it, given a Role there with
    `rules` (default: what a team member who deploys pods has on pods; the built-in `edit` role is
    empty here: its aggregation controller does not run in the stack); returns its kubeconfig."""
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": labels or {}}}
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": user, "namespace": namespace}}
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": user, "namespace": namespace}, "rules": rules or POD_AUTHOR}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": user, "namespace": namespace},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": user},
               "subjects": [{"kind": "ServiceAccount", "name": user, "namespace": namespace}]}
    stack.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                        "items": [ns, sa, role, binding]}))
    return service_account_kubeconfig(stack, user, namespace)
