"""Recovery: the rebuild at start, the periodic sweep, and the NB repair.

`rebuild` runs once at start, before any pod is handled. The operator's own records are the
truth and are read first: the NB ports ovnvnet owns (each carries its pod's UID) and the
allocation record in the IPBlock objects are reserved in the allocators; only then are the pods'
result annotations read, and one may only fill a gap that no record contradicts, for a pod whose
namespace the network admits (`pod.restore_record` / `pod.restore_claims`). A pod whose result
claims an address the records give to another pod is refused with `ovnNetworkError` and gets no
port; the record's holder keeps address and port. Then status and NB are repaired to match.

`sweep` runs periodically: pods that no longer exist (seen so on two consecutive passes) are
released, requests nobody answered are queued, and the NB is brought back to the desired rows (a
wiped NB is rebuilt with the same addresses).

Every step isolates failures per item: one pod, network, IPBlock entry or NB row that cannot be
handled is logged with its name and counted (`ovnvnet_isolated_failures_total`), and the round
(or the start-up) goes on.

The NB repair is a pure `plan_repair(desired, actual) -> RepairPlan`, a pure `drift_lines` (one
line per drifted row, as Neutron's OVN sync logs them), and one executor that applies the plan in
chunks, falling back to one row at a time when a chunk fails. `OVNVNET_REPAIR=log` only logs.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import netaddr

from ovnvnet import metrics
from ovnvnet.ipam.allocator import AllocationError, Holder
from ovnvnet.kube.client import METADATA_LIST, KubeClient
from ovnvnet.kube.status import IPBLOCKS
from ovnvnet.model import names
from ovnvnet.model.annotation import (
    ERROR_ANNOTATION,
    LEGACY_ANNOTATION,
    RESULT_ANNOTATION,
)
from ovnvnet.ovn.nb import NbState, PortSpec, RouterPortSpec, SwitchSpec
from ovnvnet.reconcile import claims
from ovnvnet.reconcile import network as network_rec
from ovnvnet.reconcile import pod as pod_rec
from ovnvnet.reconcile.podwatch import needs_handling
from ovnvnet.reconcile.state import State, network_rows, port_name_of, port_spec, status_entry

log = logging.getLogger(__name__)

VNETS = "/apis/ovnvnet.io/v1/virtualnetworks"


def isolated(stage: str, what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run one item's step; a failure is logged with the item's name, counted, and swallowed
    (returns None): one bad pod, network or row never stops the round or the start-up."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - isolation per item is the point
        metrics.ISOLATED_FAILURES.labels(stage).inc()
        log.error("%s: %s skipped after %s: %s", stage, what, type(exc).__name__, str(exc)[:300])
        return None


def _pod_name(body: dict) -> str:
    meta = body.get("metadata") or {}
    return f"pod {meta.get('namespace')}/{meta.get('name')}"


@dataclass
class RepairPlan:
    ensure_networks: list[tuple[SwitchSpec, RouterPortSpec | None]] = field(default_factory=list)
    ensure_ports: list[PortSpec] = field(default_factory=list)
    delete_ports: list[str] = field(default_factory=list)
    delete_router_ports: list[str] = field(default_factory=list)
    delete_switches: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.ensure_networks or self.ensure_ports or self.delete_ports
                    or self.delete_router_ports or self.delete_switches)

    def summary(self) -> str:
        return (f"networks+{len(self.ensure_networks)} ports+{len(self.ensure_ports)} "
                f"ports-{len(self.delete_ports)} router-ports-{len(self.delete_router_ports)} "
                f"switches-{len(self.delete_switches)}")


def plan_repair(desired_networks: dict[str, tuple[SwitchSpec, RouterPortSpec | None]],
                desired_ports: dict[str, PortSpec], known_networks: set[str], actual: NbState) -> RepairPlan:
    plan = RepairPlan()
    unrouted_ports: set[str] = set()
    for name, (sw, rp) in desired_networks.items():
        if rp is None:
            ok = name in actual.switches
            unrouted_ports.add(names.router_port_name(name))
        else:
            ok = (name in actual.switches and actual.router
                  and actual.router_ports.get(rp.lrp_name) == (rp.mac, rp.networks)
                  and actual.switch_router_ports.get(rp.lsp_name) == name)
        if not ok:
            plan.ensure_networks.append((sw, rp))
    for name, want in desired_ports.items():
        have = actual.ports.get(name)
        if have != want:
            plan.ensure_ports.append(want)
    unrouted = {name for name, (_, rp) in desired_networks.items() if rp is None}
    plan.delete_ports = sorted((set(actual.ports) - set(desired_ports)) | {
        lsp for lsp, sw in actual.switch_router_ports.items() if sw in unrouted or sw not in known_networks})
    plan.delete_switches = sorted(s for s in actual.switches if s not in known_networks)
    plan.delete_router_ports = sorted(
        lrp for lrp in actual.router_ports
        if (lrp.startswith("rtr-") and lrp[4:] not in known_networks) or lrp in unrouted_ports)
    return plan


def desired_state(state: State) -> tuple[dict[str, tuple[SwitchSpec, RouterPortSpec | None]], dict[str, PortSpec]]:
    """Snapshot (synchronous, so consistent) of the rows the NB should hold."""
    nets: dict[str, tuple[SwitchSpec, RouterPortSpec | None]] = {}
    ports: dict[str, PortSpec] = {}
    for name, net in state.networks.items():
        nets[name] = network_rows(name, net.spec)
        by_port: dict[str, tuple[list[str], Any]] = {}   # port -> (its addresses, IPv4 first; holder)
        for ip, holder in net.allocator.holders().items():
            if claims.is_claim_key(holder.pod_uid):
                continue   # held by an IPClaim no pod uses now: no port
            by_port.setdefault(port_name_of(holder), ([], holder))[0].append(ip)
        for ips, holder in by_port.values():
            p = port_spec(name, ips, holder)
            ports[p.name] = p
    return nets, ports


def drift_lines(plan: RepairPlan, actual: NbState) -> list[str]:
    """One line per drifted row, naming it and what differs (pure)."""
    lines = []
    for sw, rp in plan.ensure_networks:
        if sw.name not in actual.switches:
            lines.append(f"switch {sw.name} found in the records but not in NB")
        elif rp is not None and not actual.router:
            lines.append(f"router {names.ROUTER_NAME} missing in NB (network {sw.name} is routed)")
        elif rp is not None:
            lines.append(f"router port {rp.lrp_name} of network {sw.name} missing or different in NB "
                         f"(NB has {actual.router_ports.get(rp.lrp_name)}, the records {rp.mac} "
                         f"{' '.join(rp.cidrs)})")
        else:
            lines.append(f"switch {sw.name} differs in NB")
    for want in plan.ensure_ports:
        have = actual.ports.get(want.name)
        if have is None:
            lines.append(f"port {want.name} found in the records but not in NB "
                         f"(network {want.switch}, {want.mac} {want.ip})")
        else:
            lines.append(f"port {want.name} differs in NB: NB has {have.switch} {have.mac} {have.ip} "
                         f"{dict(have.external_ids)}, the records {want.switch} {want.mac} {want.ip} "
                         f"{dict(want.external_ids)}")
    for name in plan.delete_ports:
        switch = actual.switch_router_ports.get(name)
        if switch is not None:
            lines.append(f"router-type port {name} found in NB but network {switch} is gone or not routed")
            continue
        have = actual.ports.get(name)
        pod = dict(have.external_ids).get(names.POD_NAME_KEY) if have is not None else None
        lines.append(f"port {name} found in NB but not in the records"
                     + (f" (network {have.switch}, {have.ip}, pod {pod})" if have is not None else ""))
    for lrp in plan.delete_router_ports:
        lines.append(f"router port {lrp} found in NB but its network is gone or not routed")
    for sw_name in plan.delete_switches:
        lines.append(f"switch {sw_name} found in NB but no VirtualNetwork {sw_name} exists")
    return lines


def _plan(state: State, actual: NbState) -> RepairPlan:
    nets, ports = desired_state(state)
    # ports whose own NB commit is in flight are neither missing nor stale
    for name in set(state.inflight_ports):
        ports.pop(name, None)
        actual.ports.pop(name, None)
    return plan_repair(nets, ports, set(state.known_networks), actual)


REPAIR_CHUNK = 500  # rows per repair transaction (a wiped NB with many pods is rebuilt in steps)


async def repair_nb(state: State, actual: NbState | None = None) -> RepairPlan:
    """Compare the NB with the records and log one line per drifted row; in `repair` mode
    (default) bring the NB back to the records, one failing row never blocking the others."""
    # Read the NB first, then snapshot the desired state: a port created after the read is not
    # in `actual`, so it can never be deleted by this pass. (The rebuild passes the read it made:
    # nothing writes to the NB before it returns.)
    if actual is None:
        actual = await state.nb_call(state.nb.read_owned)
    log_only = state.settings.repair == "log"
    # The desired state is snapshotted and the plan applied under the NB lock: a network deleted
    # (or a port released) after the snapshot would otherwise be re-created by this pass.
    async with state.nb_lock:
        plan = _plan(state, actual)
        if plan.empty():
            return plan
        for line in drift_lines(plan, actual):
            log.warning("NB drift: %s%s", line, " (OVNVNET_REPAIR=log: left as is)" if log_only else "")
        if log_only:
            return plan
        failed = 0
        failed += await _apply_rows(state, "ensure_networks", plan.ensure_networks, lambda r: f"network {r[0].name}")
        failed += await _apply_rows(state, "delete_router_ports", plan.delete_router_ports,
                                    lambda r: f"router port {r}")
        failed += await _apply_rows(state, "ensure_ports", plan.ensure_ports, lambda r: f"port {r.name}")
        failed += await _apply_rows(state, "delete_ports", plan.delete_ports, lambda r: f"port {r}")
        failed += await _apply_rows(state, "delete_switches", plan.delete_switches, lambda r: f"switch {r}")
    log.warning("NB drift repaired: %s%s", plan.summary(),
                f"; {failed} row(s) failed, the next sweep tries again" if failed else "")
    metrics.NB_REPAIRS.inc()
    return plan


async def _apply_rows(state: State, what: str, rows: list, name_of: Callable[[Any], str]) -> int:
    """Apply one kind of repair in chunks; a chunk that fails is retried row by row so one bad
    row is logged by name and the rest are applied. Returns the number of rows that failed."""
    failed = 0
    for i in range(0, len(rows), REPAIR_CHUNK):
        chunk = rows[i:i + REPAIR_CHUNK]
        try:
            await state.nb_call(state.nb.apply, **{what: chunk})
            continue
        except Exception as exc:  # narrowed to the failing rows below (re-raised)
            if not state.nb.connected():
                raise   # the NB itself is unreachable: nothing to isolate, the next sweep retries
            if len(chunk) > 1:
                log.warning("NB repair: a transaction of %d rows (%s) failed (%s); applying them one by one",
                            len(chunk), what, exc)
        for row in chunk:
            try:
                await state.nb_call(state.nb.apply, **{what: [row]})
            except Exception as exc:  # noqa: BLE001 - isolated per row
                failed += 1
                metrics.ISOLATED_FAILURES.labels("repair").inc()
                log.warning("NB repair of %s failed: %s", name_of(row), exc)
    return failed


async def rebuild(state: State, nb_ready: asyncio.Task | None = None) -> tuple[str, list[dict], NbState]:
    """`nb_ready`: the NB connection being made meanwhile (awaited before the NB is read).
    Returns the pod list's resourceVersion, the listed pods that need handling, and the NB read,
    from which the caller starts the first NB repair (in the background: new pods need the
    allocators, which are complete now, not the repair).

    Order: networks; every pod (kept, not yet trusted); the records (IPBlocks, then NB ports,
    which take precedence); only then the pods' result annotations, checked against the records."""
    started = time.monotonic()
    async for body in state.kube.list_all(VNETS):
        isolated("rebuild", f"network {(body.get('metadata') or {}).get('name')}",
                 network_rec.restore_network, state, body)

    listed = time.monotonic()
    list_meta: dict = {}
    bodies = [_slim(b) async for b in state.kube.list_all("/api/v1/pods", page=500, meta=list_meta)]
    listed = time.monotonic() - listed

    # the allocation record (IPBlocks; e.g. the NB was wiped while the operator was down), read
    # while the NB replica syncs
    phases: dict[str, float] = {}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases[name], mark = now - mark, now

    recorded: dict[str, dict[str, dict]] = {}            # network -> ip -> entry
    async for block in state.kube.list_all(IPBLOCKS):
        isolated("rebuild", f"IPBlock {(block.get('metadata') or {}).get('name')}", _read_block, block, recorded)
    phase("ipblocks")
    if nb_ready is not None:
        await nb_ready
    phase("nb connect")
    actual = await state.nb_call(state.nb.read_owned)
    phase("nb read")

    # 1. the records: NB ports first (they carry the pod UID), then the IPBlock entries
    from_nb = sum(bool(isolated("rebuild", f"NB port {port.name}", _reserve_port, state, port))
                  for port in actual.ports.values())
    from_status = 0
    for name, entries in recorded.items():
        for ip, entry in entries.items():
            from_status += bool(isolated("rebuild", f"IPBlock entry {ip} of {name}", _reserve_entry,
                                         state, name, ip, entry))
    phase("records")
    # 2. the annotations, checked against the records
    admits = await _admission(state, bodies)
    phase("admission")
    pods = sum(bool(isolated("rebuild", _pod_name(b), pod_rec.restore_record, state, b, admits)) for b in bodies)
    phase("annotations")

    # 3. make the record say exactly what the allocators hold
    for name in state.networks:
        isolated("rebuild", f"record of network {name}", _rewrite_record, state, name, recorded.get(name, {}))
    phase("record rewrite")
    candidates = [b for b in bodies if isolated("rebuild", _pod_name(b), needs_handling, state, b)]
    phase("candidates")
    took = time.monotonic() - started
    metrics.REBUILD_SECONDS.set(took)
    log.info("rebuilt from records in %.2fs (pod list %.2fs; %s): %d networks, %d from NB ports, %d from the IPBlock "
             "record, %d attached pods, %d refused results, %d pods to handle", took, listed,
             ", ".join(f"{k} {v:.2f}s" for k, v in phases.items()), len(state.networks),
             from_nb, from_status, pods, len(state.refused), len(candidates))
    return list_meta.get("resourceVersion", ""), candidates, actual


