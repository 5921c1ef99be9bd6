"""The Kubernetes control plane of a local stack: etcd, kube-apiserver 1.20, kube-controller-manager.

Contract: :meth:`KubeControlPlane.start` starts whichever of the three is not running (in that
order) and returns once the API server answers ``/readyz``; state (etcd data, the service-account
key pair, the admin token) lives in the stack's directory, so a restart keeps every object. The
API server listens on a random loopback port with its own self-signed certificate; ``kubeconfig``
authenticates as a ``system:masters`` token user. The controller manager runs only the garbage
collector and the namespace controller (owner references and namespace deletion). No scheduler,
no kubelet: the tests play those.
"""
from __future__ import annotations

import json
import secrets
import shutil
import ssl
import subprocess
import urllib.request
from pathlib import Path

from . import REPO
from .proc import Workdir, wait_for

__all__ = ["CRDS", "KubeControlPlane"]

CRDS = REPO / "crds"
CONTROLLERS = ["garbagecollector", "namespace", "statefulset"]   # StatefulSets: IPClaims (issue 15)


class KubeControlPlane:
    PROCESSES = ("kube-controller-manager", "kube-apiserver", "etcd")  # stop order

    def __init__(self, wd: Workdir, kube_bin: Path):
        self.wd, self.kube_bin = wd, kube_bin

    @property
    def kubeconfig(self) -> Path:
        return self.wd.root / "kubeconfig"

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.wd.port('apiserver')}"

    @property
    def token(self) -> str:
        if "token" not in self.wd.state:
            self.wd.state["token"] = secrets.token_hex(16)
            self.wd.save()
        return self.wd.state["token"]

    def start(self, *, controller_manager: bool = True) -> None:
        if not (self.kube_bin / "kube-apiserver").exists():
            raise RuntimeError(f"{self.kube_bin}/kube-apiserver missing: run hack/bootstrap.sh first")
        self._start_etcd()
        self._start_apiserver()
        if controller_manager:
            self._start_controller_manager()

    def stop(self) -> None:
        for name in self.PROCESSES:
            self.wd.kill(name)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.kube_bin / "kubectl"), f"--kubeconfig={self.kubeconfig}",
                               f"--cache-dir={self.wd.root / 'kube-cache'}", *args],
                              input=input, capture_output=True, text=True, check=check)

    def apply_crds(self) -> None:
        self.kubectl("apply", "-f", str(CRDS))
        for crd in sorted(CRDS.glob("*.yaml")):
            self.kubectl("wait", "--for=condition=Established", "--timeout=30s", "-f", str(crd))
        # Established comes a moment before API discovery lists the resources; a kubectl that
        # looks in between caches the list without them. Wait, then start with an empty cache.
        wanted = {"virtualnetworks", "ipblocks", "ipclaims"}

        def discovered() -> bool:
            out = self.kubectl("api-resources", "--api-group=ovnvnet.io", "-o", "name", check=False).stdout
            shutil.rmtree(self.wd.root / "kube-cache", ignore_errors=True)
            return wanted <= {line.split(".")[0] for line in out.split()}

        wait_for(discovered, 30, "the CRDs in API discovery", interval=0.2)

    # ------------------------------------------------------------------ processes
    def _start_etcd(self) -> None:
        if self.wd.running("etcd"):
            return
        port, peer = self.wd.port("etcd"), self.wd.port("etcd-peer")
        self.wd.spawn("etcd", [
            "etcd", "--data-dir", str(self.wd.root / "etcd"), "--name", "ovnvnet",
            "--listen-client-urls", f"http://127.0.0.1:{port}", "--advertise-client-urls", f"http://127.0.0.1:{port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"ovnvnet=http://127.0.0.1:{peer}",
            "--quota-backend-bytes", str(4 * 1024**3),
        ])
        health = f"http://127.0.0.1:{port}/health"
        self.wd.wait_started("etcd", lambda: urllib.request.urlopen(health, timeout=1).status == 200, 60, "etcd")

    def _pki(self) -> Path:
        pki = self.wd.root / "pki"
        pki.mkdir(exist_ok=True)
        if not (pki / "sa.key").exists():
            subprocess.run(["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"], check=True, capture_output=True)
            subprocess.run(["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")],
                           check=True, capture_output=True)
        extra = "".join(f"{line}\n" for line in self.wd.state.get("extra_tokens", []))  # realnode.py
        (self.wd.root / "tokens.csv").write_text(f"{self.token},admin,admin,system:masters\n{extra}")
        return pki

    def _start_apiserver(self) -> None:
        if self.wd.running("kube-apiserver"):
            return
        pki = self._pki()
        self.wd.spawn("kube-apiserver", [
            str(self.kube_bin / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.wd.port('etcd')}",
            "--insecure-port=0", f"--secure-port={self.wd.port('apiserver')}", "--bind-address=127.0.0.1",
            f"--cert-dir={pki}", f"--token-auth-file={self.wd.root / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            # realnode.py's install mode turns ServiceAccount admission back on (pods get tokens)
            *([] if self.wd.state.get("service_accounts") else ["--disable-admission-plugins=ServiceAccount"]),
            "--enable-priority-and-fairness=false",
            "--max-requests-inflight=2000", "--max-mutating-requests-inflight=1000",
            "--event-ttl=1h",
            *self.wd.state.get("apiserver_args", []),  # realnode.py: the kubelet's address and client cert
        ])
        self._write_kubeconfig()
        ca = pki / "apiserver.crt"
        ctx = ssl.create_default_context(cafile=str(ca)) if ca.exists() else None

        def ready() -> bool:
            nonlocal ctx
            if ctx is None:
                if not (pki / "apiserver.crt").exists():
                    return False
                ctx = ssl.create_default_context(cafile=str(pki / "apiserver.crt"))
            req = urllib.request.Request(self.api_url + "/readyz", headers={"Authorization": f"Bearer {self.token}"})
            return urllib.request.urlopen(req, timeout=2, context=ctx).status == 200

        self.wd.wait_started("kube-apiserver", ready, 120, "kube-apiserver /readyz", interval=0.3)

    def _write_kubeconfig(self) -> None:
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": "ovnvnet",
            "clusters": [{"name": "ovnvnet", "cluster": {
                "server": self.api_url, "certificate-authority": str(self.wd.root / "pki" / "apiserver.crt")}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "ovnvnet", "context": {"cluster": "ovnvnet", "user": "admin"}}],
        }
        self.kubeconfig.write_text(json.dumps(cfg, indent=1))

    def _start_controller_manager(self) -> None:
        if self.wd.running("kube-controller-manager"):
            return
        self.wd.spawn("kube-controller-manager", [
            str(self.kube_bin / "kube-controller-manager"), f"--kubeconfig={self.kubeconfig}",
            "--controllers=" + ",".join(self.wd.state.get("controllers", CONTROLLERS)),
            "--leader-elect=false", "--port=0", "--secure-port=0",
            *self.wd.state.get("controller_manager_args", []),  # realnode.py's install mode
        ])
