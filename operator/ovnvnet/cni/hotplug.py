"""Hot-plug (issue 16, the node side): each sandbox converges on its pod's sealed ``ovnIfaceList``.

The agent remembers every sandbox it plumbed in the OVS Interfaces of its ports (cni/ovs.py):
``ovnvnet.io/sandbox`` (the CNI container id), ``ovnvnet.io/netns`` (the netns path from ADD),
the pod's namespace, name and UID, the interface, and ``ovnvnet.io/entry`` (a digest of the
result entry the port was plumbed from). That record is written with the port in one OVSDB
transaction, kept on disk by ovsdb-server across agent and OVS restarts, and removed with the
port by DEL: DEL forgets the sandbox, and no separate state file can drift from what is plumbed.

:class:`Converger` runs, for one pod, level-driven (it reads the current state, never an event's
payload):

- each sandbox recorded for the pod (same UID; its netns still there; not plumbed one attachment
  per call by Multus, whose DEL/ADD own those) is compared with the pod's result, trusted only
  when the operator sealed it for the pod's UID (``sealed_result``; an unsealed or forged result
  is never acted on: one Warning ``HotplugRefused`` per distinct value). A legacy ``ovn``
  result is not hot-plugged. A terminating pod (deletionTimestamp) is left alone: never plugged.
- interfaces in the result but not plumbed are added (veth into the netns, MAC, addresses, MTU,
  routes, OVS port with ``iface-id``), interfaces plumbed but no longer in the result are removed
  (OVS port, then the veth; its pod end goes with it), an interface whose entry changed (another
  digest) is removed, then added with the new values. The added ports are awaited together for
  ``ovn-installed``. An add that fails is undone (nothing half-plumbed) and retried by the next
  pass.
- the outcome is reported on the pod: a Normal Event ``InterfaceAdded`` / ``InterfaceRemoved``
  per interface (a Warning ``InterfacePlugFailed`` with the error, posted again only when it
  changes or after a success), and the annotation
  ``ovnvnet.io/plumbed``: JSON ``{"<interface>": "plumbed" | "pending" | "failed"}`` of the
  result's interfaces (``pending``: its port is not ``ovn-installed`` yet), written only when it
  changes.

Each sandbox is converged under the agent's per-container lock, the one ADD, DEL and CHECK take:
no converge step interleaves with a CNI call on that sandbox, and the recorded ports are re-read
once the lock is held (a DEL that ran first leaves nothing to converge).

Triggers: every change of the pod in the agent's pod cache (the watch; a relist fires every pod),
the end of each ADD, and a periodic resync of every recorded sandbox (``--resync``, 30 s by
default; also right at start), so a change made while the agent was down or a missed watch event
converges all the same. Passes for one pod never overlap; a trigger during a pass runs one more;
at most four passes run at once, so a resync never crowds out CNI calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..model.annotation import (
    SEAL_ANNOTATION,
    AnnotationError,
    InterfaceResult,
    SealError,
    result_key,
)
from ..model.names import (
    INTERFACE_KEY,
    POD_NAME_KEY,
    POD_NAMESPACE_KEY,
    POD_UID_KEY,
    port_name,
)
from .netlink import PlumbingError, _owner_id, ensure_interface, owned_links, remove_interface
from .ovs import (
    ATTACHMENT_KEY,
    ENTRY_KEY,
    NETNS_KEY,
    OVN_INSTALLED,
    SANDBOX_KEY,
    OvsPorts,
    PortBinding,
    entry_digest,
)
from .pods import PodInfo

if TYPE_CHECKING:
    from ..kube.client import KubeClient
    from .agent import Agent

__all__ = [
    "STATUS_ANNOTATION",
    "Converger",
    "KubeReporter",
    "MemoryReporter",
    "Plan",
    "Reporter",
    "Sandbox",
    "leaks",
    "plan",
    "sandboxes",
]

log = logging.getLogger("ovnvnet.cni.hotplug")

STATUS_ANNOTATION = "ovnvnet.io/plumbed"
PLUMBED, PENDING, FAILED = "plumbed", "pending", "failed"
DEFAULT_RESYNC = 30.0
PARALLEL_PASSES = 4

PodKey = tuple[str, str]


@dataclass(frozen=True)
class Sandbox:
    """A sandbox as recorded in its OVS ports: interface -> (OVS port name, external_ids)."""

    container_id: str
    netns: str
    namespace: str
    name: str
    uid: str
    ports: Mapping[str, tuple[str, Mapping[str, str]]] = field(default_factory=dict)

    @property
    def per_attachment(self) -> bool:
        """Plumbed one attachment per call (Multus): those interfaces are Multus's to change."""
        return any(ATTACHMENT_KEY in ids for _, ids in self.ports.values())


