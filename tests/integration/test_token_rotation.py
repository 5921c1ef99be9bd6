"""Bound ServiceAccount tokens rotate: the kubelet replaces the token file before the token expires.
The operator's client (KubeClient), and Kopf through its login handler, follow the file.

On the real API server: two ServiceAccounts whose RBAC differs (each may read only its own
ConfigMap), tokens from the TokenRequest API bound to a Secret (deleting the Secret revokes the
token, as deleting a pod revokes its projected token). The file's token is replaced by the other
identity's: which ConfigMap can be read shows which token the requests now carry.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from harness.stack import Stack, free_port
from ovnvnet.kube.client import ApiError, KubeClient
from ovnvnet.kube.connection import from_kubeconfig
from tests.integration.conftest import OPERATOR_ENV
from tests.integration.kit import Cluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _apply(stack: Stack, *objects: dict) -> None:
    stack.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))


def _token(stack: Stack, namespace: str, sa: str, bound_secret: str | None = None) -> str:
    """A token from the TokenRequest API, bound to Secret `bound_secret` if given (revoked with it)."""
    spec: dict = {"expirationSeconds": 3600}
    if bound_secret:
        out = stack.kubectl("get", "secret", "-n", namespace, bound_secret, "-o", "json")
        uid = json.loads(out.stdout)["metadata"]["uid"]
        spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Secret", "name": bound_secret, "uid": uid}
    out = stack.kubectl("create", "--raw", f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token",
                        "-f", "-", input=json.dumps({"apiVersion": "authentication.k8s.io/v1",
                                                     "kind": "TokenRequest", "spec": spec}))
    return json.loads(out.stdout)["status"]["token"]


def _replace(path: Path, token: str) -> None:
    """As the kubelet does: a new file renamed over the old one."""
    tmp = path.with_suffix(".new")
    tmp.write_text(token)
    os.replace(tmp, path)


def _token_kubeconfig(stack: Stack, token_file: Path) -> Path:
    cfg = json.loads(stack.kubeconfig.read_text())
    cfg["users"] = [{"name": "rotating", "user": {"tokenFile": str(token_file)}}]
    for ctx in cfg["contexts"]:
        ctx["context"]["user"] = "rotating"
    path = token_file.with_name("kubeconfig")
    path.write_text(json.dumps(cfg))
    return path


def _status_with(stack: Stack, token: str) -> int:
    ctx = ssl.create_default_context(cafile=str(stack.root / "pki" / "apiserver.crt"))
    req = urllib.request.Request(stack.api_url + "/api", headers={"Authorization": f"Bearer {token}"})
    try:
        return urllib.request.urlopen(req, timeout=5, context=ctx).status
    except urllib.error.HTTPError as exc:
        return exc.code


def _revoke(stack: Stack, namespace: str, secret: str, token: str) -> None:
    stack.kubectl("delete", "secret", "-n", namespace, secret)
    # the API server caches a token's review for a few seconds
    wait_until(lambda: _status_with(stack, token) == 401, 60, interval=0.5, what="the old token to be revoked")


@pytest.fixture
def identities(stack: Stack, tmp_path: Path):
    """Namespace with ServiceAccounts a and b; a may get ConfigMap cm-a only, b cm-b only."""
    ns = "rot-" + uuid.uuid4().hex[:6]
    objs: list[dict] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]
    for who in ("a", "b"):
        objs += [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": who, "namespace": ns}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{who}", "namespace": ns},
             "data": {"who": who}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"bind-{who}", "namespace": ns}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": f"read-{who}", "namespace": ns},
             "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [f"cm-{who}"],
                        "verbs": ["get"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": f"read-{who}", "namespace": ns},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"read-{who}"},
             "subjects": [{"kind": "ServiceAccount", "name": who, "namespace": ns}]},
        ]
    _apply(stack, *objs[:1])
    _apply(stack, *objs[1:])
    yield ns
    stack.kubectl("delete", "namespace", ns, "--wait=false", check=False)


async def _who(kube: KubeClient, ns: str) -> str:
    """Which identity the client's requests carry: the one whose ConfigMap it may read."""
    readable = []
    for who in ("a", "b"):
        try:
            await kube.get(f"/api/v1/namespaces/{ns}/configmaps/cm-{who}")
            readable.append(who)
        except ApiError as exc:
            assert exc.status == 403, exc
    assert len(readable) == 1, readable
    return readable[0]


