"""The operator's in-memory state: one allocator per network, the attached pods, and the clients.

All allocator operations are synchronous and run on the event loop, so between two `await`s they
are atomic; that is what keeps concurrent pods from ever getting the same address. Blocking NB
commits run in threads (`nb_call`).
"""
from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import netaddr

from ovnvnet.config import Settings
from ovnvnet.ipam.allocator import Holder, NetworkAllocator
from ovnvnet.kube.client import KubeClient
from ovnvnet.kube.status import StatusWriter
from ovnvnet.model import names
from ovnvnet.model.annotation import NETWORKS_ANNOTATION, InterfaceResult
from ovnvnet.model.blocks import block_name, block_span
from ovnvnet.model.iptext import ip_value
from ovnvnet.model.network import NetworkSpec, family_name
from ovnvnet.model.records import BlockRef, owner_reference
from ovnvnet.model.selector import LabelSelector
from ovnvnet.ovn.batch import NbBatcher
from ovnvnet.ovn.nb import NbClient, PortSpec, RouterPortSpec, SwitchSpec
from ovnvnet.reconcile.errors import RequestRefused

log = logging.getLogger(__name__)

BLOCK_MEMO = 4096
"""How many IPBlock references `State.block_of` remembers (one per block: 4096 blocks of 256)."""

MAX_JSON_INT = 2**53 - 1
"""The largest count a JSON reader holding numbers as doubles reads exactly."""


@dataclass
class PodRecord:
    namespace: str
    name: str
    uid: str
    results: list[InterfaceResult]
    legacy: bool = False                # a single-interface pod on the default network (`ovn` annotation)
    # the request these results serve: (ovnNetwork, networks) as last seen served (None: not known
    # yet, e.g. a record restored at the rebuild; pod.request_changed compares it by meaning once)
    request: tuple[str | None, str | None] | None = None
    # the sealed result annotation as written, by seal key (pod.result_annotation: a hot-plug change
    # makes a new record, so every later event of the pod compares against it without re-encoding)
    written: tuple[bytes, dict[str, str]] | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class Network:
    name: str
    spec: NetworkSpec  # the configuration in force in OVN
    allocator: NetworkAllocator
    body: dict[str, Any] = field(default_factory=dict)  # last seen object, for events
    selector: LabelSelector | None = None               # namespaces allowed to attach (None: all)


