"""A real node in the local stack: kubelet 1.20 + containerd + runc running real containers.

    python -m harness.realnode up --dir .stack     # stack + data plane + node-1
    python -m harness.realnode down --dir .stack   # everything, then the stack
    python -m harness.realnode up --install ...    # ovnvnet as pods, nothing of it local
    python -m harness.realnode up --nodes 2 ...    # node-1 and node-2, each its own kubelet + containerd

Several nodes (issue 18, :func:`up_nodes`, ``make node-up NODES=N``; not with ``--install``):
node-i is ``RealNode(stack, index=i)`` in node-i's namespace of the multi-node stack
(``Stack.up(nodes=N)``: own OVS, ovn-controller with its own chassis and encap IP on the
private underlay, own agent process). Everything per node is its own: the directory
(``<stack>/rn`` for node-1, ``<stack>/rn-<i>``), containerd's root, state, sockets and config,
the CNI dirs and conflist (naming that node's agent socket), the default network
(10.85.<i-1>.0/24), the kubelet (its own root dir, port, token ``system:node:node-<i>``), the
relay (process ``nsrelay-node-<i>``) and the node's InternalIP ``127.0.0.<i>`` (the relay to its
kubelet listens there, so each node's pods report their own hostIP). Global and shared, safely:
``/var/lib/cni`` (libcni's result cache, keyed by container id) and runc's state root (by
container id). :meth:`RealNode.lose` kills one node as a machine dies.

Install mode (``RealNode(stack, install=True)``, ``make node-install``): ``kubectl apply -k
manifests/overlays/local-node`` runs the operator, agent and webhook as pods; with
``installer="helm"`` (``make node-install-helm``) ``helm install ovnvnet charts/ovnvnet -n
ovnvnet-system --create-namespace -f tests/node/local-node-values.yaml`` does, the same settings
for this node written as chart values (plus the RuntimeClass, which is this node's, not the
chart's). Only then the stack gets ServiceAccount admission and tokens, the workload controllers
(deployment, replicaset, daemonset, endpoint, serviceaccount(-token), nodelifecycle),
kube-scheduler, ``--enable-aggregator-routing`` and an egress selector that sends the API server's ``cluster``
traffic through :mod:`harness.realnode_egress` in the node's namespace; containerd gets a second
runtime handler ``default-net`` (default network only; RuntimeClass ``ovnvnet-default-net``, for
the operator's pods) and leaves pod netns files in ``/var/run/netns``, where the agent's volume
sees them; ``/run/ovnvnet-local-node`` links the overlay's node paths to ``<stack>/rn/host``.

The node is the stack's data-plane network namespace (``Stack.node_netns``, where OVS and
ovn-controller already run): containerd, the containerd shims, the pods' default network and the
kubelet all live there, so the kubelet reaches pod IPs (HTTP probes) and the CNI plugins change
nothing outside it. Processes are joined to that namespace with ``nsenter --net`` only (same
mount namespace as the host, so the kubelet's volume mounts, containerd's rootfs mounts and the
pods' netns files are visible to all of them and to the node agent).

Inside the node namespace:
- containerd with a private ``config.toml`` (root, state, gRPC socket under ``<stack>/rn``;
  ``restrict_oom_score_adj`` because these machines lack CAP_SYS_RESOURCE; sandbox image
  ``localhost/pause:1``; pod netns files under its state dir), images imported with ``ctr``;
- CNI: ``bin_dir`` with Debian's reference plugins and the shim, ``conf_dir`` with two
  configurations and ``max_conf_num = 2``: ``10-default.conflist`` (Debian's ``bridge`` +
  ``host-local`` on 10.85.0.0/24, standing in for Flannel; its only route is the Service range
  10.96.0.0/16, so an OVN interface may carry the default route) gives every pod ``eth0``, and
  ``20-ovnvnet.conflist`` (``ovn-k8s-cni-overlay`` + ``tuning``) the OVN interfaces;
- the kubelet (a random ``--port``; the stack writes InternalIP 127.0.0.1 into the node status).

Joined to the stack on the host's loopback by :mod:`harness.nsrelay`:
- 10.96.0.1:443 in the node (the ``kubernetes`` Service address, where kube-proxy would answer)
  -> the API server; the kubelet uses it, and so can pods (it is in the API server's certificate);
- 0.0.0.0:6641 in the node -> the OVN NB (for pods that need the NB);
- 127.0.0.1:<kubelet port> on the host -> the kubelet: the node's InternalIP is 127.0.0.1, so the
  API server (``--kubelet-preferred-address-types=InternalIP``, with a client certificate the
  kubelet trusts) reaches it for ``kubectl exec``, ``logs`` and ``port-forward``.

The kubelet authenticates as ``system:node:node-1`` (group ``system:nodes``, bound to the
``system:node`` ClusterRole) with a token from the API server's token file.

:meth:`RealNode.stop` removes everything the node started: the pods first (the kubelet stops
them, so the runtime calls CNI DEL), then the kubelet, leftover tasks through ``ctr``,
containerd, the containerd shims of this node (they outlive containerd), the relay, and every
mount under the node's directory (rootfs, volumes, netns files).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import REPO, images
from .dataplane import start_dataplane
from .node import Node
from .stack import KUBE_BIN, SYSTEM_CNI_DIR, Stack, pid_alive, wait_for
from .underlay import NODE_PORT

DEFAULT_SUBNET = "10.85.0.0/24"
API_VIP = "10.96.0.1"
SERVICE_RANGE = "10.96.0.0/16"
NB_NODE_PORT = 6641
NODE_TOKEN_USER = "system:node:{node}"
# install mode: where manifests/overlays/local-node puts things on the node (a link to <stack>/rn/host)
LOCAL_NODE_ROOT = Path("/run/ovnvnet-local-node")
OVERLAY = REPO / "manifests" / "overlays" / "local-node"
HELM_VALUES = REPO / "tests" / "node" / "local-node-values.yaml"  # the overlay's settings, as chart values
RELEASE, SYSTEM_NS = "ovnvnet", "ovnvnet-system"
NAD_CRD = REPO / "tests" / "install" / "nad-crd.yaml"  # Multus's CRD, a prerequisite of the install
DEFAULT_NET_HANDLER = "default-net"  # runtime handler whose pods get the default network only
INSTALL_CONTROLLERS = ["garbagecollector", "namespace", "serviceaccount", "serviceaccount-token",
                       "deployment", "replicaset", "daemonset", "endpoint", "nodelifecycle"]


def log(msg: str) -> None:
    print(f"[realnode] {msg}", file=sys.stderr, flush=True)


class RealNode:
    """The real node of `stack` (its data plane's node). Paths live under ``<stack>/rn``."""

    def __init__(self, stack: Stack, *, kube_bin: Path = KUBE_BIN, install: bool | None = None,
                 installer: str | None = None, index: int = 1):
        """`install`: ovnvnet runs as pods (`kubectl apply -k manifests/overlays/local-node`, or
        with `installer="helm"` the chart), nothing of it as a local process; None: as this stack
        was started (default False, "kustomize"). `index`: which node of the stack (1: node-1,
        the stack's first; 2..N: node-i of a multi-node stack, see :func:`up_nodes`)."""
        self.stack = stack
        self.kube_bin = kube_bin
        self.index = index
        self.part = stack.worker if index == 1 else Node(stack, stack.central, stack.kube.kubeconfig,
                                                         agent_env=stack.seal_env, index=index)
        self.dir = stack.root / ("rn" if index == 1 else f"rn-{index}")
        if install is None:
            install = bool(stack.state.get("realnode", {}).get("install"))
        self.install = install
        self.installer = installer or stack.state.get("realnode", {}).get("installer") or "kustomize"
        if self.installer not in ("kustomize", "helm"):
            raise ValueError(f"installer={self.installer!r}: kustomize or helm")
        if index != 1 and self.install:
            raise ValueError(f"node-{index}: install mode is one node only (the overlay's host paths under "
                             f"{LOCAL_NODE_ROOT} are one per machine, and every node here shares the host's "
                             "mount namespace)")

    def proc(self, name: str) -> str:
        """The stack's process name of this node's `name` (kubelet, containerd, nsrelay)."""
        return name if self.index == 1 else f"{name}-node-{self.index}"

    @property
    def internal_ip(self) -> str:
        """The node's InternalIP: 127.0.0.<index> on the host's loopback, where the relay to its
        kubelet listens (node-1: 127.0.0.1), so every node's pods report a hostIP of their own."""
        return f"127.0.0.{self.index}"

    @property
    def default_subnet(self) -> str:
        """The default network (eth0) of this node's pods: 10.85.<index - 1>.0/24, one per node
        (a podIP is unique in the cluster)."""
        return f"10.85.{self.index - 1}.0/24"

    # ------------------------------------------------------------------ paths and addresses
    @property
    def name(self) -> str:
        return self.part.name

    @property
    def netns(self) -> str:
        return self.part.netns

    @property
    def containerd_sock(self) -> Path:
        return self.dir / "containerd.sock"

    @property
    def cni_bin(self) -> Path:
        return self.dir / "cni" / "bin"

    @property
    def cni_conf(self) -> Path:
        return self.dir / "cni" / "net.d"

    @property
    def cni_conf_default(self) -> Path:
        """The conf dir of runtime handler `default-net` (RuntimeClass ovnvnet-default-net)."""
        return self.dir / "cni" / "net.d-default"

    @property
    def host_root(self) -> Path:
        return self.dir / "host"

    @property
    def egress_sock(self) -> Path:
        return self.dir / "egress.sock"

    @property
    def kubelet_dir(self) -> Path:
        return self.dir / "kubelet"

    @property
    def kubelet_port(self) -> int:
        return self.stack._port(self.proc("kubelet"))

    @property
    def pki(self) -> Path:
        return self.stack.root / "pki"

    def _nsenter(self) -> list[str]:
        return ["nsenter", f"--net=/var/run/netns/{self.netns}", "--"]

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        out = subprocess.run(["ctr", "--address", str(self.containerd_sock), "-n", "k8s.io", *args],
                             capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)}: {out.stderr.strip()}")
        return out

    # ------------------------------------------------------------------ credentials
    def prepare_apiserver(self) -> None:
        """Before the API server starts: its kubelet flags, a client certificate the kubelet
        trusts, and the node's token (Stack reads ``apiserver_args`` and ``extra_tokens``)."""
        self.pki.mkdir(parents=True, exist_ok=True)
        ca, cli = self.pki / "kubelet-ca", self.pki / "kubelet-client"
        if not (cli.with_suffix(".crt")).exists():
            _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                     "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-subj", "/CN=ovnvnet-kubelet-ca")
            _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{cli}.key", "-out", f"{cli}.csr",
                     "-subj", "/O=system:masters/CN=kube-apiserver-kubelet-client")
            _openssl("x509", "-req", "-in", f"{cli}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                     "-CAcreateserial", "-days", "30", "-out", f"{cli}.crt")
        st = self.stack.state
        st.setdefault("node_tokens", {}).setdefault(self.name, secrets.token_hex(16))
        if self.index == 1:
            st["node_token"] = st["node_tokens"][self.name]
        st["extra_tokens"] = [f"{tok},{user},{user},system:nodes" for node, tok in sorted(st["node_tokens"].items())
                              for user in [NODE_TOKEN_USER.format(node=node)]]
        st["apiserver_args"] = [
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={cli}.crt", f"--kubelet-client-key={cli}.key",
        ]
        if self.index == 1:
            nodes = st.get("realnode", {}).get("nodes", 1)
            st["realnode"] = {"node": self.name, "install": self.install, "installer": self.installer,
                              "nodes": nodes, **({"local_root": st["realnode"]["local_root"]}
                                                 if st.get("realnode", {}).get("local_root") else {})}
            if self.install:
                self._prepare_install(st)
        else:
            st.setdefault("realnode", {"node": "node-1", "install": False, "installer": "kustomize", "nodes": 1})
            st["realnode"]["nodes"] = max(self.index, st["realnode"].get("nodes", 1))
        self.stack._save()

    def _prepare_install(self, st: dict) -> None:
        """Install mode only: pods get ServiceAccount tokens (admission + token controller), the
        controllers Deployments and DaemonSets need, Services resolved to their endpoints
        (``--enable-aggregator-routing``), and the API server's ``cluster`` traffic (webhooks,
        kubelet) sent through the node's egress proxy (:mod:`harness.realnode_egress`)."""
        egress = self.dir / "egress-selector.yaml"
        egress.write_text(json.dumps({
            "apiVersion": "apiserver.k8s.io/v1beta1", "kind": "EgressSelectorConfiguration",
            "egressSelections": [{"name": "cluster", "connection": {
                "proxyProtocol": "HTTPConnect", "transport": {"uds": {"udsName": str(self.egress_sock)}}}}],
        }, indent=1))
        st["apiserver_args"] += ["--enable-aggregator-routing=true", f"--egress-selector-config-file={egress}"]
        st["service_accounts"] = True
        st["controllers"] = INSTALL_CONTROLLERS
        st["controller_manager_args"] = [f"--service-account-private-key-file={self.pki / 'sa.key'}",
                                         f"--root-ca-file={self.pki / 'apiserver.crt'}"]

    def _kubelet_kubeconfig(self) -> Path:
        path = self.dir / "kubelet.kubeconfig"
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": "node",
            "clusters": [{"name": "ovnvnet", "cluster": {
                "server": f"https://{API_VIP}:443", "certificate-authority": str(self.pki / "apiserver.crt")}}],
            "users": [{"name": "node", "user": {"token": self.stack.state["node_tokens"][self.name]}}],
            "contexts": [{"name": "node", "context": {"cluster": "ovnvnet", "user": "node"}}],
        }
        path.write_text(json.dumps(cfg, indent=1))
        return path

    def _node_rbac(self) -> None:
        user = NODE_TOKEN_USER.format(node=self.name)
        self.stack.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": f"ovnvnet-{self.name}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }))

    # ------------------------------------------------------------------ pieces
    def _cni(self) -> None:
        """bin_dir: Debian's reference plugins + the shim; conf_dir: default network, then ours."""
        self.cni_bin.mkdir(parents=True, exist_ok=True)
        self.cni_conf.mkdir(parents=True, exist_ok=True)
        for plugin in SYSTEM_CNI_DIR.iterdir():
            link = self.cni_bin / plugin.name
            if not link.exists():
                link.symlink_to(plugin)
        if not self.install:  # install mode: the agent DaemonSet's init step installs both
            shim = self.stack.build_dir / "ovn-k8s-cni-overlay"
            link = self.cni_bin / shim.name
            if not link.exists():
                link.symlink_to(shim)
            self.part.write_conflist(path=self.cni_conf / "20-ovnvnet.conflist")
        default = json.dumps({
            "cniVersion": "1.0.0", "name": "default",
            "plugins": [{
                "type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": self.default_subnet}]],
                         # no default route: a pod's OVN interface may carry it (defaultGateway);
                         # the Service range (the API server's 10.96.0.1) goes via the node
                         "routes": [{"dst": SERVICE_RANGE}], "dataDir": str(self.dir / "cni" / "ipam")},
            }],
        }, indent=1) + "\n"
        (self.cni_conf / "10-default.conflist").write_text(default)
        if self.install:
            self.cni_conf_default.mkdir(parents=True, exist_ok=True)
            (self.cni_conf_default / "10-default.conflist").write_text(default)
            self._host_links()

    @property
    def local_root(self) -> Path:
        """Where this node's paths appear for the installed pods: the overlay's
        ``/run/ovnvnet-local-node`` unless another live node held it when this one was prepared
        (then ``/run/ovnvnet-local-node-<hash of the stack dir>``, see :meth:`apply_install`)."""
        return Path(self.stack.state.get("realnode", {}).get("local_root") or LOCAL_NODE_ROOT)

    def _host_links(self) -> None:
        """local_root -> <stack>/rn/host: the node paths the overlay names (CNI bin and conf dirs,
        the OVS run dir with db.sock, the agent's socket dir)."""
        self.host_root.mkdir(parents=True, exist_ok=True)
        for name, target in (("cni-bin", self.cni_bin), ("cni-conf", self.cni_conf),
                             ("openvswitch", self.stack.node_dir)):
            link = self.host_root / name
            if not link.is_symlink():
                link.symlink_to(target)
        (self.host_root / "agent").mkdir(exist_ok=True)
        root = self.local_root
        if root.is_symlink():
            other = Path(os.readlink(root))
            if other != self.host_root and other.exists():
                if root != LOCAL_NODE_ROOT:
                    raise RuntimeError(f"{root} belongs to another real node ({other}): stop it first")
                # another install-mode node runs on this machine: take a path of our own
                digest = hashlib.sha256(str(self.stack.root).encode()).hexdigest()[:8]
                root = Path(f"{LOCAL_NODE_ROOT}-{digest}")
                log(f"{LOCAL_NODE_ROOT} belongs to another real node ({other}): this one uses {root}")
                self.stack.state["realnode"]["local_root"] = str(root)
                self.stack._save()
                if root.is_symlink() or root.exists():
                    root.unlink()
            else:
                root.unlink()
        elif root.exists():
            raise RuntimeError(f"{root} exists and is not a link: remove it")
        root.symlink_to(self.host_root)

    def _containerd_config(self) -> Path:
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        toml = f"""version = 2
root = "{self.dir / 'containerd' / 'root'}"
state = "{self.dir / 'containerd' / 'state'}"
oom_score = 0

[grpc]
  address = "{self.containerd_sock}"

[ttrpc]
  address = "{self.dir / 'containerd' / 'ttrpc.sock'}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{self.dir / 'containerd' / 'opt'}"

[{cri}]
  # these machines lack CAP_SYS_RESOURCE: a negative oom_score_adj makes runc fail
  restrict_oom_score_adj = true
  sandbox_image = "{images.PAUSE_IMAGE}"
  netns_mounts_under_state_dir = {str(not self.install).lower()}
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

{self._default_net_runtime(cri)}
[{cri}.cni]
  bin_dir = "{self.cni_bin}"
  conf_dir = "{self.cni_conf}"
  max_conf_num = 2
"""
        path = self.dir / "containerd.toml"
        path.write_text(toml)
        return path

    def _default_net_runtime(self, cri: str) -> str:
        """Install mode: a second handler whose pods get only the default network (eth0), for the
        operator's pods (RuntimeClass ovnvnet-default-net): they must not wait for themselves."""
        if not self.install:
            return ""
        return f"""[{cri}.containerd.runtimes.{DEFAULT_NET_HANDLER}]
  runtime_type = "io.containerd.runc.v2"
  cni_conf_dir = "{self.cni_conf_default}"
  cni_max_conf_num = 1
"""

    def _start_egress(self) -> None:
        if not self.install or self.stack.running("egress"):
            return
        self.egress_sock.unlink(missing_ok=True)
        self.stack._spawn("egress", [
            *self._nsenter(), sys.executable, "-m", "harness.realnode_egress", "--socket", str(self.egress_sock),
            "--allow", DEFAULT_SUBNET, "--allow", "127.0.0.1/32"], env={"PYTHONPATH": str(REPO)})
        self.stack._wait_started("egress", self.egress_sock.is_socket, 30, "the node's egress proxy")

    def _start_scheduler(self) -> None:
        if not self.install or self.stack.running("kube-scheduler"):
            return
        self.stack._spawn("kube-scheduler", [
            str(self.kube_bin / "kube-scheduler"), f"--kubeconfig={self.stack.kubeconfig}",
            "--leader-elect=false", "--port=0", "--secure-port=0"])

    def _start_relay(self) -> None:
        if self.stack.running(self.proc("nsrelay")):
            return
        subprocess.run(["ip", "-n", self.netns, "addr", "replace", f"{API_VIP}/32", "dev", "lo"],
                       check=True, capture_output=True)
        api = self.stack._port("apiserver")
        self.stack._spawn(self.proc("nsrelay"), [
            sys.executable, "-m", "harness.nsrelay",
            "--forward", f"{self.netns},{API_VIP}:443=,127.0.0.1:{api}",
            "--forward", f"{self.netns},0.0.0.0:{NB_NODE_PORT}=,127.0.0.1:{self.stack._port('nb')}",
            "--forward", f",{self.internal_ip}:{self.kubelet_port}={self.netns},127.0.0.1:{self.kubelet_port}",
        ], env={"PYTHONPATH": str(REPO)})
        self.stack._wait_started(self.proc("nsrelay"), lambda: _tcp_open(self.kubelet_port, self.internal_ip), 30,
                                 f"the netns relay of {self.name}")

    def _start_containerd(self) -> None:
        if self.stack.running(self.proc("containerd")):
            return
        cfg = self._containerd_config()
        self.containerd_sock.unlink(missing_ok=True)
        self.stack._spawn(self.proc("containerd"), [*self._nsenter(), "containerd", "--config", str(cfg)])
        self.stack._wait_started(self.proc("containerd"), lambda: self.ctr("version", check=False).returncode == 0,
                                 60, "containerd", interval=0.3)

    def import_images(self, names: dict[str, Path] | None = None) -> None:
        """Import the node's images (default: busybox and pause; pass images.build_all() for all)."""
        names = names or {images.PAUSE_IMAGE: images.pause_image(), images.BUSYBOX_IMAGE: images.busybox_image()}
        have = set(self.ctr("images", "ls", "-q").stdout.split())
        for name, archive in names.items():
            if name in have:
                continue
            t0 = time.monotonic()
            for attempt in range(3):
                # once a fresh containerd answered the import of an archive that imports fine
                # everywhere else with "content digest ...: not found" (not reproduced); retry
                out = self.ctr("images", "import", "--index-name", name, str(archive), timeout=600, check=False)
                if out.returncode == 0:
                    break
                log(f"ctr images import {archive.name} (attempt {attempt + 1}): {out.stderr.strip()}")
                time.sleep(1)
            if name not in set(self.ctr("images", "ls", "-q").stdout.split()):
                raise RuntimeError(f"ctr images import {archive} did not create image {name}: {out.stderr.strip()}")
            log(f"imported {name} in {time.monotonic() - t0:.1f}s")

    def _start_kubelet(self) -> None:
        if self.stack.running(self.proc("kubelet")):
            return
        self.kubelet_dir.mkdir(parents=True, exist_ok=True)
        self.stack._spawn(self.proc("kubelet"), [
            *self._nsenter(), str(self.kube_bin / "kubelet"),
            f"--kubeconfig={self._kubelet_kubeconfig()}",
            f"--hostname-override={self.name}", "--node-ip=127.0.0.1",
            "--container-runtime=remote", f"--container-runtime-endpoint=unix://{self.containerd_sock}",
            "--cgroup-driver=cgroupfs", "--fail-swap-on=false",
            f"--root-dir={self.kubelet_dir}", f"--cert-dir={self.kubelet_dir / 'pki'}",
            f"--volume-plugin-dir={self.kubelet_dir / 'volume-plugins'}",
            f"--pod-infra-container-image={images.PAUSE_IMAGE}",
            "--cgroups-per-qos=false", "--enforce-node-allocatable=",
            "--address=127.0.0.1", f"--port={self.kubelet_port}", "--read-only-port=0", "--healthz-port=0",
            "--anonymous-auth=false", f"--client-ca-file={self.pki / 'kubelet-ca.crt'}",
            "--authorization-mode=AlwaysAllow",
            "--eviction-hard=", "--image-gc-high-threshold=100", "--image-gc-low-threshold=99",
            "--resolv-conf=/etc/resolv.conf", "--v=1",
        ])

    def wait_ready(self, timeout: float = 120) -> float:
        t0 = time.monotonic()

        def ready() -> bool:
            out = self.stack.kubectl("get", "node", self.name, "-o", "json", check=False)
            if out.returncode != 0:
                return False
            conds = json.loads(out.stdout)["status"].get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

        self.stack._wait_started(self.proc("kubelet"), ready, timeout, f"node {self.name} Ready", interval=0.5)
        return time.monotonic() - t0

    # ------------------------------------------------------------------ lifecycle
    def up(self, *, operator: bool = True) -> RealNode:
        """The stack (API server with the node's flags), its data plane, then the node."""
        if not (self.kube_bin / "kubelet").exists():
            raise RuntimeError(f"{self.kube_bin}/kubelet missing: run `make node-bootstrap` first")
        for d in (self.stack.root, self.stack.pids, self.stack.logs, self.dir):
            d.mkdir(parents=True, exist_ok=True)
        self.prepare_apiserver()
        self._restart_without("kube-apiserver", "--egress-selector-config-file" if self.install
                              else "--kubelet-client-certificate")
        if self.install:
            self._restart_without("kube-controller-manager", "--root-ca-file")
            self.stack.up(operator=False, dataplane=False)
            self._start_dataplane()
        else:
            self.stack.up(operator=operator, dataplane=True,
                          nodes=self.stack.node_count if self.stack.node_count > 1 else None)
        self.start()
        if self.install:
            self.apply_install()
        return self

    def start(self) -> RealNode:
        """The node itself, on a running stack whose data plane has this node (node-i of a
        multi-node stack: Stack.up(nodes=N)): RBAC, CNI dirs, the relay, containerd, images, the
        kubelet; then Ready and its InternalIP. Starts only what is not running."""
        if self.index != 1:
            for d in (self.dir,):
                d.mkdir(parents=True, exist_ok=True)
            if not self.part.configured:
                raise RuntimeError(f"{self.name} has no data plane: Stack.up(nodes={self.index}) first")
        self._node_rbac()
        self._cni()
        self._start_relay()
        self._start_egress()
        self._start_containerd()
        self.import_images({images.PAUSE_IMAGE: images.pause_image(), images.BUSYBOX_IMAGE: images.busybox_image(),
                            **({images.OVNVNET_IMAGE: images.ovnvnet_image()} if self.install else {})})
        self._start_scheduler()
        self._start_kubelet()
        took = self.wait_ready()
        self._set_address()
        log(f"node {self.name} Ready {took:.1f}s after the kubelet started (InternalIP {self.internal_ip})")
        return self

    def lose(self) -> float:
        """The node is lost (issue 18): its kubelet, every container and shim, containerd, its
        agent, ovn-controller and OVS stopped at once (SIGKILL), as a machine that dies. The API
        objects stay (the pods still say this node); :meth:`stop` later removes what is left
        (mounts, netns files). Seconds it took."""
        t0 = time.monotonic()
        self.stack.kill(self.proc("kubelet"), signal.SIGKILL)
        for task in self._tasks():
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False, timeout=30)
        self.stack.kill(self.proc("containerd"), signal.SIGKILL)
        self._kill_shims()
        self.stack.kill(self.proc("nsrelay"), signal.SIGKILL)
        self.part.stop_agent(signal.SIGKILL)
        self.part.dataplane().stop(timeout=0)
        took = time.monotonic() - t0
        log(f"node {self.name} lost (kubelet, containers, containerd, agent, ovn-controller, OVS killed) "
            f"in {took:.1f}s")
        return took

    def _restart_without(self, name: str, flag: str) -> None:
        pid = self.stack.pid(name)
        if pid and self.stack.running(name) and flag.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
            log(f"restarting {name} with the real node's flags ({flag})")
            self.stack.kill(name)

    def _start_dataplane(self) -> None:
        """Install mode: the node's OVS + ovn-controller only; the agent comes as a DaemonSet pod."""
        w = self.stack.worker
        self.stack.state["dataplane"] = {"node": w.name, "netns": w.netns}
        self.stack._save()
        dp = w.dataplane()
        if not dp.running():
            dp.stop()
            start_dataplane(w.dir, self.stack.central.sb_unix, w.name, netns=w.netns)
        self.stack.write_env()

    def apply_install(self, timeout: float = 300) -> float:
        """`kubectl apply -k manifests/overlays/local-node` (after Multus's CRD, its prerequisite),
        or `helm install` (installer "helm"), then wait until the operator Deployment and the agent
        DaemonSet are rolled out."""
        t0 = time.monotonic()
        self.stack.kubectl("apply", "-f", str(NAD_CRD))
        self.stack.kubectl("wait", "--for=condition=Established", "--timeout=30s", "-f", str(NAD_CRD))
        if self.installer == "helm":
            self.helm("install", RELEASE, str(REPO / "charts" / "ovnvnet"), "-n", SYSTEM_NS, "--create-namespace",
                      "-f", str(self.helm_values()))
            # as the chart's NOTES ask (--create-namespace cannot label): the admission webhook
            # never sees ovnvnet's own pods
            self.stack.kubectl("label", "namespace", SYSTEM_NS, "ovnvnet.io/admission=skip", "--overwrite")
            self.wait_rolled_out(timeout)
            took = time.monotonic() - t0
            log(f"install rolled out {took:.1f}s after helm install (values {self.helm_values()})")
            return took
        if self.local_root == LOCAL_NODE_ROOT:
            self.stack.kubectl("apply", "-k", str(OVERLAY))
        else:  # the overlay as written, its node root moved to this node's own (see local_root)
            rendered = self.stack.kubectl("kustomize", str(OVERLAY)).stdout
            self.stack.kubectl("apply", "-f", "-", input=rendered.replace(f"{LOCAL_NODE_ROOT}/", f"{self.local_root}/"))
        self.wait_rolled_out(timeout)
        took = time.monotonic() - t0
        how = "kubectl apply -k" if self.local_root == LOCAL_NODE_ROOT else f"kustomize, root {self.local_root},"
        log(f"install rolled out {took:.1f}s after {how} {OVERLAY.relative_to(REPO)}")
        return took

    def wait_rolled_out(self, timeout: float = 300) -> None:
        for what in ("deployment/ovnvnet-operator", "daemonset/ovnvnet-agent"):
            self.stack.kubectl("rollout", "status", "-n", SYSTEM_NS, what, f"--timeout={int(timeout)}s")

    def helm_values(self) -> Path:
        """tests/node/local-node-values.yaml with this node's root (see local_root), in <stack>/rn.
        The RuntimeClass the values name is applied here: it belongs to the node, not the chart."""
        path = self.dir / "helm-values.yaml"
        text = HELM_VALUES.read_text().replace(f"{LOCAL_NODE_ROOT}/", f"{self.local_root}/")
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        self.stack.kubectl("apply", "-f", str(OVERLAY / "runtimeclass.yaml"))
        return path

    def helm(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        """helm (harness.chart's pinned binary) against this stack's API server."""
        from .chart import helm
        return helm(*args, kubeconfig=self.stack.kubeconfig, check=check, timeout=timeout)

    def _set_address(self) -> None:
        """InternalIP 127.0.0.1 in the node's status, set by us as a cloud provider would: the
        kubelet refuses a loopback --node-ip ("nodeIP can't be loopback address") and then leaves
        the addresses alone, and 127.0.0.1:<kubelet port> on the host is the relay to it."""
        import ssl
        import urllib.request

        body = json.dumps({"status": {"addresses": [{"type": "InternalIP", "address": self.internal_ip},
                                                    {"type": "Hostname", "address": self.name}]}}).encode()
        req = urllib.request.Request(f"{self.stack.api_url}/api/v1/nodes/{self.name}/status", data=body,
                                     method="PATCH", headers={"Authorization": f"Bearer {self.stack.token}",
                                                              "Content-Type": "application/merge-patch+json"})
        ctx = ssl.create_default_context(cafile=str(self.pki / "apiserver.crt"))
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
            if resp.status != 200:
                raise RuntimeError(f"PATCH node {self.name} status: HTTP {resp.status}")

    # ------------------------------------------------------------------ restarts (issue 12, 5 and 6)
    def lease_renewed(self) -> str:
        """The node Lease's renewTime (kube-node-lease/<node>), "" when none."""
        out = self.stack.kubectl("get", "lease", "-n", "kube-node-lease", self.name, "-o", "json", check=False)
        return json.loads(out.stdout)["spec"].get("renewTime", "") if out.returncode == 0 else ""

    def _wait_kubelet_back(self, before: str, timeout: float = 120) -> None:
        """The restarted kubelet renewed the node Lease (a renewTime other than `before`) and the
        node is Ready: a stale Ready condition from before the restart proves nothing."""
        wait_for(lambda: self.lease_renewed() not in ("", before), timeout,
                 f"the restarted kubelet of {self.name} to renew its Lease", interval=0.5)
        self.wait_ready(timeout)

    def restart_kubelet(self) -> float:
        """SIGTERM the kubelet, start it again (same flags, same root dir); seconds until it is back."""
        t0, before = time.monotonic(), self.lease_renewed()
        self.stack.kill(self.proc("kubelet"))
        self._start_kubelet()
        self._wait_kubelet_back(before)
        return time.monotonic() - t0

    def restart_containerd(self) -> float:
        """SIGTERM containerd and start it again: the shims (and so the containers) keep running,
        containerd reconnects to them; seconds until it answers again."""
        t0 = time.monotonic()
        self.stack.kill(self.proc("containerd"))
        self._start_containerd()
        return time.monotonic() - t0

    def reboot(self) -> float:
        """Stop the whole node as a power cut would, then boot it: every container and shim
        SIGKILLed, the kubelet, containerd, the node's OVS and ovn-controller (and the agent when
        it is a local process) killed; what lives in tmpfs on a real machine is gone (the pods'
        netns files and so their veths, containerd's state dir, the volume mounts); what lives on
        disk stays (containerd's root, the kubelet's dir, OVS's conf.db, the CNI dirs). Then the
        boot: OVS + ovn-controller, containerd, the kubelet (and the local agent). The kubelet
        finds every sandbox dead and recreates it; seconds until the node is Ready again."""
        t0, lease = time.monotonic(), self.lease_renewed()
        netns = self._sandbox_netns()
        self.stack.kill(self.proc("kubelet"), signal.SIGKILL)
        for task in self._tasks():
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False, timeout=30)
        self.stack.kill(self.proc("containerd"), signal.SIGKILL)
        self._kill_shims()
        if not self.install:
            self.part.stop_agent(signal.SIGKILL)
        self.part.dataplane().stop(timeout=0)
        self._unmount_all()
        for path in netns:
            subprocess.run(["umount", path], capture_output=True)
            Path(path).unlink(missing_ok=True)
        subprocess.run(["rm", "-rf", str(self.dir / "containerd" / "state")], check=True)
        log(f"node {self.name} down (power cut) in {time.monotonic() - t0:.1f}s; booting")
        w = self.part
        start_dataplane(w.dir, self.stack.central.sb_unix, w.name, netns=w.netns,
                        underlay=(NODE_PORT, w.encap_ip) if self.stack.node_count > 1 else None)
        self._start_containerd()
        self._start_kubelet()
        if not self.install:
            self.part.start_agent()
        self._wait_kubelet_back(lease)
        took = time.monotonic() - t0
        log(f"node {self.name} rebooted: Ready {took:.1f}s after the power cut")
        return took

    def _sandbox_netns(self) -> list[str]:
        """The network namespace files of this node's pod sandboxes (from their OCI specs)."""
        out = []
        for cid in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            info = self.ctr("containers", "info", cid, check=False)
            if info.returncode != 0:
                continue
            spec = json.loads(info.stdout).get("Spec") or {}
            for ns in spec.get("linux", {}).get("namespaces", []):
                if ns.get("type") == "network" and ns.get("path"):
                    out.append(ns["path"])
        return sorted(set(out))

    def wait_service_account(self, namespace: str, timeout: float = 60) -> None:
        """Install mode (ServiceAccount admission): a pod is refused until its namespace's `default`
        ServiceAccount and its token exist (the controllers make them just after the namespace);
        wait for both. Without install mode: nothing to wait for."""
        if not self.install:
            return

        def has_token() -> bool:
            out = self.stack.kubectl("get", "serviceaccount", "-n", namespace, "default", "-o", "json", check=False)
            return out.returncode == 0 and bool(json.loads(out.stdout).get("secrets"))

        wait_for(has_token, timeout, f"the default ServiceAccount (and its token) in namespace {namespace}",
                 interval=0.3)

    def node_pods(self) -> list[dict]:
        out = self.stack.kubectl("get", "pods", "-A", "--field-selector", f"spec.nodeName={self.name}",
                                 "-o", "json", check=False)
        return json.loads(out.stdout)["items"] if out.returncode == 0 else []

    def drain(self, timeout: float = 90) -> None:
        """Delete every pod on the node and wait until the kubelet has stopped them all (the
        runtime calls CNI DEL for each sandbox) and the API objects are gone."""
        if self.install:  # the agent must outlive the pods it unplugs; the controllers would recreate it
            self._delete_pods([p for p in self.node_pods() if p["metadata"]["namespace"] != "ovnvnet-system"],
                              timeout)
            if self.installer == "helm":
                self.helm("uninstall", RELEASE, "-n", SYSTEM_NS, check=False)
            else:
                self.stack.kubectl("delete", "-k", str(OVERLAY), "--wait=false", "--ignore-not-found", check=False)
        self._delete_pods(self.node_pods(), timeout)
        if self.stack.running(self.proc("containerd")):
            wait_for(lambda: not self._running_tasks(), timeout, "containerd's tasks to stop", interval=0.5)

    def _delete_pods(self, pods: list[dict], timeout: float) -> None:
        names = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods}
        for pod in pods:
            md = pod["metadata"]
            self.stack.kubectl("delete", "pod", "-n", md["namespace"], md["name"], "--wait=false",
                               "--grace-period=1", check=False)
        if pods:
            wait_for(lambda: not names & {(p["metadata"]["namespace"], p["metadata"]["name"])
                                          for p in self.node_pods()},
                     timeout, f"the pods on {self.name} to be deleted", interval=0.5)

    def _running_tasks(self) -> list[str]:
        out = self.ctr("tasks", "ls", check=False, timeout=30)
        return [line.split()[0] for line in out.stdout.splitlines()[1:]
                if line.split() and line.split()[-1] == "RUNNING"]

    def stop(self, *, drain: bool = True) -> None:
        """Stop the node and remove what it created (pods first when `drain` and the API is up)."""
        api_up = self.stack.running("kube-apiserver") and self.stack.running(self.proc("kubelet"))
        if drain and api_up and self.stack.running(self.proc("containerd")):
            try:
                self.drain()
            except (TimeoutError, RuntimeError) as exc:
                log(f"drain incomplete, stopping the rest by force: {exc}")
        if self.index == 1:
            self.stack.kill("kube-scheduler")
        self.stack.kill(self.proc("kubelet"))
        if self.stack.running(self.proc("containerd")):
            for task in self._tasks():
                self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False, timeout=30)
            deadline = time.monotonic() + 15
            while self._running_tasks() and time.monotonic() < deadline:
                time.sleep(0.2)
            for task in self._tasks():
                self.ctr("tasks", "delete", "-f", task, check=False, timeout=30)
        self.stack.kill(self.proc("containerd"))
        self._kill_shims()
        self.stack.kill(self.proc("nsrelay"))
        if self.index == 1:
            self.stack.kill("egress")
        self._unmount_all()
        root = self.local_root
        if root.is_symlink() and Path(os.readlink(root)) == self.host_root:
            root.unlink()

    def _tasks(self) -> list[str]:
        out = self.ctr("tasks", "ls", "-q", check=False, timeout=30)
        return out.stdout.split() if out.returncode == 0 else []

    def _kill_shims(self) -> None:
        """containerd-shim-runc-v2 processes started by this node's containerd (found by the
        containerd socket address on their command line), SIGKILL, then wait for them."""
        mine = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(self.containerd_sock).encode() in argv:
                mine.append(int(entry))
        for pid in mine:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while any(pid_alive(p) for p in mine) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _unmount_all(self) -> None:
        """Every mount under the node's directory, deepest first (rootfs, volumes, netns files)."""
        for _ in range(3):
            points = self.mounts()
            if not points:
                return
            for point in sorted(points, key=len, reverse=True):
                if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                    subprocess.run(["umount", "-l", point], capture_output=True)
        if self.mounts():
            log(f"mounts left under {self.dir}: {self.mounts()}")

    def mounts(self) -> list[str]:
        prefix = str(self.dir) + "/"
        out = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point.startswith(prefix):
                    out.append(point)
        return out

    def shims(self) -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(self.containerd_sock).encode() in argv:
                    found.append(int(entry))
        return found