def _slim(body: dict) -> dict:
    """What the pod path reads of a listed pod (every pod is kept until the records are read)."""
    meta = dict(body.get("metadata") or {})
    meta.pop("managedFields", None)
    return {"kind": "Pod", "apiVersion": "v1", "metadata": meta,
            "spec": {"hostNetwork": (body.get("spec") or {}).get("hostNetwork", False)},
            "status": {"phase": (body.get("status") or {}).get("phase")}}


def _read_block(block: dict, recorded: dict[str, dict[str, dict]]) -> None:
    network = (block.get("spec") or {}).get("network", "")
    allocations = block.get("allocations") or {}
    if not isinstance(allocations, dict):
        raise ValueError(f"allocations is a {type(allocations).__name__}, not a map")
    for ip, entry in allocations.items():
        if isinstance(entry, dict):
            recorded.setdefault(network, {})[ip] = entry


def _reserve_port(state: State, port: PortSpec) -> bool:
    """An NB port ovnvnet owns: reserved for the pod UID it carries (also a pod that crashed
    between the NB commit and the annotation)."""
    ids = dict(port.external_ids)
    network, uid = ids.get(names.NETWORK_KEY, ""), ids.get(names.POD_UID_KEY)
    net = state.networks.get(network)
    if net is None or not uid or not port.ips:
        return False
    holder = Holder(f"{ids.get(names.POD_NAMESPACE_KEY)}/{ids.get(names.POD_NAME_KEY)}", uid,
                    ids.get(names.INTERFACE_KEY, ""), port.mac, ids.get(names.CLAIM_KEY, ""),
                    ids.get(names.CLAIM_UID_KEY, ""))
    reserved = False
    for ip in port.ips:   # one address per family
        if net.allocator.holder_of(ip) is None:
            reserved = _reserve(state, network, ip, holder) or reserved
    return reserved