class State:
    def __init__(self, settings: Settings, kube: KubeClient, nb: NbClient, *, seal_key: bytes):
        self.settings = settings
        self.seal_key = seal_key                        # results are sealed with it (model/annotation.py)
        self.kube = kube
        self.nb = nb
        self.networks: dict[str, Network] = {}          # applied networks (allocator ready)
        self.known_networks: set[str] = set()           # VirtualNetwork objects that exist
        self.network_problems: dict[str, str] = {}      # name -> why it is not ready
        self.attached: dict[str, PodRecord] = {}        # pod uid -> record
        self.holdings: dict[str, set[tuple[str, str]]] = {}   # pod uid -> {(network, ip)} incl. not yet attached
        self.pending: dict[str, tuple[str, str]] = {}   # pod uid -> (namespace, name) waiting for a retry
        self.errors: dict[str, str] = {}                # pod uid -> last error message written
        self.refused: dict[str, RequestRefused] = {}    # pod uid -> refused for the pod's life (forged result)
        self.orphan_suspects: set[str] = set()          # pod uids seen orphaned by the previous sweep
        self.claims_scaled_down: dict[str, float] = {}  # IPClaim uid -> when seen beyond its set's replicas
        # IPClaims (reconcile/claims.py): uid -> {(network, ip)} held for it, by a pod or by itself
        # (kept by hold/unhold: who uses a claim is a lookup, not a scan); the claims whose status
        # is to be written (set by hold/unhold, written by claims.report_loop); the claim objects
        # as last seen (claims.ClaimWatch); why a claim holds nothing; claims seen deleted
        self.claim_index: dict[str, set[tuple[str, str]]] = {}
        self.claims_dirty: set[str] = set()
        self.claims_changed = asyncio.Event()
        self.claim_objects: dict[str, dict[str, Any]] = {}
        self.claim_problems: dict[str, tuple[str, str]] = {}
        self.claims_deleted: set[str] = set()
        self.inflight_ports: set[str] = set()           # allocated, NB commit not done yet: not drift
        self.locks: dict[str, asyncio.Lock] = {}
        self.ready = asyncio.Event()
        # networks whose pods' results are still being restored at start (recovery.finish_rebuild):
        # nothing is allocated or released on them until their event is set (see wait_rebuilt)
        self.rebuilding: dict[str, asyncio.Event] = {}
        self.wake = asyncio.Event()
        self.status = StatusWriter(kube, self.counters, self.block_of, delay=settings.status_flush_delay)
        self.nb_lock = asyncio.Lock()
        self.nb_batch = NbBatcher(nb, self.nb_lock, self.nb_call)
        self._ns_cache: dict[str, tuple[float, dict[str, str]]] = {}
        self._block_refs: dict[tuple[str, str | None, int, int, int], BlockRef] = {}   # see block_of

    # ------------------------------------------------------------------ rebuild gate
    def networks_named(self, annotations: dict[str, Any]) -> list[str]:
        """The networks still rebuilding that a pod's annotations may concern: those whose name
        appears in any annotation value (a superset of the networks its request and result name:
        a result or request names its networks verbatim); all of them when the pod may get a
        network without naming it (a Multus ``networks`` element naming an attachment definition,
        or the default network)."""
        if not self.rebuilding:
            return []
        texts = [v for v in annotations.values() if isinstance(v, str)]
        if self.settings.default_network or any(k == NETWORKS_ANNOTATION for k in annotations):
            return list(self.rebuilding)
        return [n for n in self.rebuilding if any(n in t for t in texts)]

    async def wait_rebuilt(self, annotations: dict[str, Any]) -> bool:
        """Wait until every network a pod's annotations may concern is rebuilt (its pods' results
        restored). Returns whether it waited."""
        waiting = self.networks_named(annotations)
        for name in waiting:
            event = self.rebuilding.get(name)
            if event is not None:
                await event.wait()
        return bool(waiting)

    def network_rebuilt(self, name: str) -> None:
        event = self.rebuilding.pop(name, None)
        if event is not None:
            event.set()

    # ------------------------------------------------------------------ helpers
    def pod_lock(self, uid: str) -> asyncio.Lock:
        lock = self.locks.get(uid)
        if lock is None:
            lock = self.locks[uid] = asyncio.Lock()
        return lock

    async def namespace_labels(self, namespace: str) -> dict[str, str]:
        """Labels of a namespace (cached briefly: only read for networks with a namespaceSelector)."""
        now = asyncio.get_running_loop().time()
        hit = self._ns_cache.get(namespace)
        if hit is not None and now - hit[0] < 5.0:
            return hit[1]
        body = await self.kube.get(f"/api/v1/namespaces/{namespace}")
        labels = (body.get("metadata") or {}).get("labels") or {}
        self._ns_cache[namespace] = (now, labels)
        return labels

    async def nb_call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    def counters(self, network: str) -> dict[str, Any]:
        """The status counters. ``usedIPs``/``availableIPs``/``cursor`` are the primary family's
        (IPv4 when the network has it: what they always meant), integers; ``availableIPs`` is left
        out (null) when the count does not fit a JSON number exactly (above 2**53 - 1: an IPv6
        /64). ``families`` has every family's exact counts as decimal strings."""
        net = self.networks.get(network)
        if net is None:
            return {}
        a = net.allocator
        families = []
        for fam in net.spec.families:
            fa = a.families[fam.version]
            families.append({"family": family_name(fam.version), "subnet": str(fam.subnet),
                             "gateway": str(fam.gateway), "usedIPs": str(fa.used),
                             "availableIPs": str(fa.available), "cursor": str(fam.address(fa.cursor))})
        available = a.available
        return {"usedIPs": a.used, "availableIPs": available if available <= MAX_JSON_INT else None,
                "cursor": str(net.spec.address(a.cursor)), "families": families}

    def block_of(self, network: str, ip: str) -> BlockRef | None:
        """The IPBlock recording `ip` on `network` (None: not an address of one of its families).
        Every attach and release asks this once per address, so the answer is computed on ints
        and remembered per block (its name, CIDR and owner depend only on the network's name and
        uid, the block's first address and prefix: the key); the memo is emptied when it grows
        past BLOCK_MEMO entries (networks deleted and recreated leave old keys behind)."""
        net = self.networks.get(network)
        parsed = ip_value(ip)
        fam = net.spec.family(parsed[0]) if net is not None and parsed is not None else None
        if net is None or fam is None or parsed is None:
            return None
        first, prefix = block_span(fam.subnet, parsed[0], parsed[1])
        uid = (net.body.get("metadata") or {}).get("uid")
        key = (network, uid, parsed[0], first, prefix)
        ref = self._block_refs.get(key)
        if ref is None:
            cidr = netaddr.IPNetwork((first, prefix), version=parsed[0])
            owner = owner_reference({"name": network, "uid": uid}) if uid else None
            if len(self._block_refs) >= BLOCK_MEMO:
                self._block_refs.clear()
            ref = self._block_refs[key] = BlockRef(block_name(network, cidr), network, str(cidr), owner)
        return ref

    # ------------------------------------------------------------------ holdings
    def hold(self, network: str, ip: str, holder: Holder, *, record_status: bool = True) -> None:
        """Book-keeping after the allocator accepted (network, ip) for holder."""
        self.holdings.setdefault(holder.pod_uid, set()).add((network, ip))
        if holder.claim_uid:
            self.claim_index.setdefault(holder.claim_uid, set()).add((network, ip))
            self.claim_changed(holder.claim_uid)
        if record_status:
            self.status.set_allocation(network, ip, status_entry(holder))

    def unhold(self, network: str, ip: str) -> Holder | None:
        net = self.networks.get(network)
        holder = net.allocator.release(ip) if net else None
        if holder is not None:
            held = self.holdings.get(holder.pod_uid)
            if held is not None:
                held.discard((network, ip))
                if not held:
                    del self.holdings[holder.pod_uid]
            claimed = self.claim_index.get(holder.claim_uid) if holder.claim_uid else None
            if claimed is not None:
                claimed.discard((network, ip))
                if not claimed:
                    del self.claim_index[holder.claim_uid]
                self.claim_changed(holder.claim_uid)
        self.status.set_allocation(network, ip, None)
        self.wake.set()
        return holder

    def claim_changed(self, uid: str) -> None:
        """An IPClaim's holding changed: its status is written soon (claims.report_loop)."""
        self.claims_dirty.add(uid)
        self.claims_changed.set()

    def holders_of_network(self, network: str) -> dict[str, Holder]:
        net = self.networks.get(network)
        return net.allocator.holders() if net else {}