def _tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    import socket
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def up_nodes(stack: Stack, nodes: int, *, operator: bool = True) -> list[RealNode]:
    """The stack with `nodes` real nodes (issue 18): node-1 .. node-N, each in its own network
    namespace with its own OVS + ovn-controller (own chassis and encap IP on the stack's private
    underlay, harness.underlay), its own CNI agent (a local process), and its own containerd and
    kubelet (see :meth:`RealNode.start`). Every node's token is in the API server's token file
    before it starts; node-1 brings the stack up, the others join it."""
    if nodes < 1:
        raise ValueError(f"nodes={nodes}: at least 1")
    stack.state["nodes"] = max(nodes, stack.node_count)
    rns = [RealNode(stack, index=i) for i in range(1, nodes + 1)]
    for rn in rns[1:]:
        rn.prepare_apiserver()
    rns[0].up(operator=operator)
    for rn in rns[1:]:
        rn.start()
    return rns


def nodes_of(stack: Stack) -> list[RealNode]:
    """Every real node this stack has (node-1 first)."""
    count = stack.state.get("realnode", {}).get("nodes", 1) if "realnode" in stack.state else 0
    return [RealNode(stack, index=i) for i in range(1, count + 1)]


def _openssl(*args: str) -> None:
    out = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {out.stderr.strip()}")


