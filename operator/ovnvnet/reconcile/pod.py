"""Pods: validate the `ovnNetwork` request, allocate, create ports, write `ovnIfaceList`; release.

Order of one attach, each step undone if a later one fails, so nothing half-done stays behind
(one undo stack per attach: each step pushes its undo, a success pops them all):
  1. validate the whole request (syntax, networks, static addresses) - nothing held yet;
  2. allocate every interface in the allocators (synchronous: atomic on the event loop);
  3. create every logical switch port in one NB transaction;
  4. write `ovnIfaceList` with a JSON-patch guarded by the pod UID;
  5. record the allocations in the networks' status (coalesced).
A crash between 3 and 4 leaves NB ports carrying the pod UID: the rebuild reserves them for that
pod and step 2 reuses them, so a restart never changes an address.

Failures say what they mean: a refusal (the pod's request cannot be served) is `RequestRefused`
and ends in `ovnNetworkError` + an Event; a transient failure is `RetryLater` and the pod is
retried by the pending loop (`retry_pending`, one pod's failure never stops the round).

Hot-plug (issue 16): a change of an attached pod's request is diffed against its record by
interface name (`plan_change`, pure): kept interfaces are untouched; added ones (new, or asked for
differently: removed and added again) go through steps 1-4 as one attach, all or nothing, after
the replaced ones (and removed ones whose static address or MAC an addition takes) were freed
in the allocators in the same synchronous step; the other removed ones are released once the new
result is written (`change_pod`). A refused change leaves the pod as it was and says why
(`ovnNetworkError`, Warning ``ChangeRefused``); a terminating pod is never changed.

At the rebuild the operator's records (NB ports, IPBlocks) are read first; `restore_claims` then
checks a pod's result annotation against them: it may only fill a gap no record contradicts, and
a result that claims another pod's recorded address is refused for the life of the pod.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import netaddr

from ovnvnet import metrics
from ovnvnet.ipam.allocator import AddressHeld, AllocationError, Holder, NetworkExhausted
from ovnvnet.kube.client import ApiError, retry
from ovnvnet.model import names
from ovnvnet.model.annotation import (
    ERROR_ANNOTATION,
    ERROR_RETRY_ANNOTATION,
    LEGACY_ANNOTATION,
    NETWORKS_ANNOTATION,
    REQUEST_ANNOTATION,
    RESULT_ANNOTATION,
    AnnotationError,
    IfaceAddress,
    InterfaceRequest,
    InterfaceResult,
    SealError,
    decode_iface_list,
    decode_legacy_result,
    encode_iface_list,
    encode_legacy_result,
    parse_legacy_request,
    pod_requests,
    result_key,
    sealed_annotations,
    sealed_result,
)
from ovnvnet.model.iptext import ip_text
from ovnvnet.model.network import NetworkSpec, family_name
from ovnvnet.ovn.nb import NotOwnedError, PortSpec
from ovnvnet.reconcile import claims
from ovnvnet.reconcile.errors import RequestRefused, RetryLater
from ovnvnet.reconcile.state import PodRecord, State, port_name_of, port_specs, status_entry

log = logging.getLogger(__name__)

# the keys, as the rest of reconcile/ spells them (defined in model/annotation.py)
TERMINAL_PHASES = ("Succeeded", "Failed")
GONE = (404, 409, 422)  # the pod, or the pod with that UID, no longer exists


__all__ = ["RequestRefused", "RetryLater"]  # re-exported: callers catch them from here


class AttachLog:
    """The INFO line of attached pods, one per ``window`` seconds naming every pod attached in it
    (a burst of pods costs one log record a second, not one each; each pod's addresses are logged
    at DEBUG)."""

    def __init__(self, window: float = 1.0, names: int = 100):
        self.window, self.names = window, names
        self.pods: list[str] = []
        self.started = 0.0

    def add(self, pod: str) -> None:
        if not self.pods:
            self.started = time.monotonic()
            try:
                asyncio.get_running_loop().call_later(self.window, self.flush)
            except RuntimeError:   # no loop (a synchronous caller): say it now
                self.pods.append(pod)
                self.flush()
                return
        self.pods.append(pod)

    def flush(self) -> None:
        pods, self.pods = self.pods, []
        if pods:
            more = f" and {len(pods) - self.names} more" if len(pods) > self.names else ""
            log.info("attached %d pod(s) in %.1fs: %s%s", len(pods), time.monotonic() - self.started,
                     ", ".join(pods[:self.names]), more)


ATTACH_LOG = AttachLog()


def pod_ident(body: dict) -> tuple[str, str, str]:
    meta = body.get("metadata", {})
    return meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", "")


def is_terminal(body: dict) -> bool:
    return body.get("status", {}).get("phase") in TERMINAL_PHASES


async def handle_pod(state: State, body: dict, event_type: str | None) -> None:
    """The single entry point for pod events (and retries)."""
    ns, name, uid = pod_ident(body)
    if not uid:
        return
    async with state.pod_lock(uid):
        if event_type == "DELETED" or is_terminal(body):
            await release_pod(state, uid, why="deleted" if event_type == "DELETED" else "finished")
            if event_type == "DELETED":
                state.locks.pop(uid, None)
            return
        refusal = state.refused.get(uid)
        if refusal is not None and uid not in state.attached:
            await _refuse(state, body, refusal)   # final for this pod: it must be recreated
            return
        annotations = body.get("metadata", {}).get("annotations") or {}
        try:
            asked = pod_requests(annotations, ns, state.settings.nad_namespace)
            problem = None
        except AnnotationError as exc:
            asked, problem = None, exc
        is_legacy = asked is None and problem is None
        record = state.attached.get(uid)
        if record is not None:   # also one whose request was removed: the change is refused
            await _keep_attached(state, body, record, asked, problem, annotations)
            return
        if is_legacy and (not state.settings.default_network or (body.get("spec") or {}).get("hostNetwork")):
            state.pending.pop(uid, None)   # asks nothing of ovnvnet (e.g. only other plugins' networks)
            return
        if problem is not None:
            await _refuse(state, body, RequestRefused(str(problem), retry=False, reason="InvalidRequest"))
            return
        if asked is not None:
            reqs = asked
        else:
            default_network = state.settings.default_network
            assert default_network  # a legacy pod without a default network returned above
            try:
                reqs = [parse_legacy_request(annotations.get(LEGACY_ANNOTATION), default_network)]
            except AnnotationError as exc:
                await _refuse(state, body, RequestRefused(str(exc), retry=False, reason="InvalidRequest"))
                return
        await attach_pod(state, body, reqs, is_legacy=is_legacy)


def asks_ovnvnet(state: State, annotations: dict, namespace: str) -> bool:
    """Whether a pod asks ovnvnet for interfaces: ``ovnNetwork``, or a ``networks`` annotation
    with ovnvnet elements (or one that cannot be read: the refusal says why). A Multus pod asking
    only other plugins' networks is not ovnvnet's (not handled, not retried by the sweep)."""
    if REQUEST_ANNOTATION in annotations:
        return True
    if NETWORKS_ANNOTATION not in annotations or not state.settings.nad_namespace:
        return False
    try:
        return pod_requests(annotations, namespace, state.settings.nad_namespace) is not None
    except AnnotationError:
        return True


def result_annotation(state: State, record: PodRecord) -> dict[str, str]:
    """The result as written: `ovnIfaceList` (or the legacy `ovn`) and its seal for the pod's UID
    (encoded once per record and seal key: every event of an attached pod compares against it)."""
    if record.written is not None and record.written[0] == state.seal_key:
        return dict(record.written[1])
    if record.legacy:
        name, value = LEGACY_ANNOTATION, encode_legacy_result(record.results[0], record.namespace, record.name)
    else:
        name, value = RESULT_ANNOTATION, encode_iface_list(record.results)
    wanted = sealed_annotations(state.seal_key, record.uid, name, value)
    record.written = (state.seal_key, dict(wanted))
    return wanted


def is_terminating(body: dict) -> bool:
    return bool((body.get("metadata") or {}).get("deletionTimestamp"))


def request_of(annotations: dict) -> tuple[str | None, str | None]:
    """The raw request a record serves: (``ovnNetwork``, ``k8s.v1.cni.cncf.io/networks``)."""
    return annotations.get(REQUEST_ANNOTATION), annotations.get(NETWORKS_ANNOTATION)


async def _keep_attached(state: State, body: dict, record: PodRecord, asked: list[InterfaceRequest] | None,
                         problem: AnnotationError | None, annotations: dict) -> None:
    """An attached pod: serve a change of its request (hot-plug: `plan_change`, `change_pod`), or
    refuse it leaving the pod as it is; re-write a removed/altered result. A terminating pod is
    never changed."""
    raw = request_of(annotations)
    if record.request != raw and not is_terminating(body):
        try:
            own = record.legacy and problem is None and asked is None   # a legacy pod's own `ovn` result
            change = None if own else plan_change(record, asked, problem)
        except RequestRefused as exc:
            await _ensure_result(state, body, record, annotations, clear_error=False)
            await _refuse_change(state, body, record, exc)
            return
        if change is not None and not change.noop:
            await change_pod(state, body, record, change, raw)
            return
        record.request = raw   # the same request in other words (or a legacy pod's own result)
    await _ensure_result(state, body, record, annotations, clear_error=record.request == raw)


async def _ensure_result(state: State, body: dict, record: PodRecord, annotations: dict, *, clear_error: bool) -> None:
    """Re-write the record's result when the pod's differs (removed, altered); ``clear_error``:
    the record serves the pod's request, so an ``ovnNetworkError`` of a refused change goes."""
    ns, name, uid = pod_ident(body)
    wanted = result_annotation(state, record)
    remove = tuple(k for k in (ERROR_ANNOTATION, ERROR_RETRY_ANNOTATION) if k in annotations) if clear_error else ()
    if remove or any(annotations.get(k) != v for k, v in wanted.items()):
        try:
            await retry(lambda: state.kube.patch_pod_annotations(ns, name, uid, wanted, remove=remove))
        except ApiError as exc:
            if exc.status not in GONE:
                raise
    if clear_error:
        state.pending.pop(uid, None)   # e.g. an attach whose result write had an unknown outcome
        state.errors.pop(uid, None)


