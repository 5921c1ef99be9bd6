"""VirtualNetworks: converge OVN (switch, shared router, router port) and the allocator.

Level-based: create, resume after restart and spec update all run `ensure_network`. An update that
would strand live allocations is refused and the configuration in force (`status.appliedSpec`)
stays in OVN. Delete waits while any pod holds an address.

Selectors fail closed: a `namespaceSelector` the operator cannot parse (stored before the CRD schema
matched the parser) admits no namespace, at the rebuild and on every update, and the network says so
in its Ready condition and an Event. Transient failures raise `RetryLater` (Kopf's delay is set in
main.py).
"""
from __future__ import annotations

import datetime
import logging
from typing import Any

import kopf
import netaddr

from ovnvnet.ipam.allocator import NetworkAllocator
from ovnvnet.model import names
from ovnvnet.model.network import (
    NetworkSpec,
    SpecError,
    family_name,
    parse_network_spec,
    spec_conflicts,
    subnets_overlap,
)
from ovnvnet.model.selector import SelectorError, closed_selector, parse_selector
from ovnvnet.ovn.nb import NotOwnedError
from ovnvnet.reconcile.errors import RetryLater
from ovnvnet.reconcile.state import Network, State, network_rows

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ready_condition(status: str, reason: str, message: str, generation: int | None) -> list[dict[str, Any]]:
    cond: dict[str, Any] = {"type": "Ready", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": _now()}
    if generation is not None:
        cond["observedGeneration"] = generation
    return [cond]


def applied_spec_of(body: dict) -> NetworkSpec | None:
    raw = (body.get("status") or {}).get("appliedSpec")
    if not raw:
        return None
    try:
        return parse_network_spec(raw)
    except SpecError:
        return None


def cursor_of(body: dict, spec: NetworkSpec) -> dict[int, int | None]:
    """Each family's cursor from the status: ``status.cursor`` (the primary family, as always
    written) and ``status.families[].cursor``; a missing or bad one only changes the reuse order."""
    status = body.get("status") or {}
    raws = [status.get("cursor")] + [f.get("cursor") for f in status.get("families") or []
                                     if isinstance(f, dict)]
    out: dict[int, int | None] = {}
    for raw in raws:
        if not raw or not isinstance(raw, str):
            continue
        try:
            ip = netaddr.IPAddress(raw)
        except Exception:  # noqa: BLE001 - a bad cursor only changes the reuse order
            continue
        fam = spec.family(ip.version)
        if fam is not None and fam.contains(int(ip)) and ip.version not in out:
            out[ip.version] = int(ip)
    return out


def overlapping(state: State, name: str, spec: NetworkSpec) -> str | None:
    """Routed networks share one router, so their subnets must not overlap, family by family
    (isolated ones may). The message names both subnets and the other network."""
    if not spec.routed:
        return None
    for other in state.networks.values():
        if other.name != name and other.spec.routed:
            pair = subnets_overlap(spec, other.spec)
            if pair is not None:
                return f"subnet {pair[0]} overlaps network {other.name} ({pair[1]})"
    return None


def gateways_text(spec: NetworkSpec) -> str:
    return " and ".join(str(f.gateway) for f in spec.families)


def restore_network(state: State, body: dict) -> None:
    """Rebuild at start: create the allocator with the configuration in force (no OVN writes yet)."""
    name = body["metadata"]["name"]
    state.known_networks.add(name)
    spec = applied_spec_of(body)
    if spec is None:
        return  # never applied: ensure_network applies it
    selector = closed_selector((body.get("spec") or {}).get("namespaceSelector"))  # ensure_network reports it
    if selector is not None and selector.unreadable is not None:
        log.warning("network %s: namespaceSelector cannot be parsed, it admits no namespace: %s",
                    name, selector.unreadable)
    state.networks[name] = Network(name, spec, NetworkAllocator(name, spec, cursor_of(body, spec)), body,
                                   selector)


async def ensure_network(state: State, body: dict, logger: logging.Logger | Any = log) -> None:
    name = body["metadata"]["name"]
    generation = body["metadata"].get("generation")
    state.known_networks.add(name)
    try:
        spec = parse_network_spec(body.get("spec") or {})
    except SpecError as exc:
        await _not_ready(state, body, "InvalidSpec", str(exc), generation)
        return
    try:
        selector = parse_selector((body.get("spec") or {}).get("namespaceSelector"))
    except SelectorError as exc:
        await _selector_unreadable(state, body, exc, generation)
        return

    current = state.networks.get(name)
    if current is not None and current.spec != spec:
        held = {ip: h.pod for ip, h in current.allocator.holders().items()}
        conflicts = spec_conflicts(spec, held, current.spec)
        if conflicts:
            message = "update refused, the configuration in force is kept: " + "; ".join(conflicts)
            await _not_ready(state, body, "Conflict", message, generation, keep_applied=True)
            return
    overlap = overlapping(state, name, spec)
    if overlap is not None:
        message = overlap
        if current is not None:
            message = "update refused, the configuration in force is kept: " + message
        await _not_ready(state, body, "Overlap", message, generation, keep_applied=current is not None)
        return

    switch, router_port = network_rows(name, spec)
    try:
        async with state.nb_lock:
            await state.nb_call(state.nb.ensure_network, switch, router_port)
    except NotOwnedError as exc:
        await _not_ready(state, body, "NotOwned", str(exc), generation)
        return
    except Exception as exc:
        raise RetryLater(f"OVN NB transaction failed: {exc}", delay=2) from exc

    if current is None:
        allocator = NetworkAllocator(name, spec, cursor_of(body, spec))
    elif current.spec != spec:
        allocator = current.allocator.with_spec(spec)
    else:
        allocator = current.allocator
    state.networks[name] = Network(name, spec, allocator, body, selector)
    state.network_problems.pop(name, None)
    state.status.set_fields(
        name, appliedSpec=spec.to_dict(), gateway=str(spec.gateway), observedGeneration=generation,
        conditions=ready_condition(
            "True", "Applied",
            f"logical switch {name} and gateway{'s' if spec.dual_stack else ''} {gateways_text(spec)} "
            f"are in OVN" if spec.routed
            else f"logical switch {name} is in OVN (isolated: not routed)", generation),
    )
    state.wake.set()
    logger.info(f"network {name} applied: {spec.subnets_text()} gateway {gateways_text(spec)} "
                f"({'/'.join(family_name(v) for v in spec.versions)})")


async def _selector_unreadable(state: State, body: dict, exc: SelectorError, generation: int | None) -> None:
    """Fail closed: the network in force (if any) keeps its addresses but admits no namespace."""
    name = body["metadata"]["name"]
    current = state.networks.get(name)
    if current is not None:
        current.selector = closed_selector((body.get("spec") or {}).get("namespaceSelector"))
    message = f"spec.namespaceSelector cannot be parsed, so the network admits no namespace: {exc}"
    await _not_ready(state, body, "InvalidSelector", message, generation, keep_applied=current is not None)


async def _not_ready(state: State, body: dict, reason: str, message: str, generation: int | None,
                     *, keep_applied: bool = False) -> None:
    name = body["metadata"]["name"]
    if not keep_applied:
        state.network_problems[name] = message
    state.status.set_fields(name, observedGeneration=generation,
                            conditions=ready_condition("False", reason, message, generation))
    kopf.warn(body, reason=reason, message=message)
    log.warning("network %s: %s", name, message)


async def delete_network(state: State, body: dict) -> None:
    name = body["metadata"]["name"]
    holders = state.holders_of_network(name)
    if holders:
        pods = sorted({h.pod for h in holders.values()})
        shown = ", ".join(pods[:10]) + (f" and {len(pods) - 10} more" if len(pods) > 10 else "")
        message = f"deletion waits for {len(pods)} pod(s) holding addresses: {shown}"
        state.status.set_fields(name, conditions=ready_condition("False", "InUse", message, None))
        raise RetryLater(message, delay=3)
    try:
        async with state.nb_lock:
            await state.nb_call(state.nb.delete_network, name, names.router_port_name(name),
                                names.switch_router_port_name(name))
    except Exception as exc:
        raise RetryLater(f"OVN NB transaction failed: {exc}", delay=2) from exc
    state.networks.pop(name, None)
    state.known_networks.discard(name)
    state.network_problems.pop(name, None)
    state.status.forget(name)
    log.info("network %s deleted from OVN", name)