def down(stack: Stack) -> None:
    """The nodes (if this stack has any; the last first), then the whole stack."""
    for rn in reversed(nodes_of(stack)):
        rn.stop()
    stack.down()


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ovnvnet-realnode", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["up", "down", "images"])
    ap.add_argument("--dir", default=".stack", help="state directory (default .stack)")
    ap.add_argument("--no-operator", action="store_true", help="no operator process")
    ap.add_argument("--install", action="store_true",
                    help="ovnvnet as pods: kubectl apply -k manifests/overlays/local-node (no local process)")
    ap.add_argument("--helm", action="store_true",
                    help="with --install: helm install charts/ovnvnet -f tests/node/local-node-values.yaml")
    ap.add_argument("--nodes", type=int, default=1,
                    help="real nodes node-1..node-N, each its own kubelet + containerd (not with --install)")
    args = ap.parse_args(argv)
    stack = Stack(args.dir)
    if args.command == "up":
        t0 = time.monotonic()
        if args.nodes > 1:
            if args.install:
                ap.error("--install is one node only (its host paths are one per machine)")
            up_nodes(stack, args.nodes, operator=not args.no_operator)
        else:
            RealNode(stack, install=args.install or None,
                     installer="helm" if args.helm else None).up(operator=not args.no_operator)
        print(f"stack and {args.nodes} real node(s) up in {time.monotonic() - t0:.1f}s; source {stack.root / 'env'}")
    elif args.command == "down":
        down(stack)
        print(f"node and stack stopped; {stack.root} removed")
    else:
        for name, path in images.build_all().items():
            print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
