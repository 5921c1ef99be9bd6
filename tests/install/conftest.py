"""Fixtures for the install checks: the rendered manifests and the real local stack.

The stack (etcd, kube-apiserver 1.20, kube-controller-manager, OVN NB/SB + northd on loopback)
lives in a temp directory per module and is always brought down at the end. Identities for the
ServiceAccounts come from the TokenRequest API, exactly what a pod's projected token is.
"""
from __future__ import annotations

import json
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
    s = Stack(root)
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
    path = stack.root / f"{name}.kubeconfig"
    path.write_text(json.dumps(cfg))
    path.chmod(0o600)
    return path
