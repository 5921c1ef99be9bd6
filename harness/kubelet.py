"""Play kubelet (and the scheduler's bind) for pods on the local stack's node.

There is no kubelet and no container runtime here: a pod's sandbox is a network namespace, and
its network is set up exactly as a runtime does it, through libcni (``build/ovnvnet-cni-runtime``)
running the node's conflist (``ovn-k8s-cni-overlay`` then Debian's ``tuning``) with
``CNI_ARGS`` ``K8S_POD_NAMESPACE/NAME/UID``. After a successful ADD the pod's status is patched
(phase Running, podIP); :meth:`Kubelet.remove_pod` runs DEL, deletes the pod with grace 0 and
removes the netns.

Sandboxes are recorded in ``<stack>/kubelet.json`` so another process (``make demo`` run twice)
finds them again; every netns name starts with :attr:`Stack.netns_prefix`, so ``Stack.down()``
removes them even without that file.

On a multi-node stack ``Kubelet(stack, node="node-2")`` is that node's kubelet: it binds to it,
runs that node's conflist (its agent's socket) and CNI cache, names its pod namespaces with the
node's prefix (so stopping the node removes them) and records its sandboxes in
``kubelet-node-2.json``. The default is the stack's first node, exactly as before.
"""
from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .stack import Stack

__all__ = ["CniFailed", "CniOutcome", "Kubelet", "Sandbox"]


@dataclass(frozen=True)
class CniOutcome:
    """One libcni call: exit code, stdout (the result or the CNI error object), stderr."""
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.code == 0

    @property
    def json(self) -> dict:
        return json.loads(self.stdout) if self.stdout.strip() else {}

    @property
    def message(self) -> str:
        """The CNI error's msg (and details) on failure."""
        try:
            err = self.json
        except ValueError:
            return (self.stderr or self.stdout).strip()
        msg = err.get("msg", "")
        return f"{msg} ({err['details']})" if err.get("details") else msg


class CniFailed(RuntimeError):
    def __init__(self, what: str, outcome: CniOutcome) -> None:
        super().__init__(f"{what}: {outcome.message}")
        self.outcome = outcome


@dataclass
class Sandbox:
    namespace: str
    name: str
    uid: str
    container_id: str
    netns: str
    ifname: str

    @property
    def netns_path(self) -> str:
        return f"/var/run/netns/{self.netns}"

    @property
    def cni_args(self) -> str:
        return (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={self.namespace};K8S_POD_NAME={self.name};"
                f"K8S_POD_INFRA_CONTAINER_ID={self.container_id};K8S_POD_UID={self.uid}")

    def run(self, *argv: str, check: bool = False, timeout: float = 30) -> subprocess.CompletedProcess:
        """A command inside the pod's network namespace."""
        return subprocess.run(["ip", "netns", "exec", self.netns, *argv], capture_output=True,
                              text=True, check=check, timeout=timeout)

    def ping(self, dst: str, *extra: str, count: int = 2, wait: float = 1) -> bool:
        r = self.run("ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", f"{wait:g}", *extra, dst)
        return r.returncode == 0

    def addresses(self) -> dict[str, dict]:
        """Interfaces in the netns (not lo): name -> {mac, mtu, state, ipv4: [a/p]}, plus
        ``ipv6: [a/p]`` (global addresses) on an interface that has any."""
        links = json.loads(self.run("ip", "-j", "addr", "show", check=True).stdout)
        out = {}
        for link in links:
            if link["ifname"] == "lo":
                continue
            info = link.get("addr_info", [])
            out[link["ifname"]] = {
                "mac": link.get("address"), "mtu": link.get("mtu"), "state": link.get("operstate"),
                "ipv4": [f"{a['local']}/{a['prefixlen']}" for a in info if a.get("family") == "inet"],
            }
            v6 = [f"{a['local']}/{a['prefixlen']}" for a in info
                  if a.get("family") == "inet6" and a.get("scope") == "global"]
            if v6:
                out[link["ifname"]]["ipv6"] = v6
        return out

    def routes(self, family: int = 4) -> list[str]:
        """``ip -4 route`` (or ``-6`` for ``family=6``), one route a line."""
        out = self.run("ip", f"-{family}", "route", "show", check=True).stdout
        return [line.strip() for line in out.splitlines()]