def settled(state: State, body: dict) -> bool:
    """Whether a watch event of an attached pod asks nothing of the operator: its request is the
    one its record serves, its result the one written (same seal key), no ``ovnNetworkError`` to
    clear, nothing pending or refused, the pod not finished. The echo of the operator's own result
    write is such an event, and so is every status-only update of a running pod: `handle_pod` would
    only compare and return. The caller makes sure no handling of the pod is in flight (an event
    of a request changed and changed back must wait for the change it follows)."""
    meta = body.get("metadata") or {}
    uid = meta.get("uid", "")
    record = state.attached.get(uid)
    if (record is None or record.written is None or record.written[0] != state.seal_key
            or uid in state.pending or uid in state.errors or uid in state.refused or is_terminal(body)):
        return False
    annotations = meta.get("annotations") or {}
    if ERROR_ANNOTATION in annotations or ERROR_RETRY_ANNOTATION in annotations:
        return False
    if record.request != request_of(annotations):
        return False
    return all(annotations.get(k) == v for k, v in record.written[1].items())


def request_changed(state: State, body: dict) -> bool:
    """Whether an attached pod's request asks for something its record does not serve (a change
    made while the operator was down, seen by the rebuild or a relist). A request found to mean
    the same is remembered, so the next look is a string comparison."""
    meta = body.get("metadata") or {}
    record = state.attached.get(meta.get("uid", ""))
    annotations = meta.get("annotations") or {}
    raw = request_of(annotations)
    if record is None or record.request == raw or is_terminating(body):
        return False
    try:
        asked = pod_requests(annotations, meta.get("namespace", ""), state.settings.nad_namespace)
        problem = None
    except AnnotationError as exc:
        asked, problem = None, exc
    if record.legacy and asked is None and problem is None:
        record.request = raw
        return False
    try:
        change = plan_change(record, asked, problem)
    except RequestRefused:
        return True   # refused: handled, so that the pod says why
    if change.noop:
        record.request = raw
        return False
    return True