def status_entry(holder: Holder) -> dict[str, str]:
    entry = {"pod": holder.pod, "podUID": holder.pod_uid, "interface": holder.interface, "mac": holder.mac}
    if holder.claim:   # held for an IPClaim (reconcile/claims.py): the record says which
        entry.update(claim=holder.claim, claimUID=holder.claim_uid)
    return entry


def port_name_of(holder: Holder) -> str:
    ns, _, pod = holder.pod.partition("/")
    return names.port_name(ns, pod, holder.interface)


def port_spec(network: str, ips: str | list[str] | tuple[str, ...], holder: Holder) -> PortSpec:
    """The port of one pod interface holding ``ips`` (one address per family, IPv4 first)."""
    ns, _, pod = holder.pod.partition("/")
    ids = {
        names.OWNER_KEY: names.OWNER_VALUE, names.NETWORK_KEY: network,
        names.POD_NAMESPACE_KEY: ns, names.POD_NAME_KEY: pod,
        names.POD_UID_KEY: holder.pod_uid, names.INTERFACE_KEY: holder.interface,
    }
    if holder.claim:   # the first record of a claim's use: recovery re-links the address to its claim
        ids.update({names.CLAIM_KEY: holder.claim, names.CLAIM_UID_KEY: holder.claim_uid})
    text = ips if isinstance(ips, str) else " ".join(ips)
    return PortSpec(names.port_name(ns, pod, holder.interface), network, holder.mac, text, tuple(sorted(ids.items())))


def port_specs(taken: list[tuple[str, str, Holder]]) -> list[PortSpec]:
    """One port per interface from per-address (network, ip, holder) entries (in family order)."""
    grouped: dict[tuple[str, str], tuple[list[str], Holder]] = {}
    for network, ip, holder in taken:
        grouped.setdefault((network, port_name_of(holder)), ([], holder))[0].append(ip)
    return [port_spec(network, ips, holder) for (network, _), (ips, holder) in grouped.items()]


def network_rows(name: str, spec: NetworkSpec) -> tuple[SwitchSpec, RouterPortSpec | None]:
    """The NB rows of a network: its switch and, when routed, its port on the shared router
    holding the gateway of every family (networks route to each other over each family)."""
    other = {"mtu": str(spec.mtu)} if spec.mtu else {}
    if not spec.routed:
        return SwitchSpec(name, other), None
    rp = RouterPortSpec(
        network=name, lrp_name=names.router_port_name(name), lsp_name=names.switch_router_port_name(name),
        mac=names.mac_from_ip(spec.gateway),
        cidrs=tuple(f"{f.gateway}/{f.prefix_length}" for f in spec.families),
    )
    return SwitchSpec(name, other), rp