def _reserve_entry(state: State, network: str, ip: str, entry: dict) -> bool:
    """An IPBlock entry no NB port already decided."""
    net = state.networks.get(network)
    if net is None or net.allocator.holder_of(ip) is not None:
        return False
    fields = [entry.get(k, "") for k in ("pod", "podUID", "interface", "mac", "claim", "claimUID")]
    if not all(isinstance(f, str) for f in fields):
        raise ValueError(f"entry {entry!r:.200} has a field that is not a string")
    holder = Holder(*fields)
    return bool(holder.pod_uid) and _reserve(state, network, ip, holder)


def _rewrite_record(state: State, name: str, have: dict[str, dict]) -> None:
    holders = state.networks[name].allocator.holders()
    for ip in set(have) - set(holders):
        state.status.set_allocation(name, ip, None)
    for ip, holder in holders.items():
        if have.get(ip) != status_entry(holder):
            state.status.set_allocation(name, ip, status_entry(holder))
    state.status.set_fields(name)  # refresh the counters


async def _admission(state: State, bodies: list[dict]) -> Callable[[str, str], bool]:
    """`admits(network, namespace)` for the annotations' gap-filling. Namespace labels are read
    only when a network has a namespaceSelector: one list (or, without the right to list, one get
    per namespace holding a result); a namespace whose labels cannot be read is admitted by no
    selector (fail closed: its pods are attached anew and checked then)."""
    if all(net.selector is None for net in state.networks.values()):
        return lambda network, namespace: True
    labels: dict[str, dict] = {}
    try:
        async for body in state.kube.list_all("/api/v1/namespaces"):
            meta = body.get("metadata") or {}
            labels[meta.get("name", "")] = meta.get("labels") or {}
    except Exception as exc:  # noqa: BLE001 - fall back to one get per namespace
        log.info("rebuild: namespaces not listed (%s); reading them one by one", exc)
        wanted = {(b.get("metadata") or {}).get("namespace", "") for b in bodies
                  if set((b.get("metadata") or {}).get("annotations") or {}) & {RESULT_ANNOTATION, LEGACY_ANNOTATION}}
        for ns in sorted(wanted):
            try:
                labels[ns] = await state.namespace_labels(ns)
            except Exception as err:  # noqa: BLE001 - fail closed for that namespace
                metrics.ISOLATED_FAILURES.labels("rebuild").inc()
                log.warning("rebuild: labels of namespace %s unreadable (%s): no selector admits it", ns, err)

    def admits(network: str, namespace: str) -> bool:
        net = state.networks.get(network)
        if net is None or net.selector is None:
            return True
        return namespace in labels and net.selector.matches(labels[namespace])
    return admits