# ---------------------------------------------------------------- hot-plug: a change of an attached pod
@dataclass(frozen=True)
class Change:
    """An attached pod's new request against its record, by interface name: ``kept`` (served as
    is: address, MAC and port untouched), ``added`` (new names, and ``replaced`` ones asked for
    with another network, static address, MAC or defaultGateway: removed and added again) and
    ``removed`` (names no longer asked for)."""
    reqs: list[InterfaceRequest]
    kept: dict[str, InterfaceResult]
    added: list[InterfaceRequest]
    replaced: list[InterfaceResult]
    removed: list[InterfaceResult]
    order_changed: bool = False

    @property
    def noop(self) -> bool:
        return not (self.added or self.removed or self.order_changed)


def serves(req: InterfaceRequest, res: InterfaceResult) -> bool:
    """Whether an interface's result still answers its request (then it is kept untouched)."""
    if (req.network, req.interface) != (res.network, res.interface) or req.default_gateway != res.default_gateway:
        return False
    if any((a := res.address(ip.version)) is None or a.ip != ip_text(ip) for ip in req.ips):
        return False
    return req.mac is None or req.mac == res.mac.lower()


def describe(results: list[InterfaceResult]) -> str:
    return ", ".join(f"{r.interface} on {r.network} ({' '.join(a.ip for a in r.addresses)})" for r in results)


def plan_change(record: PodRecord, asked: list[InterfaceRequest] | None,
                problem: AnnotationError | None) -> Change:
    """The change a pod's new request asks of its record (pure), or `RequestRefused`.

    What may not change (refused, ``ChangeRefused``): the interface of a legacy ``ovn`` pod; the
    request as a whole removed (a running pod keeps at least one interface); the pod's default
    route: the interface with ``defaultGateway`` is neither removed nor changed, and no other
    interface takes ``defaultGateway`` later (routes inside a running pod are its own)."""
    if record.legacy:
        raise RequestRefused(f"the pod was attached through the legacy {LEGACY_ANNOTATION} annotation: its "
                             f"interface cannot be changed while it runs; recreate the pod to ask for "
                             f"{REQUEST_ANNOTATION}", retry=False, reason="ChangeRefused")
    if problem is not None:
        raise RequestRefused(str(problem), retry=False, reason="InvalidRequest")
    if asked is None:
        raise RequestRefused(f"the pod no longer asks for any ovnvnet interface ({REQUEST_ANNOTATION} and "
                             f"{NETWORKS_ANNOTATION} name none): a running pod keeps at least one; recreate "
                             f"the pod to drop them all", retry=False, reason="ChangeRefused")
    old = {r.interface: r for r in record.results}
    kept: dict[str, InterfaceResult] = {}
    added: list[InterfaceRequest] = []
    replaced: list[InterfaceResult] = []
    for req in asked:
        res = old.get(req.interface)
        if res is not None and serves(req, res):
            kept[req.interface] = res
            continue
        added.append(req)
        if res is not None:
            replaced.append(res)
    wanted = {r.interface for r in asked}
    removed = [r for r in record.results if r.interface not in wanted]
    old_gw = next((r for r in record.results if r.default_gateway), None)
    new_gw = next((r for r in asked if r.default_gateway), None)
    if old_gw is not None and old_gw.interface not in kept:
        raise RequestRefused(f"interface {old_gw.interface} carries the pod's default route (defaultGateway): it "
                             f"cannot be removed or changed while the pod runs; recreate the pod to change it",
                             retry=False, reason="ChangeRefused")
    if old_gw is None and new_gw is not None:
        raise RequestRefused(f"interface {new_gw.interface} asks for defaultGateway: the pod's default route is "
                             f"fixed when the pod is attached; recreate the pod to change it",
                             retry=False, reason="ChangeRefused")
    order = [r.interface for r in asked] != [r.interface for r in record.results]
    return Change(list(asked), kept, added, replaced, removed, order_changed=order)


async def _refuse_change(state: State, body: dict, record: PodRecord, exc: RequestRefused) -> None:
    """A change that cannot be served: `ovnNetworkError` (+ retry flag when it may clear by
    itself, e.g. the network appears) and a Warning ``ChangeRefused``; the pod keeps its result,
    ports and addresses."""
    kept = describe(record.results)
    await _refuse(state, body, RequestRefused(
        f"{exc} (change refused, {exc.reason}: the pod keeps its interfaces {kept})",
        retry=exc.retry, reason="ChangeRefused"))


