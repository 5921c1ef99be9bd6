"""kube/connection.py: kubeconfig and ServiceAccount credentials, and a token file re-read when it
is replaced (files only; the same against a real API server: tests/integration/test_token_rotation.py)."""
from __future__ import annotations

import base64
import json
import os
import time

import pytest

from ovnvnet.config import ConfigError, KubeAccess
from ovnvnet.kube.connection import BearerToken, connect, from_kubeconfig


def _kubeconfig(path, user, cluster=None, namespace=None):
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
           "clusters": [{"name": "k", "cluster": cluster or {"server": "https://127.0.0.1:6443",
                                                             "certificate-authority": "pki/ca.crt"}}],
           "users": [{"name": "u", "user": user}],
           "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u",
                                                  **({"namespace": namespace} if namespace else {})}}]}
    path.write_text(json.dumps(cfg))
    return str(path)


def test_kubeconfig_token_and_relative_files(tmp_path):
    conn = from_kubeconfig(_kubeconfig(tmp_path / "config", {"token": "abc"}, namespace="ns"))
    assert conn.server == "https://127.0.0.1:6443"
    assert conn.ca_file == str(tmp_path / "pki" / "ca.crt")
    assert conn.headers() == {"Authorization": "Bearer abc"}
    assert conn.namespace == "ns"


def test_kubeconfig_client_certificate_data(tmp_path):
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    b64 = base64.b64encode(pem.encode()).decode()
    conn = from_kubeconfig(_kubeconfig(
        tmp_path / "config", {"client-certificate-data": b64, "client-key-data": b64},
        cluster={"server": "https://h:1", "certificate-authority-data": b64, "insecure-skip-tls-verify": True}))
    assert (conn.cert_data, conn.key_data, conn.ca_data, conn.insecure) == (pem, pem, pem, True)
    assert conn.headers() == {}


def test_kubeconfig_refusals(tmp_path):
    with pytest.raises(ConfigError, match="uses exec"):
        from_kubeconfig(_kubeconfig(tmp_path / "a", {"exec": {"command": "aws"}}))
    bad = tmp_path / "b"
    bad.write_text(json.dumps({"current-context": "nope", "contexts": []}))
    with pytest.raises(ConfigError, match="current-context 'nope' is not defined"):
        from_kubeconfig(str(bad))
    with pytest.raises(ConfigError, match="cannot read kubeconfig"):
        from_kubeconfig(str(tmp_path / "missing"))


def test_in_cluster_and_precedence(tmp_path):
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token\n")
    (sa / "namespace").write_text("ovnvnet-system")
    (sa / "ca.crt").write_text("x")
    access = KubeAccess(service_host="fd00::1", service_port=6443, service_account_dir=str(sa))
    conn = connect(access)
    assert conn.server == "https://[fd00::1]:6443" and conn.namespace == "ovnvnet-system"
    assert conn.headers() == {"Authorization": "Bearer sa-token"} and conn.ca_file == str(sa / "ca.crt")
    # a kubeconfig given explicitly wins (the agent's --kubeconfig)
    kc = _kubeconfig(tmp_path / "config", {"token": "kc"})
    assert connect(KubeAccess(kubeconfig=kc, service_host="fd00::1", service_account_dir=str(sa))).headers() == {
        "Authorization": "Bearer kc"}
    with pytest.raises(ConfigError, match="no API server configured"):
        connect(KubeAccess(kubeconfig=str(tmp_path / "none"), service_account_dir=str(sa)))


def test_token_file_rotation(tmp_path):
    path = tmp_path / "token"
    path.write_text("one")
    token = BearerToken(path=str(path), check_interval=0.0)
    assert token.current() == "one"
    assert token.current() == "one" and token.reads == 1       # unchanged: not read again
    # replaced the way the kubelet does it: a new file renamed over the old one
    (tmp_path / "new").write_text("two\n")
    os.replace(tmp_path / "new", path)
    assert token.current() == "two" and token.reads == 2
    # an empty or missing file mid-rotation keeps the token we have
    path.write_text("")
    assert token.current() == "two"
    path.unlink()
    assert token.current() == "two"
    path.write_text("three")
    assert token.refresh(force=True) and token.current() == "three"


def test_token_file_checked_at_most_every_interval(tmp_path):
    path = tmp_path / "token"
    path.write_text("one")
    token = BearerToken(path=str(path), check_interval=0.3)
    path.write_text("two")
    assert token.current() == "one"          # within the interval
    time.sleep(0.35)
    assert token.current() == "two"


def test_jwt_expiry():
    def jwt(claims):
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        return f"e30.{body}.sig"
    assert BearerToken(value=jwt({"exp": 2000000000})).expiry().timestamp() == 2000000000
    assert BearerToken(value=jwt({"sub": "x"})).expiry() is None
    assert BearerToken(value="static").expiry() is None