def _reserve(state: State, network: str, ip: str, holder: Holder) -> bool:
    net = state.networks[network]
    try:
        net.allocator.reserve(netaddr.IPAddress(ip), holder)
    except AllocationError as exc:
        log.warning("rebuild: record %s on %s for %s skipped: %s", ip, network, holder.pod, exc)
        return False
    state.hold(network, ip, net.allocator.held_by(ip), record_status=False)
    return True


async def live_pods(kube: KubeClient) -> dict[str, dict]:
    """Every pod's metadata by UID, from a paginated metadata-only list (no specs or statuses)."""
    uids: dict[str, dict] = {}
    cont = None
    while True:
        params = {"limit": "1000"}
        if cont:
            params["continue"] = cont
        out = await kube.request("GET", "/api/v1/pods", params=params, accept=METADATA_LIST)
        for item in out.get("items") or []:  # a metadata list has "items": null when empty
            uids[item["metadata"]["uid"]] = item["metadata"]
        cont = out.get("metadata", {}).get("continue")
        if not cont:
            return uids


async def sweep(state: State) -> None:
    """Release pods gone on two consecutive passes, queue unanswered requests, then repair NB
    drift. Each pod on its own: one pod's failure is logged and counted, the sweep goes on."""
    live = await live_pods(state.kube)
    orphans = {uid for uid in state.holdings if uid not in live and not claims.is_claim_key(uid)}
    confirmed = orphans & state.orphan_suspects
    state.orphan_suspects = orphans - confirmed
    for uid in confirmed:
        try:
            await _release_orphan(state, uid)
        except Exception as exc:  # noqa: BLE001 - isolated per pod; the next sweep retries it
            metrics.ISOLATED_FAILURES.labels("sweep").inc()
            state.orphan_suspects.add(uid)
            log.warning("sweep: releasing pod uid %s failed: %s", uid, exc)
    for uid in [u for u in state.pending if u not in live]:
        state.pending.pop(uid, None)
    # level-based safety net: a pod with a request and no answer that nothing is working on (its
    # event lost in a watch outage) is queued for the retry loop
    for uid, meta in live.items():
        ann = meta.get("annotations") or {}
        asks = pod_rec.asks_ovnvnet(state, ann, meta.get("namespace", ""))
        if (asks and RESULT_ANNOTATION not in ann and ERROR_ANNOTATION not in ann
                and uid not in state.pending and needs_handling(state, {"metadata": meta})):
            state.pending[uid] = (meta.get("namespace", ""), meta.get("name", ""))
            state.wake.set()
    await claims.sweep(state)
    await repair_nb(state)


async def _release_orphan(state: State, uid: str) -> None:
    async with state.pod_lock(uid):
        if uid in state.holdings:
            await pod_rec.release_pod(state, uid, why="pod no longer exists (sweep)")
    state.locks.pop(uid, None)
    state.refused.pop(uid, None)
    metrics.ORPHANS_RELEASED.inc()