def validate_request(state: State, uid: str, reqs: list[InterfaceRequest], namespace: str = "",
                     ns_labels: dict[str, str] | None = None, *, via_networks: bool = False) -> None:
    """Check every interface against the networks before anything is allocated. ``via_networks``:
    the requests are ``k8s.v1.cni.cncf.io/networks`` elements (refused on a ``spec.multus: false``
    network)."""
    static_seen: dict[tuple[str, str], str] = {}
    for req in reqs:
        net = state.networks.get(req.network)
        if net is None:
            if req.network in state.network_problems:
                raise RequestRefused(f"network {req.network} is not ready: {state.network_problems[req.network]}",
                                     retry=True, reason="NetworkNotReady")
            if req.network in state.known_networks:
                raise RequestRefused(f"network {req.network} is not ready yet", retry=True, reason="NetworkNotReady")
            raise RequestRefused(f"network {req.network} does not exist (no VirtualNetwork named {req.network})",
                                 retry=True, reason="UnknownNetwork")
        if net.selector is not None and not net.selector.matches(ns_labels):
            if net.selector.unreadable is not None:
                raise RequestRefused(f"network {req.network} admits no namespace: its namespaceSelector cannot "
                                     f"be read ({net.selector.unreadable})", retry=True, reason="NamespaceNotAllowed")
            raise RequestRefused(f"network {req.network} does not admit pods from namespace {namespace} "
                                 f"(its namespaceSelector requires: {net.selector})",
                                 retry=True, reason="NamespaceNotAllowed")
        if via_networks and not net.spec.multus:
            raise RequestRefused(f"network {req.network} is not published for Multus (spec.multus: false), so "
                                 f"{NETWORKS_ANNOTATION} cannot ask for it: ask for it in {REQUEST_ANNOTATION} "
                                 f"instead, or set spec.multus: true", retry=True, reason="MultusDisabled")
        _check_selection(req, net.spec)
        try:
            for ip in req.ips:   # one static address per family at most (the parser checked)
                key = (req.network, str(ip))
                if key in static_seen:
                    raise AllocationError(f"ip_address {ip} on {req.network} is requested twice "
                                          f"({static_seen[key]} and {req.interface})")
                static_seen[key] = req.interface
                net.allocator.check_static(ip, uid, req.interface)
            if req.mac is not None:
                key = (req.network, req.mac)
                if key in static_seen:
                    raise AllocationError(f"mac_address {req.mac} on {req.network} is requested twice "
                                          f"({static_seen[key]} and {req.interface})")
                static_seen[key] = req.interface
                net.allocator.check_mac(req.mac, uid, req.interface)
        except AddressHeld as exc:    # may free up: retried, the CNI keeps waiting
            raise RequestRefused(str(exc), retry=True, reason="AddressUnavailable") from None
        except AllocationError as exc:  # outside the subnet, the gateway, excluded...: final
            raise RequestRefused(str(exc), retry=False, reason="InvalidAddress") from None


def _check_selection(req: InterfaceRequest, spec: NetworkSpec) -> None:
    """A Multus element's CIDR prefixes and ``default-route`` gateways must be the network's."""
    for ip, prefix in zip(req.ips, req.prefixes, strict=False):
        fam = spec.family(ip.version)
        if fam is not None and prefix != fam.prefix_length:
            raise RequestRefused(f"ips {ip}/{prefix} on {req.network}: the network's "
                                 f"{family_name(ip.version)} prefix is /{fam.prefix_length}",
                                 retry=False, reason="InvalidAddress")
    for gw in req.default_route:
        fam = spec.family(gw.version)
        if fam is None or fam.gateway != gw:
            have = f"its gateway is {fam.gateway}" if fam is not None else f"it has no {family_name(gw.version)} subnet"
            raise RequestRefused(f"default-route {gw} on {req.network}: {have}", retry=False,
                                 reason="InvalidAddress")


def allocate_interfaces(state: State, pod_key: str, uid: str,
                        reqs: list[InterfaceRequest]) -> tuple[list[InterfaceResult], list[tuple[str, str, Holder]]]:
    """Allocate every interface or nothing (synchronous: no other pod interleaves)."""
    taken: list[tuple[str, str, Holder]] = []
    results: list[InterfaceResult] = []
    with ExitStack() as undo:
        try:
            for req in reqs:
                ips, stored = _allocate_one(state, pod_key, uid, req)
                texts = [ip_text(ip) for ip in ips]
                for text in texts:
                    undo.callback(state.unhold, req.network, text)
                    taken.append((req.network, text, stored))
                spec = state.networks[req.network].spec
                addresses = tuple(IfaceAddress(text, fam.prefix_length, ip_text(fam.gateway))
                                  for text, fam in zip(texts, spec.families, strict=True))
                results.append(InterfaceResult(
                    interface=req.interface, network=req.network, ip=addresses[0].ip,
                    prefix_length=addresses[0].prefix_length, mac=stored.mac, gateway=addresses[0].gateway,
                    default_gateway=req.default_gateway, mtu=spec.mtu, routes=spec.routes, addresses=addresses,
                ))
        except NetworkExhausted as exc:
            raise RequestRefused(str(exc), retry=True, reason="NetworkExhausted") from None
        except AddressHeld as exc:
            raise RequestRefused(str(exc), retry=True, reason="AddressUnavailable") from None
        except AllocationError as exc:
            raise RequestRefused(str(exc), retry=False, reason="InvalidAddress") from None
        undo.pop_all()
    for network, ip, holder in taken:
        state.hold(network, ip, holder, record_status=False)
    return results, taken


def _allocate_one(state: State, pod_key: str, uid: str,
                  req: InterfaceRequest) -> tuple[tuple[netaddr.IPAddress, ...], Holder]:
    """One interface, one address per family of its network: reuse what this pod already holds
    for it (the records) when it is what the request asks, else reserve/allocate every family at
    once (``NetworkAllocator.attach``: all or nothing)."""
    alloc = state.networks[req.network].allocator
    held = alloc.find_all(uid, req.interface)
    if held:
        prior = alloc.holder_of(held[0])
        stale = (any(alloc.holder_of(ip) != prior for ip in held)
                 or any(ip not in held for ip in req.ips)
                 or (req.mac is not None and (prior is None or prior.mac != req.mac)))
        if stale:
            for ip in held:
                state.unhold(req.network, str(ip))  # a leftover from an earlier request
        elif len(held) < len(alloc.families) and prior is not None:
            req = replace(req, mac=prior.mac)      # complete the missing family with the same MAC
    holder = Holder(pod_key, uid, req.interface, req.mac or "")
    ips = alloc.attach(holder, req.ips)
    return ips, alloc.held_by(ips[0])


