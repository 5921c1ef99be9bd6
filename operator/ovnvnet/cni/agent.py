"""The ovnvnet node agent: serves the ``ovn-k8s-cni-overlay`` shim on a root-only unix socket.

    python -m ovnvnet.cni.agent --node NODE --socket /var/run/ovnvnet/cni.sock \\
        --kubeconfig K --ovs-db unix:/var/run/openvswitch/db.sock

One request per connection (see cni/shim/ovn-k8s-cni-overlay.c): the shim sends
``{"env": {CNI_*...}, "config": "<stdin>"}`` and half-closes; we answer ``"<exit code>\\n"``
followed by what the shim must print. Blocking work (netlink, OVSDB commits) runs in threads;
requests for the same container are serialised, different containers run concurrently.
The hot-plug converge (cni/hotplug.py) takes the same per-container lock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import stat
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from ..config import KubeAccess, seal_key_file
from ..kube.client import KubeClient
from ..kube.connection import connect
from ..model.annotation import (
    ERROR_ANNOTATION,
    ERROR_RETRY_ANNOTATION,
    LEGACY_ANNOTATION,
    REQUEST_ANNOTATION,
    RESULT_ANNOTATION,
    AnnotationError,
    InterfaceResult,
    SealedResult,
    SealError,
    SealKeyError,
    normalize_mac,
    read_seal_key,
    sealed_result,
)
from ..model.names import INTERFACE_KEY, LEGACY_INTERFACE, port_name
from ..model.network import display, parse_cidr
from . import protocol as p
from .hotplug import DEFAULT_RESYNC, Converger, KubeReporter, MemoryReporter, Reporter
from .netlink import (
    InterfaceFailed,
    check_interface,
    ensure_interfaces,
    find_host_veth,
    host_veth_name,
    remove_container_links,
    wanted_routes,
)
from .ovs import ATTACHMENT_KEY, IFACE_ID, OVN_INSTALLED, OvsPorts, PortBinding, entry_digest
from .pods import KubePodSource, PodInfo, PodSource, StaticPodSource

__all__ = ["Agent", "main", "serve"]

log = logging.getLogger("ovnvnet.cni.agent")

MAX_REQUEST_BYTES = p.MAX_REQUEST_BYTES  # the shim never sends more (protocol.py)



def attachment_name(req: p.CniRequest, ifaces: list[InterfaceResult]) -> str:
    """The attachment this call plumbs alone (its configuration's ``name``), or "" when the call
    plumbs every interface of the pod (the seed's single attachment)."""
    net = req.config.get("name")
    if len(ifaces) == 1 and ifaces[0].network == net and ifaces[0].interface == req.ifname:
        return str(net)
    return ""


def attachment_interface(req: p.CniRequest, interfaces: list[InterfaceResult],
                         pod: str) -> InterfaceResult | None:
    """One interface per call (how Multus calls a delegate, once per network-selection element):
    when the network configuration's ``name`` is a network of the pod's result, the call plumbs
    only the interface ``CNI_IFNAME`` on it, after checking ``runtimeConfig.ips``/``mac`` (user
    input passed by Multus) against the operator's sealed result. None: a configuration naming
    no network of the pod (the seed's ``ovn-network``): the call plumbs every interface."""
    net = req.config.get("name")
    on_net = [i for i in interfaces if i.network == net]
    if not on_net:
        return None
    chosen = next((i for i in on_net if i.interface == req.ifname), None)
    if chosen is None:
        raise p.CniError(
            p.ERR_INVALID_CONFIG,
            f"pod {pod} has no interface {req.ifname} on network {net} in its ovnIfaceList "
            f"(on {net}: {', '.join(i.interface for i in on_net)})",
        )
    runtime = req.config.get("runtimeConfig") or {}
    if not isinstance(runtime, dict):
        raise p.CniError(p.ERR_INVALID_CONFIG, "runtimeConfig must be an object")
    given = runtime.get("ips") or []
    if not isinstance(given, list):
        raise p.CniError(p.ERR_INVALID_CONFIG, "runtimeConfig.ips must be a list of \"address/prefix\"")
    have = {a.cidr for a in chosen.addresses}
    for text in given:
        parsed = parse_cidr(text)
        if parsed is None or f"{parsed[0]}/{parsed[1]}" not in have:
            raise p.CniError(
                p.ERR_INVALID_CONFIG,
                f"runtimeConfig.ips {display(text)} is not an address of {req.ifname} on {net}: the "
                f"operator allocated {', '.join(sorted(have))}",
            )
    mac = runtime.get("mac")
    if mac not in (None, "") and normalize_mac(mac) != chosen.mac:
        raise p.CniError(
            p.ERR_INVALID_CONFIG,
            f"runtimeConfig.mac {display(mac)} is not the MAC of {req.ifname} on {net}: the operator "
            f"allocated {chosen.mac}",
        )
    return chosen

class Agent:
    """ADD/DEL/CHECK/VERSION for one node.

    ``seal_key``: the operator's seal key. Only a result sealed for the pod's UID is plumbed
    (model/annotation.py): nothing a pod's creator writes names a port, a network or an address."""

    def __init__(
        self,
        node: str,
        pods: PodSource,
        ovs: OvsPorts,
        host_netns: str | None = None,
        *,
        seal_key: bytes,
    ) -> None:
        self.node = node
        self.seal_key = seal_key
        self.pods = pods
        self.ovs = ovs
        self.host_netns = host_netns
        # per-container serialisation; entries live only while a request holds or awaits them
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        # called with (namespace, name) after each ADD (the hot-plug converge, cni/hotplug.py)
        self.after_add: Callable[[tuple[str, str]], None] | None = None
        # seconds per phase of the last successful ADD (pod, links, ovs, installed, result)
        self.last_phases: dict[str, float] = {}

    @contextlib.asynccontextmanager
    async def _container_lock(self, container_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(container_id, (asyncio.Lock(), 0))
        self._locks[container_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[container_id]
            if users == 1:
                del self._locks[container_id]
            else:
                self._locks[container_id] = (lock, users - 1)

    async def handle(self, env: Mapping[str, str], config_text: str) -> tuple[int, str]:
        """Run one CNI request; returns (exit code, stdout text)."""
        started = time.monotonic()
        version = "1.0.0"
        command = env.get("CNI_COMMAND", "?")
        cid = env.get("CNI_CONTAINERID", "")
        try:
            req = p.parse_request(env, config_text)
            version = req.cni_version
            if req.command == "VERSION":
                return 0, json.dumps(p.version_result(version))
            async with self._container_lock(req.container_id):
                if req.command == "ADD":
                    result = await self.add(req)
                    out = json.dumps(result)
                    if self.after_add is not None:  # runs once this lock is released
                        self.after_add((req.pod_namespace, req.pod_name))
                elif req.command == "DEL":
                    await self.delete(req)
                    out = ""
                else:
                    await self.check(req)
                    out = ""
            shown = f" ({_Phases.text(self.last_phases)})" if req.command == "ADD" else ""
            log.info("%s %s ok in %.2fs%s", command, cid[:12], time.monotonic() - started, shown)
            return 0, out
        except p.CniError as e:
            log.warning("%s %s failed (%d): %s %s", command, cid[:12], e.code, e.msg, e.details)
            return 1, json.dumps(e.to_json(version))
        except Exception as e:  # always answer the runtime with an error object (logged)
            log.exception("%s %s failed", command, cid[:12])
            err = p.CniError(p.ERR_INTERNAL, f"ovnvnet node agent: {type(e).__name__}: {e}")
            return 1, json.dumps(err.to_json(version))

    # --- pod lookup ---------------------------------------------------------------------

    def _pod_identity(self, req: p.CniRequest) -> tuple[str, str, str]:
        ns, name, uid = req.pod_namespace, req.pod_name, req.pod_uid
        if not ns or not name:
            raise p.CniError(
                p.ERR_INVALID_ENV,
                "CNI_ARGS must carry K8S_POD_NAMESPACE and K8S_POD_NAME",
                f"got CNI_ARGS keys {sorted(req.args)}",
            )
        return ns, name, uid

    def _sealed(self, pod: PodInfo) -> SealedResult | None:
        """The pod's result if the operator sealed it for this pod; raises AnnotationError
        (SealError when it is not sealed for this pod)."""
        return sealed_result(pod.annotations, pod.uid, self.seal_key, f"{pod.namespace}/{pod.name}")

    def _sealed_or_none(self, pod: PodInfo) -> SealedResult | None:
        try:
            return self._sealed(pod)
        except AnnotationError:
            return None

    async def _interfaces_for(
        self, req: p.CniRequest, wait: float
    ) -> list[tuple[InterfaceResult, str]]:
        """The interfaces to plumb, each with its logical switch port name.

        The operator's sealed result: every entry of ``ovnIfaceList``, or for a pod without
        ``ovnNetwork`` one interface named ``CNI_IFNAME`` from the ``ovn`` result (recognised by
        ``gateway_ip``). Port names are derived from the pod's namespace, name and interface."""
        ns, name, uid = self._pod_identity(req)

        def ready(pod: PodInfo | None) -> bool:
            if pod is None or (uid and pod.uid != uid):
                return False
            if self._sealed_or_none(pod) is not None:
                return True   # beside it, an ovnNetworkError says a change was refused (issue 16)
            # an unsealed result may still be replaced by the operator's: keep waiting
            return ERROR_ANNOTATION in pod.annotations and not _retrying(pod.annotations)

        pod, ok = await self.pods.wait_for(ns, name, ready, wait)
        if not ok:
            raise self._not_ready_error(ns, name, uid, pod, wait)
        assert pod is not None
        result = self._sealed_or_none(pod)
        if result is None and ERROR_ANNOTATION in pod.annotations and not _retrying(pod.annotations):
            raise p.CniError(
                p.ERR_NETWORK_ERROR,
                f"ovnvnet could not attach pod {ns}/{name}: {pod.annotations[ERROR_ANNOTATION]}",
            )
        if result is None:  # changed since ready(): report as the wait would
            raise self._not_ready_error(ns, name, uid, pod, wait)
        if result.legacy:
            iface = dataclasses.replace(result.interfaces[0], interface=req.ifname)
            return [(iface, port_name(ns, name, LEGACY_INTERFACE))]
        if not result.interfaces:
            raise p.CniError(p.ERR_INVALID_CONFIG, f"pod {ns}/{name} has an empty ovnIfaceList")
        one = attachment_interface(req, result.interfaces, f"{ns}/{name}")
        if one is not None:
            return [(one, port_name(ns, name, one.interface))]
        return [(i, port_name(ns, name, i.interface)) for i in result.interfaces]

    def _not_ready_error(
        self, ns: str, name: str, uid: str, pod: PodInfo | None, waited: float
    ) -> p.CniError:
        if pod is None:
            return p.CniError(
                p.ERR_ANNOTATION_TIMEOUT,
                f"pod {ns}/{name} is not known on node {self.node} after waiting {waited:g}s",
                "the agent watches pods with spec.nodeName="
                f"{self.node}; is the pod scheduled here and the API server reachable?",
            )
        if uid and pod.uid != uid:
            return p.CniError(
                p.ERR_POD_MISMATCH,
                f"pod {ns}/{name} has uid {pod.uid}, but the runtime asked for uid {uid}",
                f"waited {waited:g}s for the pod cache to catch up",
            )
        operator_error = pod.annotations.get(ERROR_ANNOTATION)
        try:
            self._sealed(pod)
        except SealError as e:
            return p.CniError(
                p.ERR_POD_MISMATCH,
                str(e),
                f"waited {waited:g}s for the ovnvnet operator's own result; the agent plumbs only "
                "a result the operator sealed for this pod"
                + (f"; the operator says: {operator_error}" if operator_error else ""),
            )
        except AnnotationError as e:
            return p.CniError(
                p.ERR_INVALID_CONFIG, f"pod {ns}/{name} has an unusable result: {e}"
            )
        if operator_error is not None:  # the operator is still retrying
            return p.CniError(
                p.ERR_ANNOTATION_TIMEOUT,
                f"timed out after {waited:g}s waiting for the ovnvnet operator to attach pod "
                f"{ns}/{name}: {operator_error}",
                "the operator retries by itself when that changes; the runtime will retry ADD",
            )
        if REQUEST_ANNOTATION in pod.annotations:
            return p.CniError(
                p.ERR_ANNOTATION_TIMEOUT,
                f"timed out after {waited:g}s waiting for the ovnvnet operator to write "
                f"{RESULT_ANNOTATION} (or {ERROR_ANNOTATION}) on pod {ns}/{name}",
                f"the pod requests {REQUEST_ANNOTATION}={pod.annotations[REQUEST_ANNOTATION]}; "
                "is the ovnvnet operator running and are the requested networks created?",
            )
        request = pod.annotations.get(LEGACY_ANNOTATION)
        asked = f" (it asks for {LEGACY_ANNOTATION}={request})" if request else ""
        return p.CniError(
            p.ERR_ANNOTATION_TIMEOUT,
            f"timed out after {waited:g}s: pod {ns}/{name} has no {REQUEST_ANNOTATION} "
            f"annotation and no {LEGACY_ANNOTATION} result (with gateway_ip) from the ovnvnet "
            f"operator{asked}",
            "a pod without ovnNetwork gets a single interface on the operator's default "
            "network: the operator needs OVNVNET_DEFAULT_NETWORK=<VirtualNetwork name> for "
            "legacy pods (or give the pod an ovnNetwork annotation)",
        )

    # --- commands -----------------------------------------------------------------------

    async def _refuse_other_node(self, req: p.CniRequest) -> None:
        """A pod bound to another node is that node's agent's to plumb: refused at once. Only a
        pod missing from this node's cache is looked up (one read), so an ADD here costs nothing."""
        ns, name, _ = self._pod_identity(req)
        pod = self.pods.get(ns, name) or await self.pods.lookup(ns, name)
        if pod is not None and pod.node and pod.node != self.node:
            raise p.CniError(
                p.ERR_POD_MISMATCH,
                f"pod {ns}/{name} is bound to node {pod.node} (spec.nodeName), not to this "
                f"node {self.node}: the ovnvnet agent serves only pods bound to its own node",
                f"the runtime of node {pod.node} must run this ADD, through that node's agent",
            )

    async def add(self, req: p.CniRequest) -> dict[str, Any]:
        """Plumb every interface: all veths in one thread call (one netlink socket per
        namespace), all OVS ports in one transaction, then one wait for ``ovn-installed``.
        The time of each phase goes to the log line of the request (``phases``)."""
        phases = _Phases()
        await self._refuse_other_node(req)
        ifaces = await self._interfaces_for(req, req.annotation_timeout)
        ns, name, uid = self._pod_identity(req)
        pod = self.pods.get(ns, name)
        pod_uid = uid or (pod.uid if pod else "")
        phases.mark("pod")
        try:
            links = await asyncio.to_thread(
                ensure_interfaces, self.host_netns, req.netns, req.container_id,
                [iface for iface, _ in ifaces],
            )
        except FileNotFoundError as e:
            raise p.CniError(
                p.ERR_INVALID_ENV, f"network namespace {req.netns} does not exist", str(e)
            ) from None
        except InterfaceFailed as e:
            raise p.CniError(
                p.ERR_PLUMBING, f"cannot plumb interface {e.interface}: {e.error}"
            ) from None
        phases.mark("links")
        attachment = attachment_name(req, [i for i, _ in ifaces])
        bindings = [
            (PortBinding(
                port_name=link.host_name,
                lsp_name=lsp,
                mac=iface.mac,
                container_id=req.container_id,
                netns=req.netns,
                pod_namespace=ns,
                pod_name=name,
                pod_uid=pod_uid,
                interface=iface.interface,
                attachment=attachment,
                entry=entry_digest(iface),
            ), link.recreated)
            for (iface, lsp), link in zip(ifaces, links, strict=True)
        ]
        try:
            await asyncio.to_thread(self.ovs.ensure_ports, bindings)
        except Exception as e:  # noqa: BLE001 - ovsdbapp raises several kinds
            names = ", ".join(f"{b.port_name} for {b.interface}" for b, _ in bindings)
            raise p.CniError(
                p.ERR_TRY_AGAIN_LATER, f"cannot add ports {names} to OVS: {e}",
            ) from None
        phases.mark("ovs")
        ports = [link.host_name for link in links]
        plumbed = [
            p.PlumbedInterface(
                name=iface.interface,
                mac=link.pod_mac,
                host_name=link.host_name,
                host_mac=link.host_mac,
                addresses=tuple((a.cidr, a.gateway) for a in iface.addresses),
                mtu=iface.mtu,
                routes=tuple(wanted_routes(iface)),
            )
            for (iface, _), link in zip(ifaces, links, strict=True)
        ]
        pending = await asyncio.to_thread(
            self.ovs.wait_installed, ports, req.ovn_installed_timeout
        )
        if pending:
            lsps = [lsp for (_, lsp), h in zip(ifaces, ports, strict=True) if h in pending]
            raise p.CniError(
                p.ERR_OVN_INSTALLED_TIMEOUT,
                f"ovn-controller did not mark OVS ports {', '.join(pending)} ovn-installed "
                f"within {req.ovn_installed_timeout:g}s",
                f"logical switch ports {', '.join(lsps)}: do they exist in the NB, and is "
                "ovn-controller on this node connected to the SB?",
            )
        phases.mark("installed")
        shown = p.result_subset(req.result_interfaces, req.ifname, plumbed)
        result = p.build_result(req.cni_version, req.netns, shown)
        phases.mark("result")
        self.last_phases = phases.spent  # logged by handle() (no await in between)
        return result

    async def delete(self, req: p.CniRequest) -> None:
        """Every interface of the container; or, when its ports were plumbed one attachment per
        call (they carry ``ATTACHMENT_KEY``), only this attachment's (its configuration name and
        ``CNI_IFNAME``): the pod's other attachments stay. Idempotent either way."""
        only: frozenset[str] | None = None
        try:
            owned = await asyncio.to_thread(self.ovs.ports_of_container, req.container_id)
            if any(ATTACHMENT_KEY in ids for _, ids in owned):
                owned = [(n, ids) for n, ids in owned if ids.get(ATTACHMENT_KEY) == req.config.get("name")
                         and ids.get(INTERFACE_KEY) == req.ifname]
                only = frozenset(n for n, _ in owned)
            await asyncio.to_thread(self.ovs.delete_ports, [name for name, _ in owned])
        except Exception as e:  # noqa: BLE001 - any failure is answered as a CNI error naming it
            raise p.CniError(
                p.ERR_TRY_AGAIN_LATER, f"cannot remove OVS ports of {req.container_id}: {e}"
            ) from None
        removed = await asyncio.to_thread(  # by the full container id, never a name prefix
            remove_container_links, self.host_netns, req.container_id, [n for n, _ in owned], only
        )
        log.debug("DEL %s: ports %s, links %s", req.container_id[:12], owned, removed)

    async def check(self, req: p.CniRequest) -> None:
        ifaces = await self._interfaces_for(req, 0.0)
        ns, name, _ = self._pod_identity(req)
        problems: list[str] = []
        for iface, lsp in ifaces:
            problems += await asyncio.to_thread(
                check_interface, self.host_netns, req.netns, req.container_id, iface
            )
            host = await asyncio.to_thread(
                find_host_veth, self.host_netns, req.container_id, iface.interface
            ) or host_veth_name(req.container_id, iface.interface)
            ids = await asyncio.to_thread(self.ovs.interface_ids, host)
            if ids is None:
                problems.append(f"OVS port {host} for {iface.interface} is missing")
            else:
                if ids.get(IFACE_ID) != lsp:
                    problems.append(f"OVS port {host} is bound to {ids.get(IFACE_ID)}, want {lsp}")
                if ids.get(OVN_INSTALLED) != "true":
                    problems.append(f"OVS port {host} ({lsp}) is not ovn-installed")
        if problems:
            raise p.CniError(
                p.ERR_CHECK_FAILED,
                f"pod {ns}/{name} does not match its ovnvnet annotation",
                "; ".join(problems),
            )


class _Phases:
    """Seconds spent in each phase of a request, in order (``mark`` ends the current one)."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self.spent: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        now = time.monotonic()
        self.spent[phase] = now - self._last
        self._last = now

    @staticmethod
    def text(spent: Mapping[str, float]) -> str:
        return ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in spent.items())


def _retrying(annotations: Mapping[str, str]) -> bool:
    """``ovnNetworkErrorRetry: "true"``: the operator retries by itself once something changes
    (a network appears or becomes ready, an address is freed); ADD keeps waiting and reports the
    operator's message only if the wait runs out."""
    return str(annotations.get(ERROR_RETRY_ANNOTATION, "")).lower() == "true"


# --- socket server ----------------------------------------------------------------------


async def _serve_connection(
    agent: Agent, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        data = await reader.read(MAX_REQUEST_BYTES + 1)
        while True:
            more = await reader.read(65536)
            if not more:
                break
            data += more
            if len(data) > MAX_REQUEST_BYTES:
                break
        try:
            if len(data) > MAX_REQUEST_BYTES:
                raise ValueError("request too large")
            msg = json.loads(data)
            env = {str(k): str(v) for k, v in msg["env"].items()}
            config = str(msg["config"])
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            err = p.CniError(p.ERR_DECODE, f"malformed request from the shim: {e}")
            code, out = 1, json.dumps(err.to_json("1.0.0"))
        else:
            code, out = await agent.handle(env, config)
        writer.write(f"{code}\n{out}".encode())
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def serve(agent: Agent, socket_path: str | Path) -> asyncio.AbstractServer:
    """Listen on ``socket_path`` (mode 0600, replacing a stale socket)."""
    path = Path(socket_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_socket() or path.exists():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise RuntimeError(f"{path} exists and is not a socket; refusing to replace it")
        path.unlink()
    old = os.umask(0o077)  # never let the socket exist with wider permissions, even briefly
    try:
        server = await asyncio.start_unix_server(
            lambda r, w: _serve_connection(agent, r, w), path=str(path)
        )
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return server


def _load_static_pods(path: str) -> list[PodInfo]:
    data = json.loads(Path(path).read_text())
    return [
        PodInfo(
            namespace=item["namespace"],
            name=item["name"],
            uid=item.get("uid", ""),
            annotations=item.get("annotations", {}),
        )
        for item in data
    ]


async def _run(args: argparse.Namespace, seal_key: bytes) -> None:
    pods: PodSource
    reporter: Reporter
    if args.static_pods:
        pods = StaticPodSource(_load_static_pods(args.static_pods))
        reporter = MemoryReporter()
    else:
        conn = connect(KubeAccess.from_env(kubeconfig=args.kubeconfig))
        pods = KubePodSource(args.node, conn)
        reporter = KubeReporter(KubeClient(conn))
    await pods.start()
    ovs = await asyncio.to_thread(OvsPorts, args.ovs_db, args.bridge)
    agent = Agent(args.node, pods, ovs, host_netns=args.host_netns, seal_key=seal_key)
    converger = Converger(agent, reporter, resync=args.resync)
    await converger.start()
    server = await serve(agent, args.socket)
    log.info("ovnvnet node agent for %s listening on %s", args.node, args.socket)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main_pid = os.getpid()

    def on_signal(signum: int, frame: Any) -> None:
        # Not loop.add_signal_handler: its wakeup fd is inherited by the short-lived children
        # pyroute2 forks to enter network namespaces, and a signal delivered to such a child
        # would then stop *this* process. A plain handler runs in whichever process got it.
        if os.getpid() == main_pid:
            loop.call_soon_threadsafe(stop.set)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    await stop.wait()
    server.close()
    await server.wait_closed()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.socket)
    await converger.stop()
    if isinstance(reporter, KubeReporter):
        await reporter.kube.close()
    await pods.stop()
    ovs.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ovnvnet.cni.agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--node", required=True, help="this node's name (spec.nodeName)")
    parser.add_argument("--socket", default="/var/run/ovnvnet/cni.sock")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster config)")
    parser.add_argument("--static-pods", metavar="FILE",
                        help="JSON list of {namespace,name,uid,annotations} instead of the API "
                             "server (tests, demos)")
    parser.add_argument("--ovs-db", default="unix:/var/run/openvswitch/db.sock")
    parser.add_argument("--bridge", default="br-int")
    parser.add_argument("--host-netns", help="netns of ovs-vswitchd (default: our own)")
    parser.add_argument("--seal-key-file", default=seal_key_file(),
                        help="the operator's seal key (default: $OVNVNET_SEAL_KEY_FILE; required)")
    parser.add_argument("--resync", type=float, default=DEFAULT_RESYNC, metavar="SECONDS",
                        help="hot-plug: converge every plumbed sandbox on its pod's result this "
                             "often, besides on every pod change (default %(default)g)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:  # before anything starts: without the key no result can be trusted
        seal_key = read_seal_key(args.seal_key_file, "--seal-key-file/OVNVNET_SEAL_KEY_FILE")
    except SealKeyError as e:
        parser.exit(2, f"ovnvnet node agent: {e}\n")
    asyncio.run(_run(args, seal_key))


if __name__ == "__main__":
    main()
