"""Pods: validate the `ovnNetwork` request, allocate, create ports, write `ovnIfaceList`; release.

Order of one attach, each step undone if a later one fails, so nothing half-done stays behind:
  1. validate the whole request (syntax, networks, static addresses) - nothing held yet;
  2. allocate every interface in the allocators (synchronous: atomic on the event loop);
  3. create every logical switch port in one NB transaction;
  4. write `ovnIfaceList` with a JSON-patch guarded by the pod UID;
  5. record the allocations in the networks' status (coalesced).
A crash between 3 and 4 leaves NB ports carrying the pod UID: the rebuild reserves them for that
pod and step 2 reuses them, so a restart never changes an address.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import kopf
import netaddr

from ovnvnet import metrics
from ovnvnet.ipam.allocator import AddressHeld, AllocationError, Holder, NetworkExhausted
from ovnvnet.kube.client import ApiError, retry
from ovnvnet.model import names
from ovnvnet.model.annotation import (ERROR_ANNOTATION, ERROR_RETRY_ANNOTATION, LEGACY_ANNOTATION, REQUEST_ANNOTATION,
                                      RESULT_ANNOTATION, AnnotationError, InterfaceRequest, InterfaceResult,
                                      encode_iface_list, encode_legacy_result, parse_legacy_request,
                                      parse_ovn_network, sealed_annotations, sealed_result)
from ovnvnet.ovn.nb import NotOwnedError
from ovnvnet.reconcile.state import PodRecord, State, port_spec, status_entry

log = logging.getLogger(__name__)

# the keys, as the rest of reconcile/ spells them (defined in model/annotation.py)
REQUEST = REQUEST_ANNOTATION
RESULT = RESULT_ANNOTATION
ERROR = ERROR_ANNOTATION
ERROR_RETRY = ERROR_RETRY_ANNOTATION  # "true": the operator retries by itself (the CNI keeps waiting)
TERMINAL_PHASES = ("Succeeded", "Failed")
GONE = (404, 409, 422)  # the pod, or the pod with that UID, no longer exists


class RequestRefused(Exception):
    """The request cannot be served now. `retry` says whether a later change elsewhere (a network
    appearing, an address freeing) may make it work without the pod changing."""

    def __init__(self, message: str, *, retry: bool, reason: str):
        super().__init__(message)
        self.retry = retry
        self.reason = reason


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
        annotations = body.get("metadata", {}).get("annotations") or {}
        raw = annotations.get(REQUEST)
        is_legacy = raw is None
        if is_legacy and (not state.settings.default_network or (body.get("spec") or {}).get("hostNetwork")):
            return
        record = state.attached.get(uid)
        if record is not None:
            await _keep_attached(state, body, record, raw, annotations)
            return
        try:
            reqs = (parse_ovn_network(raw) if not is_legacy else
                    [parse_legacy_request(annotations.get(LEGACY_ANNOTATION), state.settings.default_network)])
        except AnnotationError as exc:
            await _refuse(state, body, RequestRefused(str(exc), retry=False, reason="InvalidRequest"))
            return
        await attach_pod(state, body, reqs, is_legacy=is_legacy)


def result_annotation(state: State, record: PodRecord) -> dict[str, str]:
    """The result as written: `ovnIfaceList` (or the legacy `ovn`) and its seal for the pod's UID."""
    if record.legacy:
        name, value = LEGACY_ANNOTATION, encode_legacy_result(record.results[0], record.namespace, record.name)
    else:
        name, value = RESULT, encode_iface_list(record.results)
    return sealed_annotations(state.seal_key, record.uid, name, value)


async def _keep_attached(state: State, body: dict, record: PodRecord, raw: str | None, annotations: dict) -> None:
    """An attached pod: re-write a removed/altered result, warn once about an ignored change."""
    ns, name, uid = pod_ident(body)
    wanted = result_annotation(state, record)
    if any(annotations.get(k) != v for k, v in wanted.items()):
        try:
            await retry(lambda: state.kube.patch_pod_annotations(ns, name, uid, wanted))
        except ApiError as exc:
            if exc.status not in GONE:
                raise
    if raw is None:
        return
    if raw != record.warned_request and (record.legacy or not request_matches(raw, record.results)):
        record.warned_request = raw
        await _event(state, body, "Warning", "ChangeIgnored",
                     "ovnNetwork changed after the pod was attached; the change is not applied "
                     "(interfaces are fixed for the life of a pod: recreate the pod to change them)")


