"""Credentials for the API server, loaded once and shared by every client of the process: the
operator's KubeClient, the leader elector, Kopf (through its login handler, main.py) and the node
agent's pod cache.

`connect(access)` reads the kubeconfig's current context when one is named (KUBECONFIG, or the
agent's --kubeconfig), else the ServiceAccount when running in a pod (KUBERNETES_SERVICE_HOST set
and a token mounted), else ~/.kube/config. Supported kubeconfig users: `token`,
`tokenFile`, client certificates (`client-certificate[-data]`, `client-key[-data]`); exec and
auth-provider plugins are refused with a message saying so.

Bearer tokens read from a file (the ServiceAccount's, or a kubeconfig `tokenFile`) rotate: a bound
ServiceAccount token is replaced in its file by the kubelet before it expires. `BearerToken`
re-reads the file when it changes (checked at most once per `check_interval`, and re-read every
`max_age` seconds regardless); KubeClient also re-reads it at once after a 401 and retries once.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import json
import os
import ssl
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ovnvnet.config import ConfigError, KubeAccess


class BearerToken:
    """A bearer token, static or read from a file that may be rewritten at any time."""

    def __init__(self, *, value: str | None = None, path: str | None = None,
                 check_interval: float = 1.0, max_age: float = 60.0) -> None:
        self.path = path
        self.check_interval = check_interval
        self.max_age = max_age
        self._value = value
        self._stat: tuple[int, int, int] | None = None
        self._checked = self._read_at = float("-inf")
        self._lock = threading.Lock()
        self.reads = 0
        if path is not None:
            self.refresh(force=True)
            if not self._value:
                raise ConfigError(f"token file {path} is empty")

    def current(self) -> str | None:
        """The token to send now (re-read first if the file changed)."""
        if self.path is not None and time.monotonic() - self._checked >= self.check_interval:
            self.refresh()
        return self._value

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read the file if it changed (or is old, or `force`); True if the token changed."""
        if self.path is None:
            return False
        with self._lock:
            now = time.monotonic()
            self._checked = now
            try:
                st = os.stat(self.path)
            except OSError as exc:
                if self._value is None:
                    raise ConfigError(f"cannot read token file {self.path}: {exc.strerror}") from None
                return False   # being replaced: keep the one we have
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            if not force and key == self._stat and now - self._read_at < self.max_age:
                return False
            try:
                text = Path(self.path).read_text().strip()
            except OSError as exc:
                if self._value is None:
                    raise ConfigError(f"cannot read token file {self.path}: {exc.strerror}") from None
                return False
            self._stat, self._read_at = key, now
            self.reads += 1
            if not text or text == self._value:
                return False
            self._value = text
            return True

    def expiry(self) -> datetime.datetime | None:
        """The `exp` claim of a JWT token (unverified: only to refresh before it), else None."""
        parts = (self._value or "").split(".")
        if len(parts) != 3:
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
            return datetime.datetime.fromtimestamp(int(claims["exp"]), datetime.UTC)
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None


@dataclass
class Connection:
    server: str
    ca_file: str | None = None
    ca_data: str | None = None
    """PEM."""
    insecure: bool = False
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: str | None = None
    key_data: str | None = None
    token: BearerToken | None = None
    namespace: str | None = None
    """The context's (or ServiceAccount's) namespace."""
    _ssl: ssl.SSLContext | None = field(default=None, repr=False)

    def headers(self) -> dict[str, str]:
        value = self.token.current() if self.token is not None else None
        return {"Authorization": f"Bearer {value}"} if value else {}

    def refresh_token(self) -> bool:
        """After a 401: re-read a token file now; True if the token changed (worth a retry)."""
        return self.token is not None and self.token.refresh(force=True)

    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
            if self.insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            with contextlib.ExitStack() as stack:
                cert, key = self.cert_file, self.key_file
                if self.cert_data:
                    cert = _temp_pem(stack, self.cert_data)
                if self.key_data:
                    key = _temp_pem(stack, self.key_data)
                if cert:
                    ctx.load_cert_chain(cert, key)
            self._ssl = ctx
        return self._ssl

    def serves(self, group_version: str, plural: str, *, timeout: float = 5) -> bool | str:
        """Blocking, for the moments no event loop runs (before a re-execution): True if API
        discovery lists `plural` in `group_version` (e.g. "ovnvnet.io/v1"), else a one-line reason."""
        url = f"{self.server.rstrip('/')}/apis/{group_version}"
        ctx = self.ssl_context() if url.startswith("https:") else None
        try:
            request = urllib.request.Request(url, headers=self.headers())
            with urllib.request.urlopen(request, timeout=timeout, context=ctx) as answer:
                listed = any(r.get("name") == plural for r in json.load(answer).get("resources", []))
        except (OSError, ValueError) as exc:   # URLError/HTTPError are OSErrors
            return str(exc) or type(exc).__name__
        return True if listed else f"{plural} not listed in {group_version}"