def sandboxes(ports: list[tuple[str, Mapping[str, str]]]) -> list[Sandbox]:
    """Group recorded ports by sandbox (container id), in container id order."""
    by_cid: dict[str, list[tuple[str, Mapping[str, str]]]] = {}
    for name, ids in ports:
        by_cid.setdefault(ids[SANDBOX_KEY], []).append((name, ids))
    out = []
    for cid in sorted(by_cid):
        rows = by_cid[cid]
        first = rows[0][1]
        out.append(Sandbox(
            container_id=cid, netns=first.get(NETNS_KEY, ""),
            namespace=first.get(POD_NAMESPACE_KEY, ""), name=first.get(POD_NAME_KEY, ""),
            uid=first.get(POD_UID_KEY, ""),
            ports={ids.get(INTERFACE_KEY, ""): (name, ids) for name, ids in rows},
        ))
    return out


@dataclass(frozen=True)
class Plan:
    remove: tuple[str, ...]  # interface names, removed first
    add: tuple[InterfaceResult, ...]
    replaced: frozenset[str]  # in both: their entry changed

    @property
    def empty(self) -> bool:
        return not self.remove and not self.add


def plan(desired: list[InterfaceResult], plumbed: Mapping[str, Mapping[str, str]]) -> Plan:
    """What turns the plumbed interfaces (name -> their port's external_ids) into ``desired``.

    A port without a recorded entry digest (plumbed by an agent before hot-plug existed) counts
    as matching its entry: it is never replumbed only for lack of a digest."""
    want = {i.interface: i for i in desired}
    remove = [n for n in sorted(plumbed) if n not in want]
    changed = [n for n in sorted(plumbed) if n in want
               and plumbed[n].get(ENTRY_KEY, entry_digest(want[n])) != entry_digest(want[n])]
    add = [i for i in desired if i.interface not in plumbed or i.interface in changed]
    return Plan(tuple(remove + changed), tuple(add), frozenset(changed))


def leaks(host_netns: str | None, ovs: OvsPorts) -> list[str]:
    """What is plumbed on this node but inconsistent, for an audit of a quiet node (an ADD, DEL or
    pass in progress is inconsistent for a moment): an ovnvnet OVS port without its host veth, an
    ovnvnet host veth without its OVS port, a veth left under a temporary name. Empty: clean."""
    ports = ovs.owned_ports()
    links, temporary = owned_links(host_netns)
    problems = []
    for name, ids in ports:
        owner = (_owner_id(ids.get(SANDBOX_KEY, "")), ids.get(INTERFACE_KEY, ""))
        if links.get(name) != owner:
            problems.append(f"OVS port {name} (container {ids.get(SANDBOX_KEY, '')[:12]}, interface "
                            f"{ids.get(INTERFACE_KEY)}) has no host veth recorded for it")
    names = {name for name, _ in ports}
    for name, (recorded, iface) in sorted(links.items()):
        if name not in names:
            problems.append(f"host veth {name} (container {recorded[:12]}, interface {iface}) has no "
                            "OVS port")
    problems += [f"veth {name} left under its temporary name" for name in temporary]
    return problems


# --- reporting ---------------------------------------------------------------------------


class Reporter(Protocol):
    """Where the outcome goes: the pod's Events and its status annotation."""

    async def event(self, pod: PodInfo, type_: str, reason: str, message: str) -> None: ...

    async def set_status(self, pod: PodInfo, value: str) -> bool:
        """Write the status annotation; False when it could not (the next pass retries)."""
        ...