async def change_pod(state: State, body: dict, record: PodRecord, change: Change,
                     raw: tuple[str | None, str | None]) -> None:
    """Serve a change of an attached pod (hot-plug): allocate and create ports for the added
    interfaces, all or nothing, write the new result, then release the removed ones. A refusal
    leaves the pod exactly as it was (`_refuse_change`); a transient failure raises `RetryLater`
    with everything undone, except a result write of unknown outcome (kept, written again, as
    for an attach)."""
    ns, name, uid = pod_ident(body)
    started = time.monotonic()
    try:
        outcome = await _change_steps(state, body, record, change, raw)
    except RequestRefused as exc:
        await _refuse_change(state, body, record, exc)
        return
    if outcome is None:
        return
    new, taken, dropped, unknown = outcome
    now_held = state.holdings.get(uid, set())
    for network, ip, holder in dropped:
        if (network, ip) not in now_held:   # not taken over by an added interface (a moved address)
            state.status.set_allocation(network, ip, None)
            state.wake.set()
            claims.retain(state, network, ip, holder)   # an address held for an IPClaim stays held by it
    for network, ip, holder in taken:
        state.status.set_allocation(network, ip, status_entry(holder))
    if unknown is not None:
        raise RetryLater(f"writing {RESULT_ANNOTATION} of {ns}/{name} may not have landed ({unknown}); "
                         "the change is kept and the same result written again")
    added = {r.interface for r in change.added}
    log.info("changed %s/%s in %.3fs: added %s; removed %s; kept %s", ns, name, time.monotonic() - started,
             describe([r for r in new.results if r.interface in added]) or "-",
             describe(change.removed + change.replaced) or "-", ", ".join(change.kept) or "-")


def _released_first(change: Change) -> list[InterfaceResult]:
    """The dropped interfaces whose addresses go before the additions are allocated: the replaced
    ones (an interface holds one address per family), and removed ones holding a static address
    or MAC an addition asks for (moved within the pod). The other removed interfaces keep theirs
    until the new result is written."""
    statics = {(r.network, ip_text(ip)) for r in change.added for ip in r.ips}
    macs = {(r.network, r.mac) for r in change.added if r.mac is not None}
    moved = [r for r in change.removed
             if (r.network, r.mac.lower()) in macs or any((r.network, a.ip) in statics for a in r.addresses)]
    return change.replaced + moved


def _release_interfaces(state: State, uid: str, results: list[InterfaceResult]) -> list[tuple[str, str, Holder]]:
    """Free what each of a pod's interfaces holds in the allocators (synchronous; no record is
    written: `_restore` puts them back exactly, or the caller records the release)."""
    out: list[tuple[str, str, Holder]] = []
    for res in results:
        net = state.networks.get(res.network)
        if net is None:
            continue
        for ip in net.allocator.find_all(uid, res.interface):
            text = ip_text(ip)
            holder = net.allocator.release(text)
            if holder is None:
                continue
            held = state.holdings.get(uid)
            if held is not None:
                held.discard((res.network, text))
                if not held:
                    del state.holdings[uid]
            out.append((res.network, text, holder))
    return out


def _restore(state: State, dropped: list[tuple[str, str, Holder]]) -> None:
    """Undo `_release_interfaces`: the same holders hold the same addresses again."""
    for network, ip, holder in dropped:
        net = state.networks.get(network)
        try:
            if net is None:
                raise AllocationError(f"network {network} is gone")
            net.allocator.reserve(netaddr.IPAddress(ip), holder)
        except AllocationError as exc:   # taken while an NB or API call was awaited
            log.error("pod %s: %s on %s could not be given back after a failed change: %s", holder.pod, ip,
                      network, exc)
            continue
        state.hold(network, ip, net.allocator.held_by(ip), record_status=False)


async def _restore_ports(state: State, old: list[PortSpec], new_only: list[str]) -> None:
    try:
        async with state.nb_lock:
            await state.nb_call(state.nb.apply, ensure_ports=old, delete_ports=new_only)
    except Exception as exc:  # noqa: BLE001 - the sweep repairs the NB from the allocators
        log.warning("restoring ports %s after a failed change failed (%s); the sweep will repair them",
                    [p.name for p in old] + new_only, exc)


async def _change_steps(state: State, body: dict, record: PodRecord, change: Change,
                        raw: tuple[str | None, str | None]
                        ) -> tuple[PodRecord, list[tuple[str, str, Holder]], list[tuple[str, str, Holder]],
                                   Exception | None] | None:
    """The change under one undo stack; None when the pod went away meanwhile (rolled back).
    Returns the new record, the addresses taken, the addresses dropped and an unknown write
    outcome (see `_attach_steps`)."""
    ns, name, uid = pod_ident(body)
    annotations = body.get("metadata", {}).get("annotations") or {}
    added, ns_labels, bound = await _prepare(state, body, change.added)
    first = _released_first(change)
    async with AsyncExitStack() as undo:
        # synchronous from here to the allocation: nothing else runs between release and allocation
        dropped = _release_interfaces(state, uid, first)
        undo.callback(_restore, state, dropped)
        results, taken = _take_addresses(state, body, added, bound, ns_labels, undo,
                                         via_networks=REQUEST_ANNOTATION not in annotations)
        ports = port_specs(taken)
        new_names = {p.name for p in ports}
        moved = sorted({port_name_of(h) for _, _, h in dropped} - new_names)

        async def commit() -> None:
            if ports or moved:
                async with state.nb_lock:
                    await state.nb_call(state.nb.apply, ensure_ports=ports, delete_ports=moved)
        await _write_ports(state, new_names, commit)
        replaced_names = {port_name_of(h) for _, _, h in dropped}
        undo.push_async_callback(_restore_ports, state, port_specs(dropped),
                                 sorted(new_names - replaced_names))

        by_name = {r.interface: r for r in results}
        new = PodRecord(ns, name, uid, [change.kept.get(r.interface) or by_name[r.interface] for r in change.reqs],
                        request=raw)
        gone, unknown = await _write_result(state, body, new, "changing")
        if gone:
            return None
        undo.pop_all()
    state.attached[uid] = new
    late = [r for r in change.removed if r not in first]
    dropped += _release_interfaces(state, uid, late)
    await _delete_ports(state, sorted({names.port_name(ns, name, r.interface) for r in late}))
    if unknown is None:
        state.pending.pop(uid, None)
        state.errors.pop(uid, None)
    return new, taken, dropped, unknown