def request_matches(raw: str, results: list[InterfaceResult]) -> bool:
    try:
        reqs = parse_ovn_network(raw)
    except AnnotationError:
        return False
    if len(reqs) != len(results):
        return False
    for req, res in zip(reqs, results):
        if (req.network, req.interface) != (res.network, res.interface):
            return False
        if req.ip is not None and str(req.ip) != res.ip:
            return False
        if req.mac is not None and req.mac != res.mac:
            return False
        if req.default_gateway != res.default_gateway:
            return False
    return True


def validate_request(state: State, uid: str, reqs: list[InterfaceRequest], namespace: str = "",
                     ns_labels: dict[str, str] | None = None) -> None:
    """Check every interface against the networks before anything is allocated."""
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
            raise RequestRefused(f"network {req.network} does not admit pods from namespace {namespace} "
                                 f"(its namespaceSelector requires: {net.selector})",
                                 retry=True, reason="NamespaceNotAllowed")
        try:
            if req.ip is not None:
                key = (req.network, str(req.ip))
                if key in static_seen:
                    raise AllocationError(f"ip_address {req.ip} on {req.network} is requested twice "
                                          f"({static_seen[key]} and {req.interface})")
                static_seen[key] = req.interface
                net.allocator.check_static(req.ip, uid, req.interface)
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


def allocate_interfaces(state: State, pod_key: str, uid: str,
                        reqs: list[InterfaceRequest]) -> tuple[list[InterfaceResult], list[tuple[str, str, Holder]]]:
    """Allocate every interface or nothing (synchronous: no other pod interleaves)."""
    taken: list[tuple[str, str, Holder]] = []
    results: list[InterfaceResult] = []
    try:
        for req in reqs:
            net = state.networks[req.network]
            alloc = net.allocator
            held = alloc.find(uid, req.interface)
            if held is not None:
                prior = alloc.holder_of(held)
                if (req.ip is not None and held != req.ip) or (req.mac is not None and prior.mac != req.mac):
                    state.unhold(req.network, str(held))  # a leftover from an earlier request
                    held = None
            holder = Holder(pod_key, uid, req.interface, req.mac or "")
            if held is None:
                if req.ip is not None:
                    alloc.reserve(req.ip, holder)
                    ip = req.ip
                else:
                    ip = alloc.allocate(holder)
            else:
                ip = held
            stored = alloc.holder_of(ip)
            taken.append((req.network, str(ip), stored))
            spec = net.spec
            results.append(InterfaceResult(
                interface=req.interface, network=req.network, ip=str(ip), prefix_length=spec.prefix_length,
                mac=stored.mac, gateway=str(spec.gateway), default_gateway=req.default_gateway,
                mtu=spec.mtu, routes=spec.routes,
            ))
    except NetworkExhausted as exc:
        _undo(state, taken)
        raise RequestRefused(str(exc), retry=True, reason="NetworkExhausted") from None
    except AddressHeld as exc:
        _undo(state, taken)
        raise RequestRefused(str(exc), retry=True, reason="AddressUnavailable") from None
    except AllocationError as exc:
        _undo(state, taken)
        raise RequestRefused(str(exc), retry=False, reason="InvalidAddress") from None
    for network, ip, holder in taken:
        state.hold(network, ip, holder, record_status=False)
    return results, taken


def _undo(state: State, taken: list[tuple[str, str, Holder]]) -> None:
    for network, ip, _ in taken:
        state.unhold(network, ip)