class MemoryReporter:
    """Keeps what would be reported (tests, ``--static-pods``); also logs it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str, str]] = []  # (pod, type, reason, message, uid)
        self.status: dict[PodKey, str] = {}

    async def event(self, pod: PodInfo, type_: str, reason: str, message: str) -> None:
        log.info("event %s/%s %s %s: %s", pod.namespace, pod.name, type_, reason, message)
        self.events.append((f"{pod.namespace}/{pod.name}", type_, reason, message, pod.uid))

    async def set_status(self, pod: PodInfo, value: str) -> bool:
        self.status[(pod.namespace, pod.name)] = value
        return True


class KubeReporter:
    """Events through the API, the status annotation by a merge patch with the pod's UID as a
    precondition (a same-name successor is never annotated). Failures are logged, not raised:
    the next pass writes the annotation again if it still differs."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube

    @staticmethod
    def _obj(pod: PodInfo) -> dict:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"namespace": pod.namespace, "name": pod.name, "uid": pod.uid}}

    async def event(self, pod: PodInfo, type_: str, reason: str, message: str) -> None:
        try:
            await self.kube.post_event(self._obj(pod), type_=type_, reason=reason,
                                       message=message, component="ovnvnet-agent")
        except Exception as e:  # noqa: BLE001 - an Event is best effort
            log.warning("cannot post event %s on %s/%s: %s", reason, pod.namespace, pod.name, e)

    async def set_status(self, pod: PodInfo, value: str) -> bool:
        try:
            await self.kube.patch_pod_annotations(pod.namespace, pod.name, pod.uid,
                                                  {STATUS_ANNOTATION: value})
        except Exception as e:  # noqa: BLE001 - retried by the next pass
            log.warning("cannot write %s on %s/%s: %s", STATUS_ANNOTATION, pod.namespace,
                        pod.name, e)
            return False
        return True


# --- the converge ------------------------------------------------------------------------