async def attach_pod(state: State, body: dict, reqs: list[InterfaceRequest], *, is_legacy: bool = False) -> None:
    """Validate, allocate, create the ports, write the result; a refusal ends in `ovnNetworkError`,
    a transient failure raises `RetryLater`. Either way every step taken so far is undone."""
    ns, name, uid = pod_ident(body)
    started = time.monotonic()
    try:
        results, taken, unknown = await _attach_steps(state, body, reqs, is_legacy)
    except RequestRefused as exc:
        await _refuse(state, body, exc)
        return
    if results is None:
        return
    for network, ip, holder in taken:
        state.status.set_allocation(network, ip, status_entry(holder))
    if unknown is not None:
        raise RetryLater(f"writing {RESULT_ANNOTATION} of {ns}/{name} may not have landed ({unknown}); "
                         "the allocation is kept and the same result written again")
    metrics.ATTACHED.inc()
    metrics.ATTACH_SECONDS.observe(time.monotonic() - started)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("attached %s/%s: %s", ns, name, ", ".join(f"{r.interface}={r.network}/{r.ip}" for r in results))
    ATTACH_LOG.add(f"{ns}/{name}")


async def _attach_steps(state: State, body: dict, reqs: list[InterfaceRequest], is_legacy: bool
                        ) -> tuple[list[InterfaceResult] | None, list[tuple[str, str, Holder]], Exception | None]:
    """Steps 1-4 under one undo stack; (None, [], None) when the pod went away meanwhile (rolled
    back). A result write whose outcome is unknown (the connection broke, or the API answered 5xx,
    after every retry: the write may have landed, as when an API server dies after committing it)
    is not rolled back: the pod is attached with this result and the error is returned, so that
    the retry writes the same result again (`_keep_attached`). Rolling back would free addresses
    a pod may already show, and the retry would write other ones: one pod, two results."""
    ns, name, uid = pod_ident(body)
    annotations = body.get("metadata", {}).get("annotations") or {}
    reqs, ns_labels, bound = await _prepare(state, body, reqs)
    async with AsyncExitStack() as undo:
        results, taken = _take_addresses(state, body, reqs, bound, ns_labels, undo,
                                         via_networks=not is_legacy and REQUEST_ANNOTATION not in annotations)
        ports = port_specs(taken)
        await _write_ports(state, {p.name for p in ports}, lambda: state.nb_batch.ensure_ports(ports))
        undo.push_async_callback(_delete_ports, state, [p.name for p in ports])

        record = PodRecord(ns, name, uid, results, legacy=is_legacy, request=request_of(annotations))
        gone, unknown = await _write_result(state, body, record, "attaching")
        if gone:
            return None, [], None
        undo.pop_all()   # attached (or possibly attached: see above): nothing to undo
    state.attached[uid] = record
    if unknown is None:
        state.pending.pop(uid, None)
        state.errors.pop(uid, None)
    return results, taken, unknown


# ---------------------------------------------------------------- the steps an attach and a change share
async def _prepare(state: State, body: dict, reqs: list[InterfaceRequest]
                   ) -> tuple[list[InterfaceRequest], dict[str, str] | None, dict[str, claims.Bound] | None]:
    """What must be awaited before the synchronous allocation: the namespace's labels (only when a
    network asked for has a namespaceSelector) and the claims the request uses (``claim`` filled in)."""
    ns = pod_ident(body)[0]
    ns_labels: dict[str, str] | None = None
    if any((n := state.networks.get(r.network)) is not None and n.selector is not None for r in reqs):
        try:
            ns_labels = await state.namespace_labels(ns)
        except ApiError as exc:
            raise RetryLater(f"reading namespace {ns} failed: {exc}") from exc
    bound = None
    annotations = body.get("metadata", {}).get("annotations") or {}
    if reqs and claims.wants_claims(annotations, reqs):
        reqs, bound = await claims.resolve(state, body, reqs)
    return reqs, ns_labels, bound


def _take_addresses(state: State, body: dict, reqs: list[InterfaceRequest], bound: dict[str, claims.Bound] | None,
                    ns_labels: dict[str, str] | None, undo: AsyncExitStack, *, via_networks: bool
                    ) -> tuple[list[InterfaceResult], list[tuple[str, str, Holder]]]:
    """Synchronous (atomic on the event loop): hand the claims' holds over, validate the whole
    request, allocate every interface, tag the claimed addresses; ``undo`` frees them all."""
    ns, name, uid = pod_ident(body)
    if bound:   # a claim's hold is handed over atomically with the allocation
        reqs = claims.take(state, uid, reqs, bound, undo)
    validate_request(state, uid, reqs, ns, ns_labels, via_networks=via_networks)
    results, taken = allocate_interfaces(state, f"{ns}/{name}", uid, reqs)
    if bound:
        taken = claims.tag(state, taken, bound)
    for network, ip, _ in taken:
        undo.callback(state.unhold, network, ip)
    return results, taken


async def _write_ports(state: State, port_names: set[str], commit: Callable[[], Awaitable[None]]) -> None:
    """Run the NB write of an attach or a change (``commit``); its ports count as in flight (not
    drift) meanwhile. A port of that name ovnvnet does not own refuses the pod; any other failure
    is transient."""
    state.inflight_ports |= port_names
    try:
        await commit()
    except NotOwnedError as exc:
        raise RequestRefused(str(exc), retry=False, reason="PortConflict") from None
    except Exception as exc:
        metrics.ATTACH_ERRORS.labels("nb").inc()
        raise RetryLater(f"OVN NB transaction failed: {exc}") from exc
    finally:
        state.inflight_ports -= port_names