async def attach_pod(state: State, body: dict, reqs: list[InterfaceRequest], *, is_legacy: bool = False) -> None:
    ns, name, uid = pod_ident(body)
    pod_key = f"{ns}/{name}"
    started = time.monotonic()
    ns_labels: dict[str, str] | None = None
    if any((n := state.networks.get(r.network)) is not None and n.selector is not None for r in reqs):
        try:
            ns_labels = await state.namespace_labels(ns)
        except ApiError as exc:
            raise kopf.TemporaryError(f"reading namespace {ns} failed: {exc}", delay=1) from exc
    try:
        validate_request(state, uid, reqs, ns, ns_labels)
        results, taken = allocate_interfaces(state, pod_key, uid, reqs)
    except RequestRefused as exc:
        await _refuse(state, body, exc)
        return

    ports = [port_spec(network, ip, holder) for network, ip, holder in taken]
    names_ = {p.name for p in ports}
    state.inflight_ports |= names_
    try:
        await state.nb_batch.ensure_ports(ports)
    except NotOwnedError as exc:
        _undo(state, taken)
        await _refuse(state, body, RequestRefused(str(exc), retry=False, reason="PortConflict"))
        return
    except Exception as exc:
        _undo(state, taken)
        metrics.ATTACH_ERRORS.labels("nb").inc()
        raise kopf.TemporaryError(f"OVN NB transaction failed: {exc}", delay=1) from exc
    finally:
        state.inflight_ports -= names_

    annotations = body.get("metadata", {}).get("annotations") or {}
    record = PodRecord(ns, name, uid, results, legacy=is_legacy)
    try:
        await retry(lambda: state.kube.patch_pod_annotations(
            ns, name, uid, result_annotation(state, record),
            remove=tuple(k for k in (ERROR, ERROR_RETRY) if k in annotations)))
    except ApiError as exc:
        _undo(state, taken)
        await _delete_ports(state, [p.name for p in ports])
        if exc.status in GONE:  # pod gone, or replaced by a same-name pod (UID precondition failed)
            log.info("pod %s went away while attaching; rolled back", pod_key)
            return
        raise kopf.TemporaryError(f"writing {RESULT} failed: {exc}", delay=1) from exc
    except Exception:
        _undo(state, taken)
        await _delete_ports(state, [p.name for p in ports])
        raise

    state.attached[uid] = record
    state.pending.pop(uid, None)
    state.errors.pop(uid, None)
    for network, ip, holder in taken:
        state.status.set_allocation(network, ip, status_entry(holder))
    metrics.ATTACHED.inc()
    metrics.ATTACH_SECONDS.observe(time.monotonic() - started)
    log.info("attached %s: %s", pod_key, ", ".join(f"{r.interface}={r.network}/{r.ip}" for r in results))


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
    if (annotations.get(ERROR) == message and annotations.get(ERROR_RETRY) == retry_flag
            and state.errors.get(uid) == message):
        return
    state.errors[uid] = message
    log.info("pod %s/%s refused: %s", ns, name, message)
    if annotations.get(ERROR) != message or annotations.get(ERROR_RETRY) != retry_flag:
        try:
            await retry(lambda: state.kube.patch_pod_annotations(
                ns, name, uid, {ERROR: message, **({ERROR_RETRY: "true"} if exc.retry else {})},
                remove=() if exc.retry else (ERROR_RETRY,)))
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
    record = state.attached.pop(uid, None)
    held = sorted(state.holdings.get(uid, ()))
    if not held:
        return
    port_names = []
    for network, ip in held:
        holder = state.unhold(network, ip)
        if holder is not None:
            ns, _, pod = holder.pod.partition("/")
            port_names.append(names.port_name(ns, pod, holder.interface))
    await _delete_ports(state, port_names)
    metrics.RELEASED.inc()
    log.info("released %s (%s): %s", record.key if record else uid, why, ", ".join(f"{n}/{ip}" for n, ip in held))


def restore_record(state: State, body: dict) -> bool:
    """Rebuild: take a live pod's result as the truth and reserve its addresses, but only a result
    the operator sealed for this pod's UID. A forged or copied one (another pod's, an edited one) is
    not restored: the pod is then handled as an ordinary request (and refused if it conflicts)."""
    ns, name, uid = pod_ident(body)
    annotations = body.get("metadata", {}).get("annotations") or {}
    if not uid or is_terminal(body):
        return False
    try:
        sealed = sealed_result(annotations, uid, state.seal_key, f"{ns}/{name}")
    except AnnotationError as exc:
        log.warning("rebuild: %s; the pod is handled as a new request", exc)
        return False
    if sealed is None:
        return False
    results = sealed.interfaces
    pod_key = f"{ns}/{name}"
    for res in results:
        net = state.networks.get(res.network)
        if net is None:
            log.warning("pod %s holds %s on unknown network %s", pod_key, res.ip, res.network)
            continue
        holder = Holder(pod_key, uid, res.interface, res.mac)
        try:
            net.allocator.reserve(netaddr.IPAddress(res.ip), holder)
        except AllocationError as exc:
            log.error("rebuild: pod %s: %s", pod_key, exc)
            continue
        state.hold(res.network, res.ip, net.allocator.holder_of(res.ip), record_status=False)
    state.attached[uid] = PodRecord(ns, name, uid, results, legacy=sealed.legacy)
    return True


async def retry_pending(state: State) -> None:
    """Re-run pods waiting for a network or an address (woken by releases and network changes)."""
    for uid, (ns, name) in list(state.pending.items()):
        try:
            body: dict[str, Any] = await state.kube.get(state.kube.pod_path(ns, name))
        except ApiError as exc:
            if exc.status == 404:
                state.pending.pop(uid, None)
                continue
            raise
        if body.get("metadata", {}).get("uid") != uid:
            state.pending.pop(uid, None)
            continue
        body.setdefault("kind", "Pod")
        body.setdefault("apiVersion", "v1")
        try:
            await handle_pod(state, body, None)
        except kopf.TemporaryError as exc:
            log.info("retry of %s/%s: %s", ns, name, exc)