@dataclass
class Outcome:
    """One pass over one sandbox: what was done, and how long the plug took."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


class Converger:
    """Converges every sandbox the agent plumbed on its pod's sealed result (module docstring)."""

    def __init__(self, agent: Agent, reporter: Reporter, *, resync: float = DEFAULT_RESYNC,
                 installed_timeout: float = 30.0) -> None:
        self.agent = agent
        self.reporter = reporter
        self.resync = resync
        self.installed_timeout = installed_timeout
        self._tasks: dict[PodKey, asyncio.Task[None]] = {}
        # passes running at once: a resync of hundreds of pods must not fill the thread pool
        # that CNI calls share (ADD's netlink and OVSDB work waits behind it otherwise)
        self._slots = asyncio.Semaphore(PARALLEL_PASSES)
        self._again: set[PodKey] = set()
        self._resync_task: asyncio.Task[None] | None = None
        # status written per pod (namespace, name, uid): (value, seen back on the pod)
        self._reported: dict[tuple[str, str, str], tuple[str, bool]] = {}
        self._refused: dict[tuple[str, str, str], str] = {}
        # the last failure said per pod and interface: a failure repeated by every resync is
        # logged each time but posted as a Warning once (again when it changes)
        self._failures: dict[tuple[str, str, str], dict[str, str]] = {}
        self.passes: dict[PodKey, int] = {}  # completed passes per pod (tests wait on it)

    async def start(self) -> None:
        self.agent.pods.subscribe(self.kick)
        self.agent.after_add = self.kick
        self._resync_task = asyncio.create_task(self._resync_loop(), name="hotplug-resync")

    async def stop(self) -> None:
        tasks = [t for t in (self._resync_task, *self._tasks.values()) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    def kick(self, key: PodKey) -> None:
        """Converge this pod soon (on the agent's loop); coalesces with a pass in progress."""
        if key in self._tasks:
            self._again.add(key)
            return
        self._tasks[key] = asyncio.ensure_future(self._run(key))

    async def _run(self, key: PodKey) -> None:
        try:
            while True:
                self._again.discard(key)
                try:
                    await self.converge_pod(*key)
                except Exception:
                    log.exception("hot-plug converge of %s/%s failed", *key)
                self.passes[key] = self.passes.get(key, 0) + 1
                if key not in self._again:
                    return
        finally:
            self._tasks.pop(key, None)

    async def _resync_loop(self) -> None:
        while True:
            if self.agent.pods.synced:
                try:
                    await self.resync_all()
                except Exception:
                    log.exception("hot-plug resync failed")
            await asyncio.sleep(self.resync)

    async def resync_all(self) -> None:
        """Kick every pod with a recorded sandbox on this node."""
        ports = await asyncio.to_thread(self.agent.ovs.owned_ports)
        for sb in sandboxes(ports):
            if sb.namespace and sb.name:
                self.kick((sb.namespace, sb.name))

    async def converge_pod(self, namespace: str, name: str) -> list[Outcome]:
        if self.agent.pods.get(namespace, name) is None:  # gone: forget what was reported
            for memo in (self._reported, self._refused, self._failures):
                for k in [k for k in memo if k[:2] == (namespace, name)]:
                    del memo[k]
        match = {POD_NAMESPACE_KEY: namespace, POD_NAME_KEY: name}
        async with self._slots:
            ports = await asyncio.to_thread(self.agent.ovs.owned_ports, match)
        outcomes = []
        for sb in sandboxes(ports):
            out = await self.converge_sandbox(sb.container_id, namespace, name)
            if out is not None:
                outcomes.append(out)
        return outcomes

    def _desired(self, pod: PodInfo) -> list[InterfaceResult] | None:
        """The pod's sealed interfaces; None when there is nothing to act on."""
        try:
            result = self.agent._sealed(pod)
        except SealError as e:
            self._refuse(pod, str(e))
            return None
        except AnnotationError as e:
            self._refuse(pod, f"the pod's result is unusable: {e}")
            return None
        if result is None or result.legacy or not result.interfaces:
            return None
        return list(result.interfaces)

    def _refuse(self, pod: PodInfo, why: str) -> None:
        """Say once per distinct result value (and reason) why it is not acted on."""
        key = (pod.namespace, pod.name, pod.uid)
        name = result_key(pod.annotations) or ""
        memo = f"{why}\0{name}\0{pod.annotations.get(name, '')}\0{pod.annotations.get(SEAL_ANNOTATION, '')}"
        if self._refused.get(key) == memo:
            return
        self._refused[key] = memo
        log.warning("hot-plug: not acting on %s/%s: %s", pod.namespace, pod.name, why)
        asyncio.ensure_future(self.reporter.event(
            pod, "Warning", "HotplugRefused",
            f"interfaces left as they are: {why}"))

    async def converge_sandbox(self, container_id: str, namespace: str, name: str
                               ) -> Outcome | None:
        """One pass over one sandbox under its container lock; None when it is left alone."""
        # the slot only once the lock is held: a pass waiting behind an ADD holds no slot
        async with self.agent._container_lock(container_id), self._slots:
            rows = await asyncio.to_thread(self.agent.ovs.ports_of_container, container_id)
            if not rows:
                return None  # DEL ran first: forgotten
            sb = sandboxes(rows)[0]
            pod = self.agent.pods.get(namespace, name)
            if (pod is None or pod.deleting or sb.per_attachment or not sb.netns
                    or (sb.uid and pod.uid != sb.uid)):
                return None
            if not os.path.exists(sb.netns):
                log.debug("sandbox %s of %s/%s: netns %s is gone; left to DEL",
                          container_id[:12], namespace, name, sb.netns)
                return None
            desired = self._desired(pod)
            if desired is None:
                return None
            self._refused.pop((pod.namespace, pod.name, pod.uid), None)
            todo = plan(desired, {n: ids for n, (_, ids) in sb.ports.items()})
            out = Outcome()
            started = time.monotonic()
            if not todo.empty:
                await self._apply(sb, pod, todo, out)
            out.seconds = time.monotonic() - started
            out.status = await self._status(container_id, desired, out)
        await self._report(pod, sb, todo, out)
        return out

    async def _apply(self, sb: Sandbox, pod: PodInfo, todo: Plan, out: Outcome) -> None:
        host_netns, ovs = self.agent.host_netns, self.agent.ovs
        for gone in todo.remove:
            await asyncio.to_thread(ovs.delete_ports, [sb.ports[gone][0]])
            await asyncio.to_thread(remove_interface, host_netns, sb.container_id, gone)
            out.removed.append(gone)
        added: dict[str, str] = {}  # interface -> OVS port
        for iface in todo.add:
            try:
                link = await asyncio.to_thread(
                    ensure_interface, host_netns, sb.netns, sb.container_id, iface)
            except (PlumbingError, OSError) as e:
                out.failed[iface.interface] = f"cannot plumb interface {iface.interface}: {e}"
                await self._undo(sb, iface.interface)
                continue
            binding = PortBinding(
                port_name=link.host_name, lsp_name=port_name(pod.namespace, pod.name, iface.interface),
                mac=iface.mac, container_id=sb.container_id, netns=sb.netns,
                pod_namespace=pod.namespace, pod_name=pod.name, pod_uid=pod.uid,
                interface=iface.interface, entry=entry_digest(iface))
            try:
                await asyncio.to_thread(ovs.ensure_port, binding, link.recreated)
            except Exception as e:  # noqa: BLE001 - ovsdbapp raises several kinds
                out.failed[iface.interface] = (
                    f"cannot add port {link.host_name} for {iface.interface} to OVS: {e}")
                await self._undo(sb, iface.interface, link.host_name)
                continue
            added[iface.interface] = link.host_name
        if added:
            pending = await asyncio.to_thread(
                ovs.wait_installed, list(added.values()), self.installed_timeout)
            for iface_name, port in added.items():
                if port in pending:
                    out.failed[iface_name] = (
                        f"OVS port {port} for {iface_name} "
                        f"({port_name(pod.namespace, pod.name, iface_name)}) is not ovn-installed "
                        f"after {self.installed_timeout:g}s; it stays plumbed and is reported "
                        f"{PENDING} until ovn-controller installs it")
                else:
                    out.added.append(iface_name)

    async def _undo(self, sb: Sandbox, interface: str, port: str | None = None) -> None:
        """Nothing half-plumbed: the port and veth of a failed add go again."""
        with contextlib.suppress(Exception):
            if port:
                await asyncio.to_thread(self.agent.ovs.delete_ports, [port])
            await asyncio.to_thread(remove_interface, self.agent.host_netns, sb.container_id,
                                    interface)

    async def _status(self, container_id: str, desired: list[InterfaceResult], out: Outcome
                      ) -> dict[str, str]:
        rows = await asyncio.to_thread(self.agent.ovs.ports_of_container, container_id)
        have = {ids.get(INTERFACE_KEY, ""): ids for _, ids in rows}
        status = {}
        for iface in desired:
            ids = have.get(iface.interface)
            if ids is None or ids.get(ENTRY_KEY, entry_digest(iface)) != entry_digest(iface):
                status[iface.interface] = FAILED if iface.interface in out.failed else PENDING
            elif ids.get(OVN_INSTALLED) == "true":
                status[iface.interface] = PLUMBED
            else:
                status[iface.interface] = PENDING
        return status

    async def _report(self, pod: PodInfo, sb: Sandbox, todo: Plan, out: Outcome) -> None:
        took = f"{out.seconds * 1000:.0f} ms"
        for iface in out.removed:
            why = " (its entry changed: replaced)" if iface in todo.replaced else ""
            await self.reporter.event(pod, "Normal", "InterfaceRemoved",
                                      f"removed interface {iface}{why} from sandbox "
                                      f"{sb.container_id[:12]}")
        for iface in out.added:
            entry = next(i for i in todo.add if i.interface == iface)
            addrs = ", ".join(a.cidr for a in entry.addresses)
            await self.reporter.event(pod, "Normal", "InterfaceAdded",
                                      f"added interface {iface} on network {entry.network} "
                                      f"({addrs}, {entry.mac}) to sandbox "
                                      f"{sb.container_id[:12]}: ovn-installed in {took}")
        said = self._failures.setdefault((pod.namespace, pod.name, pod.uid), {})
        for iface, why in out.failed.items():
            log.warning("hot-plug %s/%s: %s", pod.namespace, pod.name, why)
            if said.get(iface) != why:
                said[iface] = why
                await self.reporter.event(pod, "Warning", "InterfacePlugFailed", why)
        for iface in out.added + out.removed:
            said.pop(iface, None)
        if out.added or out.removed:
            log.info("hot-plug %s/%s sandbox %s: added %s, removed %s in %s",
                     pod.namespace, pod.name, sb.container_id[:12], out.added, out.removed, took)
        value = json.dumps(out.status, sort_keys=True, separators=(",", ":"))
        key = (pod.namespace, pod.name, pod.uid)
        current = self.agent.pods.get(pod.namespace, pod.name)
        on_pod = (current.annotations if current else pod.annotations).get(STATUS_ANNOTATION)
        if on_pod == value:
            self._reported[key] = (value, True)
            return
        if self._reported.get(key) == (value, False):
            return  # written; the watch has not brought it back yet
        # a new value, or ours overwritten by someone else since the cache showed it: (re)write
        if await self.reporter.set_status(pod, value):
            self._reported[key] = (value, False)