def _temp_pem(stack: contextlib.ExitStack, pem: str) -> str:
    """Python's ssl loads client certificates from files only: a private temporary one."""
    f = stack.enter_context(tempfile.NamedTemporaryFile("w", suffix=".pem"))
    f.write(pem)
    f.flush()
    return f.name


def connect(access: KubeAccess) -> Connection:
    """Credentials for `access`: the ServiceAccount in a pod, else the kubeconfig."""
    sa = Path(access.service_account_dir)
    if access.service_host and (sa / "token").exists() and not access.kubeconfig:
        return in_cluster(access)
    path = access.kubeconfig or os.path.expanduser("~/.kube/config")
    if not os.path.exists(path.split(os.pathsep)[0]):
        raise ConfigError("no API server configured: not in a pod (KUBERNETES_SERVICE_HOST and a "
                          f"ServiceAccount token) and no kubeconfig (KUBECONFIG or {path})")
    return from_kubeconfig(path)


def in_cluster(access: KubeAccess) -> Connection:
    sa = Path(access.service_account_dir)
    host = access.service_host or ""
    host = f"[{host}]" if ":" in host else host
    namespace = (sa / "namespace").read_text().strip() if (sa / "namespace").exists() else None
    return Connection(server=f"https://{host}:{access.service_port}",
                      ca_file=str(sa / "ca.crt") if (sa / "ca.crt").exists() else None,
                      token=BearerToken(path=str(sa / "token")), namespace=namespace)


def _b64(data: str, what: str, path: str) -> str:
    try:
        return base64.b64decode(data).decode()
    except (ValueError, binascii.Error):
        raise ConfigError(f"{path}: {what} is not base64") from None


def from_kubeconfig(paths: str) -> Connection:
    """The current context of a kubeconfig (KUBECONFIG may list several files: the first value of
    each name wins, as kubectl does); relative file names are relative to the file naming them."""
    current: str | None = None
    contexts: dict[str, dict[str, Any]] = {}
    clusters: dict[str, tuple[dict[str, Any], Path]] = {}
    users: dict[str, tuple[dict[str, Any], Path]] = {}
    for path in [p for p in paths.split(os.pathsep) if p]:
        try:
            doc = yaml.safe_load(Path(path).expanduser().read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read kubeconfig {path}: {exc}") from None
        base = Path(path).expanduser().resolve().parent
        current = current or doc.get("current-context")
        for item in doc.get("contexts") or []:
            contexts.setdefault(item["name"], item.get("context") or {})
        for item in doc.get("clusters") or []:
            clusters.setdefault(item["name"], (item.get("cluster") or {}, base))
        for item in doc.get("users") or []:
            users.setdefault(item["name"], (item.get("user") or {}, base))
    if not current or current not in contexts:
        raise ConfigError(f"kubeconfig {paths}: current-context {current!r} is not defined")
    context = contexts[current]
    if context.get("cluster") not in clusters:
        raise ConfigError(f"kubeconfig {paths}: cluster {context.get('cluster')!r} of context {current!r} "
                          "is not defined")
    cluster, cbase = clusters[context["cluster"]]
    user, ubase = users.get(context.get("user") or "", ({}, cbase))
    for plugin in ("exec", "auth-provider"):
        if user.get(plugin):
            raise ConfigError(f"kubeconfig {paths}: user {context.get('user')!r} uses {plugin}, which ovnvnet "
                              "does not support: use a token, tokenFile or client certificate")

    def rel(value: str | None, base: Path) -> str | None:
        return str(base / value) if value else None

    token = None
    if user.get("token"):
        token = BearerToken(value=user["token"])
    elif user.get("tokenFile"):
        token = BearerToken(path=rel(user["tokenFile"], ubase))
    return Connection(
        server=cluster.get("server") or "",
        ca_file=rel(cluster.get("certificate-authority"), cbase),
        ca_data=_b64(cluster["certificate-authority-data"], "certificate-authority-data", paths)
        if cluster.get("certificate-authority-data") else None,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        cert_file=rel(user.get("client-certificate"), ubase),
        key_file=rel(user.get("client-key"), ubase),
        cert_data=_b64(user["client-certificate-data"], "client-certificate-data", paths)
        if user.get("client-certificate-data") else None,
        key_data=_b64(user["client-key-data"], "client-key-data", paths) if user.get("client-key-data") else None,
        token=token,
        namespace=context.get("namespace"),
    )
