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
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ovnvnet import config, metrics
from ovnvnet.ipam.allocator import AllocationError, Holder
from ovnvnet.kube.client import METADATA_LIST, KubeClient
from ovnvnet.kube.status import IPBLOCKS
from ovnvnet.model import names
from ovnvnet.model.annotation import (
    ERROR_ANNOTATION,
    LEGACY_ANNOTATION,
    RESULT_ANNOTATION,
)
from ovnvnet.model.iptext import ip_value
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


@dataclass
class Deferred:
    """What the rebuild leaves for `finish_rebuild`: the listed pods carrying a result, not yet
    checked against the records, and what the rest of the rebuild needs."""
    bodies: list[dict]                        # every listed pod (slim), in list order
    results: list[tuple[dict, list[str]]]     # (pod, its annotations' values) carrying a result
    admits: Callable[[str, str], bool]
    recorded: dict[str, dict[str, dict]]
    served: set[str] = field(default_factory=set)   # pod uids already handed to the watch
    started: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)


async def rebuild(state: State, nb_ready: asyncio.Task | None = None
                  ) -> tuple[str, list[dict], NbState, Deferred]:
    """`nb_ready`: the NB connection being made meanwhile (awaited before the NB is read).
    Returns the pod list's resourceVersion, the listed pods to handle now (those carrying no
    result: new requests), the NB read (from which the caller starts the first NB repair, in the
    background) and what `finish_rebuild` does next, while those pods are served.

    Order: networks; every pod (kept, not yet trusted); the records (IPBlocks, then NB ports,
    which take precedence), all networks; then, per network (`finish_rebuild`), the pods' result
    annotations naming it, checked against the records.

    What must be read before an allocation on network N is safe (nothing may be handed out that
    a pod holds): every address held on N. The operator writes an attach in this order: NB ports
    (1), the pod's result (2), the IPBlock entry (3, coalesced). So an address is recorded by
    N's NB ports (a crash after 1), or its IPBlock entries (the NB wiped), or, only when both were
    lost, by a pod's sealed result naming N (a gap filler: a crash between 2 and 3 and the NB
    wiped). IPClaims hold their addresses through IPBlock entries (podUID = the claim's key) and
    NB ports, so they are covered by the same records. Hence N is safe once (a) the IPBlocks and
    the NB ports are reserved (one IPBlock list and one NB read for all networks: per-network
    reads would cost more round trips than they save) and (b) every listed pod whose result names
    N is restored. (b) is the per-pod work (seal, decode, check): it is done network by network,
    first for the networks the new pods ask for, and `State.wait_rebuilt` holds any pod event
    naming a network not yet done (a pod whose result is not restored yet is never allocated or
    released for). The pod list itself is on the first pod's path anyway: that pod is found in
    it (or in the watch that starts from its resourceVersion). The leak sweep, the NB repair
    (orphan ports), the record rewrite and the claim watch never allocate on a network not yet
    rebuilt: they run after it or only release what no live pod holds."""
    started = time.monotonic()
    async for body in state.kube.list_all(VNETS):
        isolated("rebuild", f"network {(body.get('metadata') or {}).get('name')}",
                 network_rec.restore_network, state, body)

    listed = time.monotonic()
    list_meta: dict = {}
    bodies = [_slim(b) async for b in state.kube.list_all("/api/v1/pods", page=LIST_PAGE, meta=list_meta)]
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
    async for block in state.kube.list_all(IPBLOCKS, page=LIST_PAGE):
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
    admits = await _admission(state, bodies)
    phase("admission")
    # 2. the pods: those carrying a result are restored per network (finish_rebuild); those
    # carrying none are new requests (or pods the records alone hold: a crash before the result)
    deferred = Deferred(bodies, [], admits, recorded, started=started)
    fresh = []
    for body in bodies:
        annotations = body["metadata"].get("annotations") or {}
        if RESULT_ANNOTATION in annotations or LEGACY_ANNOTATION in annotations:
            deferred.results.append((body, [v for v in annotations.values() if isinstance(v, str)]))
        else:
            fresh.append(body)
    state.rebuilding = {name: asyncio.Event() for name in state.networks}
    if state.settings.default_network or not state.networks:
        # a legacy result names no network: restore everything before serving anything
        _restore(state, deferred, None)
    candidates = [b for b in fresh if isolated("rebuild", _pod_name(b), needs_handling, state, b)]
    deferred.served = {b["metadata"].get("uid", "") for b in candidates}
    phase("candidates")
    took = time.monotonic() - started
    metrics.REBUILD_SECONDS.set(took)
    deferred.counts = {"from_nb": from_nb, "from_status": from_status}
    log.info("rebuilt from records in %.2fs (pod list %.2fs; %s): %d networks, %d from NB ports, %d from the "
             "IPBlock record, %d pods carrying a result to check per network, %d new pods to handle now",
             took, listed, ", ".join(f"{k} {v:.2f}s" for k, v in phases.items()), len(state.networks),
             from_nb, from_status, len(deferred.results), len(candidates))
    return list_meta.get("resourceVersion", ""), candidates, actual, deferred