async def _write_result(state: State, body: dict, record: PodRecord, doing: str) -> tuple[bool, Exception | None]:
    """Write the record's sealed result (clearing an ``ovnNetworkError``), guarded by the pod's UID.
    Returns (gone, unknown): gone when the pod (with this UID) no longer exists, so the caller
    rolls back; unknown: the error of a write whose outcome is unknown (see `_attach_steps`).
    A refused write (4xx) raises `RetryLater`: nothing was written."""
    annotations = body.get("metadata", {}).get("annotations") or {}
    try:
        await retry(lambda: state.kube.patch_pod_annotations(
            record.namespace, record.name, record.uid, result_annotation(state, record),
            remove=tuple(k for k in (ERROR_ANNOTATION, ERROR_RETRY_ANNOTATION) if k in annotations)))
    except ApiError as exc:
        if exc.status in GONE:  # pod gone, or replaced by a same-name pod (UID precondition failed)
            log.info("pod %s went away while %s; rolled back", record.key, doing)
            return True, None
        if exc.status < 500:    # refused (429 included): nothing was written
            raise RetryLater(f"writing {RESULT_ANNOTATION} failed: {exc}") from exc
        return False, exc
    except (TimeoutError, aiohttp.ClientError) as exc:
        return False, exc
    return False, None


async def _refuse(state: State, body: dict, exc: RequestRefused) -> None:
    ns, name, uid = pod_ident(body)
    message = str(exc)
    metrics.ATTACH_ERRORS.labels(exc.reason).inc()
    if exc.retry:
        state.pending[uid] = (ns, name)
    else:
        state.pending.pop(uid, None)
    annotations = body.get("metadata", {}).get("annotations") or {}
    retry_flag = "true" if exc.retry else None
    if (annotations.get(ERROR_ANNOTATION) == message and annotations.get(ERROR_RETRY_ANNOTATION) == retry_flag
            and state.errors.get(uid) == message):
        return
    state.errors[uid] = message
    log.info("pod %s/%s refused: %s", ns, name, message)
    if annotations.get(ERROR_ANNOTATION) != message or annotations.get(ERROR_RETRY_ANNOTATION) != retry_flag:
        try:
            await retry(lambda: state.kube.patch_pod_annotations(
                ns, name, uid, {ERROR_ANNOTATION: message, **({ERROR_RETRY_ANNOTATION: "true"} if exc.retry else {})},
                remove=() if exc.retry else (ERROR_RETRY_ANNOTATION,)))
        except ApiError as err:
            if err.status not in GONE:
                raise
            return
    await _event(state, body, "Warning", exc.reason, message)


async def _event(state: State, body: dict, type_: str, reason: str, message: str) -> None:
    try:
        await state.kube.post_event(body, type_=type_, reason=reason, message=message)
    except Exception as exc:  # noqa: BLE001 - an event is best effort
        log.warning("could not post event on %s: %s", body.get("metadata", {}).get("name"), exc)


async def _delete_ports(state: State, port_names: list[str]) -> None:
    try:
        await state.nb_batch.delete_ports(port_names)
    except Exception as exc:  # noqa: BLE001 - the sweep removes what is left
        log.warning("deleting ports %s failed (%s); the sweep will retry", port_names, exc)


async def release_pod(state: State, uid: str, *, why: str) -> None:
    """Free everything a pod holds: allocations, status entries, NB ports."""
    state.pending.pop(uid, None)
    state.errors.pop(uid, None)
    state.refused.pop(uid, None)
    record = state.attached.pop(uid, None)
    held = sorted(state.holdings.get(uid, ()))
    if not held:
        return
    port_names: dict[str, None] = {}   # one port per interface, whatever its number of families
    for network, ip in held:
        holder = state.unhold(network, ip)
        if holder is not None:
            ns, _, pod = holder.pod.partition("/")
            port_names[names.port_name(ns, pod, holder.interface)] = None
            claims.retain(state, network, ip, holder)   # an address held for an IPClaim stays held by it
    await _delete_ports(state, list(port_names))
    metrics.RELEASED.inc()
    log.info("released %s (%s): %s", record.key if record else uid, why, ", ".join(f"{n}/{ip}" for n, ip in held))


def restore_record(state: State, body: dict, admits: Callable[[str, str], bool]) -> bool:
    """Rebuild, after the records were reserved: read a live pod's result annotation (`ovnIfaceList`
    or the legacy result) and hand it to `restore_claims`, which checks it against the records. Only
    a result the operator sealed for this pod's UID is considered; an unsealed one (copied from
    another pod, edited, or written before results were sealed) is never restored: the pod is
    handled as a new request (reusing what the records give it), and refused for its life if the
    unsealed result claims an address the records give to another pod (`claims_of_forged`).
    `admits(network, namespace)`: whether the network's namespaceSelector admits the namespace."""
    ns, name, uid = pod_ident(body)
    annotations = body.get("metadata", {}).get("annotations") or {}
    if not uid or is_terminal(body):
        return False
    try:
        sealed = sealed_result(annotations, uid, state.seal_key, f"{ns}/{name}")
    except SealError as exc:
        log.warning("rebuild: %s; the pod is handled as a new request", exc)
        _refuse_forged_claim(state, body, annotations)
        return False
    except AnnotationError as exc:
        log.warning("rebuild: %s; the pod is handled as a new request", exc)
        return False
    if sealed is None:
        return False
    return restore_claims(state, body, sealed.interfaces, is_legacy=sealed.legacy, admits=admits)


def _not_owned(key: str, res: InterfaceResult, holder: Holder, ip: str | None = None) -> RequestRefused:
    return RequestRefused(
        f"{key} claims {ip or res.ip} on network {res.network}, which the operator's records give to pod "
        f"{holder.pod} (interface {holder.interface}): this result was not written by ovnvnet for this "
        f"pod (copied from another pod?) and is not used; recreate the pod without {key}",
        retry=False, reason="ResultNotOwned")


def _refuse_forged_claim(state: State, body: dict, annotations: dict) -> None:
    """An unsealed result is never used to grant anything; but one claiming an address the records
    give to another pod is a copy of that pod's result (a clone, or a takeover attempt): refuse the
    pod for its life, naming the holder, rather than attach it as if nothing were wrong."""
    key = result_key(annotations)
    if not key:
        return
    try:
        claimed = ([decode_legacy_result(annotations[key])] if key == LEGACY_ANNOTATION
                   else decode_iface_list(annotations[key]))
    except AnnotationError:
        return
    uid = pod_ident(body)[2]
    for res in claimed:
        net = state.networks.get(res.network)
        for addr in res.addresses:
            holder = net.allocator.holder_of(addr.ip) if net is not None else None
            if holder is not None and holder.pod_uid != uid:
                refuse_for_life(state, body, _not_owned(key, res, holder, addr.ip))
                return