async def test_client_follows_a_replaced_token_file(stack: Stack, identities: str, tmp_path: Path) -> None:
    ns = identities
    token_file = tmp_path / "token"
    token_file.write_text(_token(stack, ns, "a"))
    conn = from_kubeconfig(str(_token_kubeconfig(stack, token_file)))
    async with KubeClient(conn) as kube:
        assert await _who(kube, ns) == "a"
        _replace(token_file, _token(stack, ns, "b"))     # the old token stays valid: no 401 helps here
        await asyncio.sleep(conn.token.check_interval + 0.2)
        assert await _who(kube, ns) == "b"
        # a watch opened now carries the new token too
        events = kube.watch(f"/api/v1/namespaces/{ns}/configmaps", "0", timeout=1,
                            params={"fieldSelector": "metadata.name=cm-b"})
        with pytest.raises(ApiError) as err:  # b may only get, not watch: refused as b (403), not 401
            await events.__anext__()
        assert err.value.status == 403 and "system:serviceaccount:" + ns + ":b" in err.value.message


async def test_client_retries_a_401_with_the_file_read_again(stack: Stack, identities: str, tmp_path: Path) -> None:
    ns = identities
    token_file = tmp_path / "token"
    old = _token(stack, ns, "a", bound_secret="bind-a")
    token_file.write_text(old)
    conn = from_kubeconfig(str(_token_kubeconfig(stack, token_file)))
    conn.token.check_interval = 3600   # only a 401 can make it read the file again
    async with KubeClient(conn) as kube:
        assert await _who(kube, ns) == "a"
        _replace(token_file, _token(stack, ns, "b"))
        _revoke(stack, ns, "bind-a", old)
        reads = conn.token.reads
        assert await _who(kube, ns) == "b"
        assert conn.token.reads == reads + 1    # read once, after the first 401


def test_operator_follows_a_rotated_token(stack: Stack, identities: str, tmp_path: Path, subnet, net_name) -> None:
    """The operator (Kopf's watches and patches, and its own client) as a ServiceAccount whose token
    file is rotated and whose old token is then revoked: it keeps working, through one re-login."""
    ns = identities
    cluster = Cluster(stack)
    stack.kubectl("create", "clusterrolebinding", f"{ns}-op", "--clusterrole=cluster-admin",
                  f"--serviceaccount={ns}:a")
    old = _token(stack, ns, "a", bound_secret="bind-a")
    token_file = tmp_path / "token"
    token_file.write_text(old)
    kubeconfig = _token_kubeconfig(stack, token_file)
    port = free_port()
    stack.stop_operator()
    first, second = net_name("rot"), net_name("rot")
    try:
        stack._spawn("operator-rotating", [sys.executable, "-m", "ovnvnet"], env=stack.operator_env(
            {**OPERATOR_ENV, "KUBECONFIG": str(kubeconfig), "OVNVNET_HEALTH_PORT": str(port)}))
        wait_until(lambda: _status(port) == 200, 60, what="the operator to be ready")
        cluster.create_vnet(first, subnet())
        cluster.wait_ready(first)
        cluster.create_pod(ns, "p1", [{"name": first, "interface": "net0"}])
        assert cluster.iface_list(ns, "p1")[0]["ip_address"]

        _replace(token_file, _token(stack, ns, "a", bound_secret="bind-b"))
        _revoke(stack, ns, "bind-a", old)
        cluster.create_vnet(second, subnet())     # Kopf: its patches 401, it logs in again
        cluster.wait_ready(second, timeout=60)
        cluster.create_pod(ns, "p2", [{"name": second, "interface": "net0"}])
        assert cluster.iface_list(ns, "p2", timeout=60)[0]["ip_address"]
        log = (stack.logs / "operator-rotating.log").read_text()
        assert "Re-authentication has finished" in log, log[-3000:]
        assert "Ran out of valid credentials" not in log
    finally:
        for pod in ("p1", "p2"):
            cluster.delete_pod(ns, pod, wait=False)
        stack.kill("operator-rotating", signal.SIGTERM)
        stack.start_operator(OPERATOR_ENV)
        for name in (first, second):
            if cluster.vnet_exists(name):
                cluster.delete_vnet(name)
        stack.kubectl("delete", "clusterrolebinding", f"{ns}-op", check=False)


def _status(port: int) -> int:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/leader", timeout=1).status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0