async def _test_pause(network: str) -> None:
    name, path = config.rebuild_pause()   # a test hook: config.REBUILD_PAUSE_ENV
    if not path or name != network:
        return
    log.warning("rebuild: %s=%s: network %s's pass waits until %s exists",
                config.REBUILD_PAUSE_ENV, name, network, path)
    while not os.path.exists(path):
        await asyncio.sleep(0.1)


LIST_PAGE = 500   # objects per list page at the rebuild (2000 cost ~40 MB more peak RSS at 10k pods for no gain)


RESTORE_SLICE = 100
"""Pods restored between two yields to the event loop in `finish_rebuild`: the pods being served
meanwhile go on between slices (one pass of 1,000 pods without a yield held a new pod's attach,
which takes several loop turns, until every pass was done)."""


def _restore(state: State, deferred: Deferred, network: str | None) -> int:
    """Restore the results of the pods not restored yet whose annotations name `network` (None:
    all of them), in list order; then `network` (or every network) counts as rebuilt."""
    restored = sum(bool(isolated("rebuild", _pod_name(body), pod_rec.restore_record, state, body, deferred.admits))
                   for body in _take(deferred, network))
    for name in ([network] if network is not None else list(state.rebuilding)):
        state.network_rebuilt(name)
    return restored


def _take(deferred: Deferred, network: str | None) -> list[dict]:
    """The pods not restored yet whose annotations name `network` (None: all), removed from
    `deferred.results`, in list order."""
    keep, taken = [], []
    for body, texts in deferred.results:
        if network is None or any(network in text for text in texts):
            taken.append(body)
        else:
            keep.append((body, texts))
    deferred.results = keep
    return taken


async def _restore_sliced(state: State, deferred: Deferred, network: str) -> int:
    """`_restore` of one network, yielding to the loop every RESTORE_SLICE pods."""
    restored = 0
    for i, body in enumerate(_take(deferred, network)):
        if i and i % RESTORE_SLICE == 0:
            await asyncio.sleep(0)
        restored += bool(isolated("rebuild", _pod_name(body), pod_rec.restore_record, state, body, deferred.admits))
    state.network_rebuilt(network)
    return restored


async def finish_rebuild(state: State, deferred: Deferred, first: list[dict]) -> list[dict]:
    """The rest of the rebuild, while new pods are served: the pods' results, network by network
    (first the networks the pods in `first` name, each marked rebuilt as soon as its pods are
    restored, so a pod waiting for it goes on), then the record rewrite. Returns the listed pods
    that still need handling and were not handed out before."""
    mark = time.monotonic()
    restored = 0
    wanted: list[str] = []
    for body in first:
        for name in state.networks_named(body["metadata"].get("annotations") or {}):
            if name not in wanted:
                wanted.append(name)
    for name in wanted + [n for n in list(state.rebuilding) if n not in wanted]:
        if name in state.rebuilding:
            await _test_pause(name)
            restored += await _restore_sliced(state, deferred, name)
            await asyncio.sleep(0)   # let the pods waiting for this network go on
    restored += _restore(state, deferred, None)   # results naming no known network
    results_s = time.monotonic() - mark
    # 3. make the record say exactly what the allocators hold
    for name in state.networks:
        isolated("rebuild", f"record of network {name}", _rewrite_record, state, name,
                 deferred.recorded.get(name, {}))
    candidates = [b for b in deferred.bodies if b["metadata"].get("uid", "") not in deferred.served
                  and isolated("rebuild", _pod_name(b), needs_handling, state, b)]
    took = time.monotonic() - deferred.started
    log.info("rebuild finished in %.2fs (pod results %.2fs, in the background): %d networks, %d from NB ports, "
             "%d from the IPBlock record, %d attached pods, %d refused results, %d more pods to handle",
             took, results_s, len(state.networks), deferred.counts.get("from_nb", 0),
             deferred.counts.get("from_status", 0), len(state.attached), len(state.refused), len(candidates))
    deferred.bodies, deferred.recorded = [], {}
    return candidates


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
        reserved = _reserve(state, network, ip, holder) or reserved
    return reserved


def _reserve_entry(state: State, network: str, ip: str, entry: dict) -> bool:
    """An IPBlock entry no NB port already decided."""
    if network not in state.networks:
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
    """Reserve one recorded address unless a record read before already holds it (the address
    is parsed once, and the family's allocator is given the int)."""
    net = state.networks[network]
    parsed = ip_value(ip) if isinstance(ip, str) else None
    fam = net.allocator.family(parsed[0]) if parsed is not None else None
    if parsed is None or fam is None:
        log.warning("rebuild: record %s on %s for %s skipped: not an address of the network's families",
                    ip, network, holder.pod)
        return False
    value = parsed[1]
    if fam.holder_of(value) is not None:
        return False
    try:
        fam.reserve(value, holder)
    except AllocationError as exc:
        log.warning("rebuild: record %s on %s for %s skipped: %s", ip, network, holder.pod, exc)
        return False
    state.hold(network, ip, fam.held_by(value), record_status=False)
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
