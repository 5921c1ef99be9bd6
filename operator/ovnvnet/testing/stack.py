"""A real local stack on loopback: etcd, kube-apiserver, kube-controller-manager, OVN NB/SB + northd,
and optionally the ovnvnet operator as a process, and one node's data plane (OVS + ovn-controller
in a dedicated network namespace) with the ovnvnet CNI node agent.

One piece of code used by the tests, the demo (`make up`) and the benchmarks. Everything runs in a
private directory with random free loopback ports; every process is tracked by a pidfile there and
stopped by pid. `Stack.up()` starts only what is not running yet, so killing the operator and
calling `up()` again restarts just the operator with all state kept.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterable

KUBE_BIN = Path(os.environ.get("OVNVNET_KUBE_BIN", "/var/cache/ovnvnet/kube-1.20.2/bin"))
REPO = Path(__file__).resolve().parents[3]
CRDS = REPO / "crds"
OVN_NB_SCHEMA = "/usr/share/ovn/ovn-nb.ovsschema"
OVN_SB_SCHEMA = "/usr/share/ovn/ovn-sb.ovsschema"
BUILD_CNI = REPO / "hack" / "build-cni.sh"
NODE = "node-1"
SYSTEM_CNI_DIR = Path("/usr/lib/cni")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0): look at its state
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


class ProcessDied(RuntimeError):
    pass


def wait_for(check, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except ProcessDied:
            raise
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}" + (f": {last_exc}" if last_exc else ""))


class Stack:
    """A stack rooted at `root` (created if missing). State survives between `up()` calls."""

    def __init__(self, root: Path | str, *, kube_bin: Path = KUBE_BIN):
        self.root = Path(root).resolve()
        self.kube_bin = kube_bin
        self.pids = self.root / "pids"
        self.logs = self.root / "logs"
        self.state_file = self.root / "state.json"
        self.state: dict = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    # ------------------------------------------------------------------ bookkeeping
    def _save(self) -> None:
        self.state_file.write_text(json.dumps(self.state, indent=1))

    def _port(self, name: str) -> int:
        if name not in self.state.setdefault("ports", {}):
            self.state["ports"][name] = free_port()
            self._save()
        return self.state["ports"][name]

    def _pidfile(self, name: str) -> Path:
        return self.pids / f"{name}.pid"

    def running(self, name: str) -> bool:
        try:
            pid = int(self._pidfile(name).read_text().strip())
        except (OSError, ValueError):
            return False
        return pid_alive(pid)

    def pid(self, name: str) -> int | None:
        try:
            return int(self._pidfile(name).read_text().strip())
        except (OSError, ValueError):
            return None

    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True, cwd=self.root,
        )
        log.close()
        self._pidfile(name).write_text(str(proc.pid))
        return proc

    def _wait_started(self, name: str, check, timeout: float, what: str, interval: float = 0.1) -> None:
        """wait_for, but fail at once with the log's tail if the process died."""
        def probe():
            if not self.running(name):
                raise ProcessDied(f"{name} exited; last log lines:\n{self.log_tail(name)}")
            return check()
        try:
            wait_for(probe, timeout, what, interval)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\nlast log lines of {name}:\n{self.log_tail(name)}") from None

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join((self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self, name: str, sig: int = signal.SIGTERM, wait: float = 10.0) -> None:
        pid = self.pid(name)
        if pid is None:
            return
        if pid_alive(pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + wait
            while pid_alive(pid) and time.monotonic() < deadline:
                try:  # reap if it is our child
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                time.sleep(0.05)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                time.sleep(0.1)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        self._pidfile(name).unlink(missing_ok=True)

    # ------------------------------------------------------------------ addresses
    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def nb_remote(self) -> str:
        return f"tcp:127.0.0.1:{self._port('nb')}"

    @property
    def sb_remote(self) -> str:
        return f"tcp:127.0.0.1:{self._port('sb')}"

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self._port('apiserver')}"

    @property
    def token(self) -> str:
        if "token" not in self.state:
            self.state["token"] = secrets.token_hex(16)
            self._save()
        return self.state["token"]

    def env(self) -> dict[str, str]:
        env = {
            "KUBECONFIG": str(self.kubeconfig),
            "OVN_NB_DB": self.nb_remote,
            "OVN_SB_DB": self.sb_remote,
            "OVNVNET_STACK": str(self.root),
            "PATH": f"{self.root / 'bin'}:{self.kube_bin}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        }
        if "dataplane" in self.state:
            # ovs-vsctl/ovs-appctl find the node's OVS through OVS_RUNDIR; CNI_PATH/NETCONFPATH
            # are what a CNI runtime uses
            env.update({
                "OVS_RUNDIR": str(self.node_dir),
                "OVNVNET_NODE_NETNS": self.node_netns,
                "CNI_PATH": ":".join(str(d) for d in self.cni_plugin_dirs),
                "NETCONFPATH": str(self.cni_conf_dir),
            })
        return env

    def write_env(self) -> None:
        lines = [f"export {k}={v}" for k, v in self.env().items()]
        (self.root / "env").write_text("\n".join(lines) + "\n")
        # kubectl caches API discovery per host:port in ~/.kube/cache for 10 minutes, and the
        # stack's ports are random: a port reused from an earlier stack would show its stale
        # resource list ("doesn't have a resource type vnet"). A wrapper keeps the cache private.
        bin_dir = self.root / "bin"
        bin_dir.mkdir(exist_ok=True)
        wrapper = bin_dir / "kubectl"
        wrapper.write_text(f'#!/bin/sh\nexec {self.kube_bin / "kubectl"} --cache-dir={self.root / "kube-cache"} "$@"\n')
        wrapper.chmod(0o755)

    # ------------------------------------------------------------------ kube
    def _start_etcd(self) -> None:
        if self.running("etcd"):
            return
        port, peer = self._port("etcd"), self._port("etcd-peer")
        self._spawn("etcd", [
            "etcd", "--data-dir", str(self.root / "etcd"), "--name", "ovnvnet",
            "--listen-client-urls", f"http://127.0.0.1:{port}", "--advertise-client-urls", f"http://127.0.0.1:{port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"ovnvnet=http://127.0.0.1:{peer}",
            "--quota-backend-bytes", str(4 * 1024**3),
        ])
        self._wait_started("etcd", lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).status == 200,
                           60, "etcd")

    def _kube_pki(self) -> None:
        pki = self.root / "pki"
        pki.mkdir(exist_ok=True)
        if not (pki / "sa.key").exists():
            subprocess.run(["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"], check=True, capture_output=True)
            subprocess.run(["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")],
                           check=True, capture_output=True)
        extra = "".join(f"{line}\n" for line in self.state.get("extra_tokens", []))  # realnode.py
        (self.root / "tokens.csv").write_text(f"{self.token},admin,admin,system:masters\n{extra}")

    def _start_apiserver(self) -> None:
        if self.running("kube-apiserver"):
            return
        self._kube_pki()
        pki = self.root / "pki"
        self._spawn("kube-apiserver", [
            str(self.kube_bin / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self._port('etcd')}",
            "--insecure-port=0", f"--secure-port={self._port('apiserver')}", "--bind-address=127.0.0.1",
            f"--cert-dir={pki}", f"--token-auth-file={self.root / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--disable-admission-plugins=ServiceAccount",
            "--enable-priority-and-fairness=false",
            "--max-requests-inflight=2000", "--max-mutating-requests-inflight=1000",
            "--event-ttl=1h",
            *self.state.get("apiserver_args", []),  # realnode.py: the kubelet's address and client cert
        ])
        self._write_kubeconfig()
        ctx = ssl.create_default_context(cafile=str(pki / "apiserver.crt")) if (pki / "apiserver.crt").exists() else None

        def ready() -> bool:
            nonlocal ctx
            if ctx is None:
                if not (pki / "apiserver.crt").exists():
                    return False
                ctx = ssl.create_default_context(cafile=str(pki / "apiserver.crt"))
            req = urllib.request.Request(self.api_url + "/readyz", headers={"Authorization": f"Bearer {self.token}"})
            return urllib.request.urlopen(req, timeout=2, context=ctx).status == 200

        self._wait_started("kube-apiserver", ready, 120, "kube-apiserver /readyz", interval=0.3)

    def _write_kubeconfig(self) -> None:
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": "ovnvnet",
            "clusters": [{"name": "ovnvnet", "cluster": {
                "server": self.api_url, "certificate-authority": str(self.root / "pki" / "apiserver.crt")}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "ovnvnet", "context": {"cluster": "ovnvnet", "user": "admin"}}],
        }
        self.kubeconfig.write_text(json.dumps(cfg, indent=1))

    def _start_controller_manager(self) -> None:
        if self.running("kube-controller-manager"):
            return
        self._spawn("kube-controller-manager", [
            str(self.kube_bin / "kube-controller-manager"), f"--kubeconfig={self.kubeconfig}",
            "--controllers=garbagecollector,namespace", "--leader-elect=false", "--port=0", "--secure-port=0",
        ])

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.kube_bin / "kubectl"), f"--kubeconfig={self.kubeconfig}",
                               f"--cache-dir={self.root / 'kube-cache'}", *args],
                              input=input, capture_output=True, text=True, check=check)

    def apply_crds(self) -> None:
        self.kubectl("apply", "-f", str(CRDS))
        for crd in sorted(CRDS.glob("*.yaml")):
            self.kubectl("wait", "--for=condition=Established", "--timeout=30s", "-f", str(crd))
        # Established comes a moment before API discovery lists the resources; a kubectl that
        # looks in between caches the list without them. Wait, then start with an empty cache.
        wanted = {"virtualnetworks", "ipblocks"}

        def discovered() -> bool:
            out = self.kubectl("api-resources", "--api-group=ovnvnet.io", "-o", "name", check=False).stdout
            shutil.rmtree(self.root / "kube-cache", ignore_errors=True)
            return wanted <= {line.split(".")[0] for line in out.split()}

        wait_for(discovered, 30, "the CRDs in API discovery", interval=0.2)

    # ------------------------------------------------------------------ OVN
    def _ovs_env(self) -> dict[str, str]:
        ovn = str(self.root / "ovn")
        return {k: ovn for k in ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVN_RUNDIR", "OVN_LOGDIR", "OVN_DBDIR")}

    def start_ovsdb(self, name: str, schema: str, port: int, *, wipe: bool = False) -> None:
        """Start one OVN database server (`nb` or `sb`). `wipe` recreates its database empty."""
        ovn = self.root / "ovn"
        ovn.mkdir(exist_ok=True)
        db = ovn / f"{name}.db"
        if wipe:
            db.unlink(missing_ok=True)
        if not db.exists():
            subprocess.run(["ovsdb-tool", "create", str(db), schema], check=True, capture_output=True)
        sock = ovn / f"{name}.sock"
        self._spawn(f"ovsdb-{name}", [
            "ovsdb-server", "--no-chdir", f"--log-file={self.logs / f'ovsdb-{name}.vlog'}",
            f"--unixctl={ovn / f'ovsdb-{name}.ctl'}",
            f"--remote=punix:{sock}", f"--remote=ptcp:{port}:127.0.0.1", str(db),
        ], env=self._ovs_env())
        self._wait_started(f"ovsdb-{name}", lambda: _tcp_open(port), 30, f"ovsdb-server {name}")

    def _start_ovn(self) -> None:
        if not self.running("ovsdb-nb"):
            self.start_ovsdb("nb", OVN_NB_SCHEMA, self._port("nb"))
        if not self.running("ovsdb-sb"):
            self.start_ovsdb("sb", OVN_SB_SCHEMA, self._port("sb"))
        if not self.running("ovn-northd"):
            ovn = self.root / "ovn"
            self._spawn("ovn-northd", [
                "ovn-northd", "--no-chdir", f"--ovnnb-db={self.nb_remote}", f"--ovnsb-db={self.sb_remote}",
                f"--log-file={self.logs / 'ovn-northd.vlog'}", f"--unixctl={ovn / 'northd.ctl'}",
            ], env=self._ovs_env())

    def nbctl(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(["ovn-nbctl", f"--db={self.nb_remote}", "--timeout=10", *args],
                             capture_output=True, text=True, env={**os.environ, **self._ovs_env()})
        if check and out.returncode != 0:
            raise RuntimeError(f"ovn-nbctl {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    # ------------------------------------------------------------------ operator
    @property
    def health_port(self) -> int:
        return self._port("operator-health")

    def operator_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = self.env()
        env.update({"OVNVNET_HEALTH_PORT": str(self.health_port), "PYTHONUNBUFFERED": "1"})
        env.update(self.state.get("operator_env", {}))
        env.update(extra or {})
        return env

    def start_operator(self, extra_env: dict[str, str] | None = None, *, wait: bool = True) -> None:
        if self.running("operator"):
            return
        if extra_env is not None:
            self.state["operator_env"] = extra_env
            self._save()
        self._spawn("operator", [sys.executable, "-m", "ovnvnet"], env=self.operator_env())
        if wait:
            self.wait_operator_ready()

    def wait_operator_ready(self, timeout: float = 60) -> None:
        url = f"http://127.0.0.1:{self.health_port}/leader"  # /readyz is 200 on a standby too

        self._wait_started("operator", lambda: urllib.request.urlopen(url, timeout=1).status == 200,
                           timeout, "operator /leader", interval=0.2)

    def stop_operator(self, sig: int = signal.SIGTERM) -> None:
        self.kill("operator", sig)

    # ------------------------------------------------------------------ data plane + CNI
    @property
    def netns_prefix(self) -> str:
        """Every network namespace this stack creates starts with this (unique per root)."""
        return "ovnvnet-" + hashlib.sha256(str(self.root).encode()).hexdigest()[:8] + "-"

    @property
    def node(self) -> str:
        return self.state.get("dataplane", {}).get("node", NODE)

    @property
    def node_netns(self) -> str:
        """The "host" network namespace of the node: ovs-vswitchd, br-int, the pods' host veths."""
        return self.netns_prefix + "node"

    @property
    def node_dir(self) -> Path:
        return self.root / self.node

    @property
    def sb_unix(self) -> str:
        # the data plane runs in its own netns: 127.0.0.1 there is not ours, a unix socket is shared
        return f"unix:{self.root / 'ovn' / 'sb.sock'}"

    @property
    def build_dir(self) -> Path:
        return Path(os.environ.get("OVNVNET_BUILD_DIR", REPO / "build"))

    @property
    def agent_socket(self) -> Path:
        return self.root / "cni.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_conflist(self) -> Path:
        return self.cni_conf_dir / "10-ovnvnet.conflist"

    @property
    def cni_cache_dir(self) -> Path:
        return self.root / "cni" / "cache"

    @property
    def cni_plugin_dirs(self) -> list[Path]:
        return [self.build_dir, SYSTEM_CNI_DIR]

    @property
    def cni_runtime(self) -> Path:
        return self.build_dir / "ovnvnet-cni-runtime"

    def dataplane(self):
        """The node's :class:`~ovnvnet.testing.dataplane.Dataplane` (started or not)."""
        from .dataplane import Dataplane, dataplane_env

        return Dataplane(root=self.node_dir, node=self.node, sb_remote=self.sb_unix,
                         netns=self.node_netns, env=dataplane_env(self.node_dir))

    def build_cni(self) -> tuple[Path, Path]:
        """hack/build-cni.sh: the shim and the libcni runtime helper (rebuilt only when stale)."""
        out = subprocess.run([str(BUILD_CNI)], capture_output=True, text=True,
                             env={**os.environ, "OVNVNET_BUILD_DIR": str(self.build_dir)})
        if out.returncode != 0:
            raise RuntimeError(f"hack/build-cni.sh failed:\n{out.stderr.strip() or out.stdout.strip()}")
        shim, runtime = out.stdout.split()[-2:]
        return Path(shim), Path(runtime)

    def write_conflist(self, *, annotation_timeout: float = 30, name: str = "ovn-network",
                       path: Path | None = None) -> Path:
        """The node's CNI configuration: ours, then Debian's ``tuning`` fed our result as prevResult.
        `path` writes a variant elsewhere (tests with a short annotation timeout)."""
        path = path or self.cni_conflist
        path.parent.mkdir(parents=True, exist_ok=True)
        conf = {
            "cniVersion": "1.0.0", "name": name,
            "plugins": [
                {"type": "ovn-k8s-cni-overlay", "agentSocket": str(self.agent_socket),
                 "annotationTimeout": annotation_timeout},
                {"type": "tuning", "sysctl": {"net.ipv4.conf.all.arp_notify": "1"}},
            ],
        }
        path.write_text(json.dumps(conf, indent=1) + "\n")
        return path

    def start_dataplane(self, node: str = NODE) -> None:
        """OVS ovsdb-server + ovs-vswitchd (netdev) + ovn-controller for `node` in the node netns,
        the CNI binaries, the conflist and the node agent. Starts only what is not running."""
        from .dataplane import start_dataplane

        if self.state.get("dataplane", {}).get("node", node) != node:
            raise RuntimeError(f"this stack's data plane is for {self.node}, not {node}")
        self.state["dataplane"] = {"node": node, "netns": self.node_netns}
        self._save()
        self.build_cni()
        self.write_conflist()
        self.cni_cache_dir.mkdir(parents=True, exist_ok=True)
        dp = self.dataplane()
        if not dp.running():
            dp.stop()  # a partial data plane (one daemon died): restart all three
            start_dataplane(self.node_dir, self.sb_unix, node, netns=self.node_netns)
        self.start_agent()
        self.write_env()

    def start_agent(self, *, wait: bool = True) -> None:
        if self.running("cni-agent"):
            return
        dp = self.dataplane()
        self.agent_socket.unlink(missing_ok=True)
        self._spawn("cni-agent", [
            sys.executable, "-m", "ovnvnet.cni.agent", "--node", self.node,
            "--socket", str(self.agent_socket), "--kubeconfig", str(self.kubeconfig),
            "--ovs-db", dp.ovs_remote, "--host-netns", self.node_netns,
        ], env={"PYTHONUNBUFFERED": "1"})
        if wait:
            self._wait_started("cni-agent", self.agent_socket.is_socket, 30, "CNI node agent socket")

    def stop_agent(self, sig: int = signal.SIGTERM) -> None:
        self.kill("cni-agent", sig)

    def stack_netns(self) -> list[str]:
        """Network namespaces of this stack (node and pods) that exist now."""
        try:
            return sorted(n for n in os.listdir("/var/run/netns") if n.startswith(self.netns_prefix))
        except FileNotFoundError:
            return []

    def stop_dataplane(self) -> None:
        """Agent, then OVS/ovn-controller; removes the node and pod network namespaces."""
        self.kill("cni-agent")
        if "dataplane" not in self.state:
            return
        self.dataplane().stop()
        for ns in self.stack_netns():  # pod netns first, the node's last
            if ns != self.node_netns:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.node_netns], capture_output=True)

    # ------------------------------------------------------------------ lifecycle
    def up(self, *, operator: bool = True, controller_manager: bool = True,
           dataplane: bool = False) -> "Stack":
        for d in (self.root, self.pids, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        if not (self.kube_bin / "kube-apiserver").exists():
            raise RuntimeError(f"{self.kube_bin}/kube-apiserver missing: run hack/bootstrap.sh first")
        self._start_ovn()
        self._start_etcd()
        self._start_apiserver()
        if controller_manager:
            self._start_controller_manager()
        self.apply_crds()
        self.write_env()
        if dataplane:
            self.start_dataplane()
        if operator:
            self.start_operator()
        return self

    COMPONENTS = ("operator", "kube-controller-manager", "kube-apiserver", "etcd", "ovn-northd", "ovsdb-sb", "ovsdb-nb")
    DATAPLANE = ("cni-agent", "ovn-controller", "ovs-vswitchd", "ovsdb-server")

    def down(self, *, remove: bool = True, extra: Iterable[str] = ()) -> None:
        if "realnode" in self.state:  # pods, kubelet, containerd and their mounts before the data plane
            from .realnode import RealNode
            RealNode(self).stop()
        self.kill("operator")
        self.stop_dataplane()
        names = list(extra) + list(self.COMPONENTS)
        if self.pids.exists():
            names += [p.stem for p in self.pids.glob("*.pid") if p.stem not in names]
        for name in names:
            self.kill(name)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    def status(self) -> dict[str, bool]:
        out = {name: self.running(name) for name in self.COMPONENTS}
        if "dataplane" in self.state:
            dp = self.dataplane()
            out["cni-agent"] = self.running("cni-agent")
            for daemon in self.DATAPLANE[1:]:
                out[f"{self.node}/{daemon}"] = (pid := dp.pid(daemon)) is not None and pid_alive(pid)
        return out


def _tcp_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ovnvnet-stack", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["up", "down", "status", "env"])
    ap.add_argument("--dir", default=".stack", help="state directory (default .stack)")
    ap.add_argument("--no-operator", action="store_true", help="start the stack without the operator")
    ap.add_argument("--dataplane", action="store_true",
                    help=f"also start the data plane of {NODE} (OVS, ovn-controller) and the CNI node agent")
    args = ap.parse_args(argv)
    stack = Stack(args.dir)
    if args.command == "up":
        t0 = time.monotonic()
        stack.up(operator=not args.no_operator, dataplane=args.dataplane or "dataplane" in stack.state)
        print(f"stack up in {time.monotonic() - t0:.1f}s; state and logs in {stack.root}")
        print(f"  source {stack.root / 'env'}   # KUBECONFIG, OVN_NB_DB, PATH with kubectl 1.20")
    elif args.command == "down":
        stack.down()
        print(f"stack stopped; {stack.root} removed")
    elif args.command == "status":
        for name, up in stack.status().items():
            print(f"{name:25} {'running' if up else 'stopped'}")
    else:
        print((stack.root / "env").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