class Kubelet:
    """The kubelet of the stack's node, for pods that exist in the API server."""

    def __init__(self, stack: Stack, *, conflist: Path | None = None, node: str | None = None) -> None:
        import kubernetes

        if "dataplane" not in stack.state:
            raise RuntimeError("the stack has no data plane: Stack.up(dataplane=True) first")
        self.stack = stack
        self.part = stack.node_part(node) if node else stack.worker
        self.node = self.part.name
        self.conflist = conflist or self.part.cni_conflist
        api = kubernetes.config.new_client_from_config(config_file=str(stack.kubeconfig))
        self.core = kubernetes.client.CoreV1Api(api)
        first = self.part.index == 1
        self._state_file = stack.root / ("kubelet.json" if first else f"kubelet-{self.node}.json")
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ bookkeeping
    def _load(self) -> dict[str, dict]:
        try:
            return json.loads(self._state_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _record(self, key: str, sandbox: Sandbox | None) -> None:
        with self._lock:
            data = self._load()
            if sandbox is None:
                data.pop(key, None)
            else:
                data[key] = asdict(sandbox)
            tmp = self._state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(self._state_file)

    def sandbox(self, namespace: str, name: str) -> Sandbox | None:
        raw = self._load().get(f"{namespace}/{name}")
        return Sandbox(**raw) if raw else None

    def sandboxes(self) -> list[Sandbox]:
        return [Sandbox(**raw) for raw in self._load().values()]

    # ------------------------------------------------------------------ CNI
    def cni(self, action: str, sandbox: Sandbox, *, conflist: Path | None = None,
            timeout: float = 120) -> CniOutcome:
        """Run `add`, `check` or `del` for the sandbox through libcni."""
        started = time.monotonic()
        out = subprocess.run(
            [str(self.stack.cni_runtime), action, str(conflist or self.conflist), sandbox.container_id,
             sandbox.netns_path, sandbox.ifname, sandbox.cni_args,
             ":".join(str(d) for d in self.stack.cni_plugin_dirs), str(self.part.cni_cache_dir)],
            capture_output=True, text=True, timeout=timeout,
        )
        return CniOutcome(out.returncode, out.stdout, out.stderr, time.monotonic() - started)

    # ------------------------------------------------------------------ pods
    def bind(self, namespace: str, name: str) -> Any:
        """Schedule the pod onto our node if it is not scheduled yet (the Binding subresource)."""
        pod = self.core.read_namespaced_pod(name, namespace)
        if not pod.spec.node_name:
            body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": self.node}}
            # the generated client cannot parse the reply of the binding subresource
            self.core.create_namespaced_binding(namespace, body, _preload_content=False)
            pod = self.core.read_namespaced_pod(name, namespace)
        elif pod.spec.node_name != self.node:
            raise RuntimeError(f"pod {namespace}/{name} is scheduled on {pod.spec.node_name}, not {self.node}")
        return pod

    @staticmethod
    def default_ifname(pod: Any) -> str:
        """CNI_IFNAME: the first requested interface (as Multus passes the attachment's
        interface), or eth0 for a pod without ovnNetwork (the legacy single interface)."""
        raw = (pod.metadata.annotations or {}).get("ovnNetwork")
        try:
            first = json.loads(raw)[0]["interface"] if raw else None
        except (ValueError, LookupError, TypeError):
            first = None
        return first if isinstance(first, str) and first else "eth0"

    def run_pod(self, namespace: str, name: str, *, ifname: str | None = None,
                conflist: Path | None = None) -> tuple[Sandbox, CniOutcome]:
        """Bind if needed, create the sandbox netns and run ADD; on success patch the status.

        A repeated call for the same pod (same UID) re-runs ADD in the existing sandbox (a
        runtime retrying: it must converge). On failure the sandbox is torn down as a kubelet
        does (DEL, netns removed) and :class:`CniFailed` carries the runtime's error."""
        pod = self.bind(namespace, name)
        key = f"{namespace}/{name}"
        sandbox = self.sandbox(namespace, name)
        if sandbox is not None and sandbox.uid != pod.metadata.uid:
            self._teardown(sandbox)  # a pod of the same name from before
            sandbox = None
        if sandbox is None or not Path(sandbox.netns_path).exists():
            sandbox = Sandbox(
                namespace=namespace, name=name, uid=pod.metadata.uid,
                container_id=secrets.token_hex(32),
                netns=self.part.pod_netns_prefix + secrets.token_hex(4),
                ifname=ifname or self.default_ifname(pod),
            )
            subprocess.run(["ip", "netns", "add", sandbox.netns], check=True, capture_output=True)
            subprocess.run(["ip", "-n", sandbox.netns, "link", "set", "lo", "up"], check=True, capture_output=True)
            self._record(key, sandbox)
        outcome = self.cni("add", sandbox, conflist=conflist)
        if not outcome.ok:
            self._teardown(sandbox)
            failed = CniFailed(f"ADD for pod {key}", outcome)
            self._sandbox_failed(pod, str(failed))
            raise failed
        ips = [ip["address"].split("/")[0] for ip in outcome.json.get("ips", [])]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status: dict[str, Any] = {
            "phase": "Running", "hostIP": "127.0.0.1", "startTime": now,
            "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                           for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
            "containerStatuses": [
                {"name": c.name, "image": c.image or "", "imageID": "", "ready": True, "started": True,
                 "restartCount": 0, "state": {"running": {"startedAt": now}}}
                for c in pod.spec.containers],
        }
        if ips:  # as kubelet: podIP first, then the first address of the other family
            other = next((ip for ip in ips if (":" in ip) != (":" in ips[0])), None)
            pod_ips = [ips[0]] + ([other] if other else [])
            status.update({"podIP": ips[0], "podIPs": [{"ip": ip} for ip in pod_ips]})
        self.core.patch_namespaced_pod_status(name, namespace, {"status": status})
        return sandbox, outcome

    def _sandbox_failed(self, pod: Any, message: str) -> None:
        """What kubelet shows: the container waiting in ContainerCreating and a Warning Event
        FailedCreatePodSandBox with the CNI error (best effort)."""
        from kubernetes.client.rest import ApiException

        meta = pod.metadata
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            self.core.patch_namespaced_pod_status(meta.name, meta.namespace, {"status": {
                "phase": "Pending", "hostIP": "127.0.0.1",
                "containerStatuses": [
                    {"name": c.name, "image": c.image or "", "imageID": "", "ready": False,
                     "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}
                    for c in pod.spec.containers]}})
            self.core.create_namespaced_event(meta.namespace, {
                "metadata": {"generateName": f"{meta.name}."},
                "involvedObject": {"kind": "Pod", "namespace": meta.namespace, "name": meta.name,
                                   "uid": meta.uid, "apiVersion": "v1"},
                "reason": "FailedCreatePodSandBox", "type": "Warning",
                "message": f"Failed to create pod sandbox: {message}",
                "source": {"component": "kubelet", "host": self.node},
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            })
        except ApiException:
            pass

    def _teardown(self, sandbox: Sandbox) -> CniOutcome:
        outcome = self.cni("del", sandbox)
        subprocess.run(["ip", "netns", "del", sandbox.netns], capture_output=True)
        self._record(f"{sandbox.namespace}/{sandbox.name}", None)
        return outcome

    def remove_pod(self, namespace: str, name: str, *, wait: bool = True) -> CniOutcome | None:
        """DEL, delete the pod object with grace 0, remove the netns. Idempotent."""
        from kubernetes.client.rest import ApiException

        sandbox = self.sandbox(namespace, name)
        outcome = self._teardown(sandbox) if sandbox else None
        try:
            self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise
        if wait:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    self.core.read_namespaced_pod(name, namespace)
                except ApiException as exc:
                    if exc.status == 404:
                        break
                    raise
                time.sleep(0.1)
        return outcome


def ping_matrix(sources: list[Sandbox], targets: list[tuple[str, str]], *, workers: int = 16
                ) -> dict[tuple[str, str], bool]:
    """Ping every target address (label, ip) from every sandbox, in parallel:
    {(source pod name, target label): reachable}."""
    jobs = [(s, label, ip) for s in sources for label, ip in targets]
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda j: j[0].ping(j[2], count=2, wait=1), jobs)
    return {(s.name, label): ok for (s, label, _), ok in zip(jobs, results, strict=True)}
