"""Exact recovery and drift repair.

`rebuild` runs once at start, before any pod is handled: the allocators are rebuilt from the three
records (the allocation record in the IPBlock objects, the pods' `ovnIfaceList`, the NB ports
ovnvnet owns),
then status and NB are repaired to match. `sweep` runs periodically: pods that no longer exist
(seen so on two consecutive passes) are released, and the NB is brought back to the desired rows
(a wiped NB is rebuilt with the same addresses).

The NB repair is a pure `plan_repair(desired, actual) -> RepairPlan` plus one executor.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import netaddr

from ovnvnet import metrics
from ovnvnet.ipam.allocator import AllocationError, Holder
from ovnvnet.kube.client import METADATA_LIST, KubeClient
from ovnvnet.kube.status import IPBLOCKS
from ovnvnet.model import names
from ovnvnet.ovn.nb import NbState, PortSpec, RouterPortSpec, SwitchSpec
from ovnvnet.reconcile import network as network_rec
from ovnvnet.reconcile import pod as pod_rec
from ovnvnet.reconcile.state import State, network_rows, port_spec, status_entry

log = logging.getLogger(__name__)


@dataclass
class RepairPlan:
    ensure_networks: list[tuple[SwitchSpec, RouterPortSpec]] = field(default_factory=list)
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
                  and actual.router_ports.get(rp.lrp_name) == (rp.mac, (rp.cidr,))
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
    nets = {name: network_rows(name, net.spec) for name, net in state.networks.items()}
    ports: dict[str, PortSpec] = {}
    for name, net in state.networks.items():
        for ip, holder in net.allocator.holders().items():
            p = port_spec(name, ip, holder)
            ports[p.name] = p
    return nets, ports


REPAIR_CHUNK = 500  # ports per repair transaction (a wiped NB with many pods is rebuilt in steps)


async def repair_nb(state: State, actual: NbState | None = None) -> RepairPlan:
    # Read the NB first, then snapshot the desired state: a port created after the read is not
    # in `actual`, so it can never be deleted by this pass. (The rebuild passes the read it made:
    # nothing writes to the NB before it returns.)
    if actual is None:
        actual = await state.nb_call(state.nb.read_owned)
    nets, ports = desired_state(state)
    # ports whose own NB commit is in flight are neither missing nor stale
    inflight = set(state.inflight_ports)
    for name in inflight:
        ports.pop(name, None)
        actual.ports.pop(name, None)
    plan = plan_repair(nets, ports, set(state.known_networks), actual)
    if not plan.empty():
        log.warning("NB drift repaired: %s", plan.summary())
        async with state.nb_lock:
            await state.nb_call(state.nb.apply, ensure_networks=plan.ensure_networks,
                                delete_router_ports=plan.delete_router_ports)
            for i in range(0, max(len(plan.ensure_ports), len(plan.delete_ports)), REPAIR_CHUNK):
                await state.nb_call(state.nb.apply, ensure_ports=plan.ensure_ports[i:i + REPAIR_CHUNK],
                                    delete_ports=plan.delete_ports[i:i + REPAIR_CHUNK])
            if plan.delete_switches:
                await state.nb_call(state.nb.apply, delete_switches=plan.delete_switches)
        metrics.NB_REPAIRS.inc()
    return plan


async def rebuild(state: State, nb_ready: "asyncio.Task | None" = None) -> tuple[str, list[dict], NbState]:
    """`nb_ready`: the NB connection being made meanwhile (awaited before the NB is read).
    Returns the pod list's resourceVersion, the listed pods that may need handling, and the NB
    read, from which the caller starts the first NB repair (in the background: new pods need the
    allocators, which are complete now, not the repair)."""
    started = time.monotonic()
    vnets = [v async for v in state.kube.list_all("/apis/ovnvnet.io/v1/virtualnetworks")]
    for body in vnets:
        network_rec.restore_network(state, body)

    # one list of every pod: the records of attached pods, the pods that still need something
    # (kept for the pod watch to handle), and the resourceVersion the watch starts from
    pods = 0
    listed = time.monotonic()
    list_meta: dict = {}
    candidates: list[dict] = []
    async for body in state.kube.list_all("/api/v1/pods", page=500, meta=list_meta):
        if pod_rec.restore_record(state, body):
            pods += 1
        elif pod_rec.REQUEST in ((body.get("metadata") or {}).get("annotations") or {}) \
                or state.settings.default_network or pod_rec.is_terminal(body):
            candidates.append(body)
    listed = time.monotonic() - listed

    # the allocation record (IPBlocks; e.g. the NB was wiped while the operator was down), read
    # while the NB replica syncs; applied after the NB ports, which take precedence
    recorded: dict[str, dict[str, dict]] = {}            # network -> ip -> entry
    async for block in state.kube.list_all(IPBLOCKS):
        network = (block.get("spec") or {}).get("network", "")
        for ip, entry in (block.get("allocations") or {}).items():
            if isinstance(entry, dict):
                recorded.setdefault(network, {})[ip] = entry
    # NB ports of pods that were never annotated (crash between the NB commit and the annotation)
    if nb_ready is not None:
        await nb_ready
    actual = await state.nb_call(state.nb.read_owned)
    from_nb = 0
    for port in actual.ports.values():
        ids = dict(port.external_ids)
        network, uid = ids.get(names.NETWORK_KEY), ids.get(names.POD_UID_KEY)
        net = state.networks.get(network or "")
        if net is None or not uid or not port.ip or net.allocator.holder_of(port.ip) is not None:
            continue
        holder = Holder(f"{ids.get(names.POD_NAMESPACE_KEY)}/{ids.get(names.POD_NAME_KEY)}", uid,
                        ids.get(names.INTERFACE_KEY, ""), port.mac)
        if _reserve(state, network, port.ip, holder):
            from_nb += 1

    from_status = 0
    for name, entries in recorded.items():
        net = state.networks.get(name)
        if net is None:
            continue
        for ip, entry in entries.items():
            if net.allocator.holder_of(ip) is not None:
                continue
            holder = Holder(entry.get("pod", ""), entry.get("podUID", ""), entry.get("interface", ""),
                            entry.get("mac", ""))
            if holder.pod_uid and _reserve(state, name, ip, holder):
                from_status += 1

    # make the record say exactly what the allocators hold
    for name, net in state.networks.items():
        have = recorded.get(name, {})
        holders = net.allocator.holders()
        for ip in set(have) - set(holders):
            state.status.set_allocation(name, ip, None)
        for ip, holder in holders.items():
            if have.get(ip) != status_entry(holder):
                state.status.set_allocation(name, ip, status_entry(holder))
        state.status.set_fields(name)  # refresh the counters
    took = time.monotonic() - started
    metrics.REBUILD_SECONDS.set(took)
    log.info("rebuilt from records in %.2fs (pod list %.2fs): %d networks, %d attached pods, %d from NB ports, "
             "%d from the IPBlock record", took, listed, len(state.networks), pods, from_nb, from_status)
    return list_meta.get("resourceVersion", ""), candidates, actual


def _reserve(state: State, network: str, ip: str, holder: Holder) -> bool:
    net = state.networks[network]
    try:
        net.allocator.reserve(netaddr.IPAddress(ip), holder)
    except AllocationError as exc:
        log.warning("rebuild: record %s on %s for %s skipped: %s", ip, network, holder.pod, exc)
        return False
    state.hold(network, ip, net.allocator.holder_of(ip), record_status=False)
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
    """Release pods gone on two consecutive passes, then repair NB drift."""
    live = await live_pods(state.kube)
    orphans = {uid for uid in state.holdings if uid not in live}
    confirmed = orphans & state.orphan_suspects
    state.orphan_suspects = orphans - confirmed
    for uid in confirmed:
        async with state.pod_lock(uid):
            if uid in state.holdings:
                await pod_rec.release_pod(state, uid, why="pod no longer exists (sweep)")
        state.locks.pop(uid, None)
        metrics.ORPHANS_RELEASED.inc()
    for uid in [u for u in state.pending if u not in live]:
        state.pending.pop(uid, None)
    # level-based safety net: a pod with a request and no answer that nothing is working on (its
    # event lost in a watch outage) is queued for the retry loop
    for uid, meta in live.items():
        ann = meta.get("annotations") or {}
        if (pod_rec.REQUEST in ann and pod_rec.RESULT not in ann and pod_rec.ERROR not in ann
                and uid not in state.attached and uid not in state.pending):
            state.pending[uid] = (meta.get("namespace", ""), meta.get("name", ""))
            state.wake.set()
    await repair_nb(state)