def restore_claims(state: State, body: dict, results: list[InterfaceResult], *, is_legacy: bool,
                   admits: Callable[[str, str], bool]) -> bool:
    """Rebuild: the records (NB ports, IPBlocks) are already reserved and are the truth. A pod's
    sealed result is restored (the pod counts as attached) only when every interface either
    agrees with the records or fills a gap: an address no record holds, on a network that admits
    the pod's namespace, for a pod carrying no `ovnNetworkError` (the operator never writes both).
    A result claiming an address the records give to another pod is refused for the pod's life
    (`ovnNetworkError`, no port; the record's holder keeps address and port). Any other
    contradiction: not restored, the pod is attached anew (reusing what the records give it)."""
    ns, name, uid = pod_ident(body)
    pod_key = f"{ns}/{name}"
    annotations = body.get("metadata", {}).get("annotations") or {}
    key = LEGACY_ANNOTATION if is_legacy else RESULT_ANNOTATION
    gaps: list[tuple[InterfaceResult, str]] = []   # (interface, one of its addresses) no record holds
    for res in results:
        net = state.networks.get(res.network)
        if net is None:
            log.warning("pod %s holds %s on unknown network %s", pod_key, res.ip, res.network)
            continue
        for addr in res.addresses:
            holder = net.allocator.holder_of(addr.ip)
            if holder is not None and holder.pod_uid != uid:
                refuse_for_life(state, body, _not_owned(key, res, holder, addr.ip))
                return False
            if holder is not None:
                if (holder.interface, holder.mac) != (res.interface, res.mac.lower()):
                    log.warning("rebuild: pod %s: %s says %s %s/%s, the records %s %s: records kept, pod attached "
                                "anew", pod_key, key, res.interface, addr.ip, res.mac, holder.interface, holder.mac)
                    return False
                continue
            fam = net.allocator.family(addr.family)
            recorded = fam.find(uid, res.interface) if fam is not None else None
            if fam is None or recorded is not None:
                log.warning("rebuild: pod %s: %s says %s on %s, the records give it %s: records kept, "
                            "pod attached anew", pod_key, key, addr.ip, res.network,
                            recorded if fam is not None else "no address of that family")
                return False
            gaps.append((res, addr.ip))
    if gaps and ERROR_ANNOTATION in annotations:
        log.warning("rebuild: pod %s carries both %s and %s: its result is not trusted, it will be attached anew",
                    pod_key, key, ERROR_ANNOTATION)
        return False
    for res, _ in gaps:
        net = state.networks[res.network]
        if net.selector is not None and not admits(res.network, ns):
            log.warning("rebuild: pod %s: network %s does not admit namespace %s: %s not restored",
                        pod_key, res.network, ns, key)
            return False
    with ExitStack() as undo:
        for res, ip in gaps:
            net = state.networks[res.network]
            try:
                net.allocator.reserve(netaddr.IPAddress(ip), Holder(pod_key, uid, res.interface, res.mac))
            except AllocationError as exc:
                log.warning("rebuild: pod %s: %s not restored: %s", pod_key, key, exc)
                return False
            undo.callback(net.allocator.release, ip)
        undo.pop_all()
    for res, ip in gaps:
        state.hold(res.network, ip, state.networks[res.network].allocator.held_by(ip), record_status=False)
    state.attached[uid] = PodRecord(ns, name, uid, results, legacy=is_legacy)
    _drop_unlisted(state, uid, pod_key, results)
    return True


def _drop_unlisted(state: State, uid: str, pod_key: str, results: list[InterfaceResult]) -> None:
    """The records may hold more for a pod than its sealed result lists: a hot-plug change whose NB
    ports were written but not its result (added interfaces), or whose result was written but not
    the release (removed ones), when the operator stopped. The result is what the pod was told:
    the rest is released (the repair deletes the ports; a changed request is then served anew)."""
    listed = {(r.network, a.ip) for r in results for a in r.addresses}
    extra = sorted(held for held in state.holdings.get(uid, ()) if held not in listed)
    for network, ip in extra:
        holder = state.unhold(network, ip)
        if holder is not None:
            claims.retain(state, network, ip, holder)
    if extra:
        log.warning("rebuild: pod %s: %s held in the records but not in its result: released", pod_key,
                    ", ".join(f"{n}/{ip}" for n, ip in extra))


def refuse_for_life(state: State, body: dict, refusal: RequestRefused) -> None:
    """Refuse a pod until it is deleted (a forged or copied result): `handle_pod` writes the
    `ovnNetworkError` and the Event on the pod's next handling, and never attaches it."""
    ns, name, uid = pod_ident(body)
    log.warning("pod %s/%s refused: %s", ns, name, refusal)
    state.refused[uid] = refusal


async def retry_pending(state: State) -> None:
    """Re-run pods waiting for a network or an address (woken by releases and network changes).
    Each pod on its own: one pod's failure is logged with its name and counted, the round goes on."""
    for uid, (ns, name) in list(state.pending.items()):
        try:
            await _retry_one(state, uid, ns, name)
        except Exception as exc:  # noqa: BLE001 - isolated per pod; it stays pending for the next round
            metrics.ISOLATED_FAILURES.labels("retry").inc()
            log.warning("retry of pod %s/%s failed (next round): %s", ns, name, exc)


async def _retry_one(state: State, uid: str, ns: str, name: str) -> None:
    try:
        body: dict[str, Any] = await state.kube.get(state.kube.pod_path(ns, name))
    except ApiError as exc:
        if exc.status == 404:
            state.pending.pop(uid, None)
            return
        raise
    if body.get("metadata", {}).get("uid") != uid:
        state.pending.pop(uid, None)
        return
    body.setdefault("kind", "Pod")
    body.setdefault("apiVersion", "v1")
    await handle_pod(state, body, None)
