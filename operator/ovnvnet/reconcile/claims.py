"""IPClaims: addresses that outlive a pod (issue 15).

An `IPClaim` (namespaced, `ovnvnet.io/v1`, crds/ipclaims.ovnvnet.io.yaml; after
k8snetworkplumbingwg/ipamclaims' IPAMClaim) names a network and an interface. A pod uses it per
interface with ``"claim": "<name>"`` in its `ovnNetwork` entry; a StatefulSet pod whose template
carries ``ovnvnet.io/keep-addresses: "true"`` uses, per interface, the claim ``<pod>.<interface>``,
which the operator creates owned by the StatefulSet (the garbage collector deletes it with it)
unless the user created it ahead of the pod (then it is the user's: used, never deleted).

Requested addresses (a static address per StatefulSet ordinal, or for any claim): ``spec.ips``
(one per family) and ``spec.mac`` (model/claims.py). Such a claim holds exactly those from the
moment the operator sees it (`bind_requested`, on the claim's watch event and again by the
sweep until it succeeds), before any pod uses it; why it cannot (outside the subnet, the
gateway, excluded, held by another pod or claim, a namespace the network does not admit) is its
``Ready=False`` condition, and a pod using it meanwhile asks for exactly those addresses (refused
with the same message, naming the claim: retried while the address is held by someone else).

Holding (the allocator is the truth, the IPBlocks and NB ports its records):
- while a pod uses the claim, the addresses are held by the pod (`Holder` of the pod) *tagged*
  with the claim (`Holder.claim`, `claim_uid`): the NB port's external_ids and the IPBlock entry
  say so (``ovnvnet.io/claim``/``claim-uid``; ``claim``/``claimUID``);
- when that pod is released (deleted, finished, swept), the addresses stay held by the claim
  itself: a podless holder (``pod: "ipclaim <ns>/<name>"``, ``podUID: "claim:<claim uid>"``,
  no NB port), recorded in the IPBlocks like any holder, so a restart recovers it exactly;
- the next pod using the claim takes them over (same addresses, same MAC) atomically (no await
  between giving them up and taking them); a static request for them meanwhile is refused as
  held (and waits), like any held address;
- a claim whose object is gone (deleted, garbage-collected, also while the operator was down)
  is released by the sweep; one used by a pod is released when that pod goes.

A pod asking for a claim another live pod uses is refused with `ovnNetworkErrorRetry` naming that
pod (the new StatefulSet pod waits while its predecessor is Terminating and still running) and is
attached as soon as the predecessor is released. The claim's spec must name the request's network
and interface; the network's namespaceSelector applies as for any request.

StatefulSet scale-down: the claims of ordinals at or beyond `spec.replicas` that no pod uses are
deleted after `OVNVNET_CLAIM_RETENTION` seconds (default 300) counted from when the sweep first sees
them so: a scale-down undone within that time (a rollout, a maintenance) gives the ordinals their
addresses back, as `persistentVolumeClaimRetentionPolicy.whenScaled: Retain` keeps volumes, while
a lasting scale-down does not hold addresses forever (`Delete` after a grace period).

Who holds a claim's addresses is indexed (`State.claim_index`, claim uid -> (network, ip), kept by
`State.hold`/`unhold`): finding a claim's user is a lookup, not a scan of its network.

The claim's status (`ips`, `mac`, `ownerPod`, a `Ready` condition) is the operator's report; nothing
reads it back. It is written when it changes: every hold or release of a claim's address marks the
claim (`State.claim_changed`), `report_loop` writes the marked claims' status a moment later
(coalesced; only when it differs from the object's, guarded by the claim's UID), and the claim watch
(`ClaimWatch`, list then watch, no Kopf worker per object) keeps the objects it compares with; the
sweep compares every claim again as a safety net.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from typing import Any

import netaddr

from ovnvnet.ipam.allocator import AddressHeld, AllocationError, Holder, NetworkAllocator, NetworkExhausted
from ovnvnet.kube.client import ApiError
from ovnvnet.model.annotation import InterfaceRequest
from ovnvnet.model.claims import ClaimSpec, ClaimSpecError, parse_claim_spec
from ovnvnet.model.iptext import ip_text, ip_value
from ovnvnet.reconcile.errors import RequestRefused, RetryLater
from ovnvnet.reconcile.state import State

log = logging.getLogger(__name__)

GROUP_VERSION = "ovnvnet.io/v1"
KIND = "IPClaim"
ALL_CLAIMS = "/apis/ovnvnet.io/v1/ipclaims"
KEEP_ANNOTATION = "ovnvnet.io/keep-addresses"
STATEFULSET_LABEL = "ovnvnet.io/statefulset"
ORDINAL_LABEL = "ovnvnet.io/ordinal"
HOLDER_PREFIX = "claim:"
_ORDINAL = re.compile(r"^(.+)-(0|[1-9][0-9]*)$")
REPORT_DELAY = 0.2    # seconds: a burst of changes (every interface of an attach) is one status write
WATCH_TIMEOUT = 60
YIELD_EVERY = 100     # claims handled between two yields to the event loop when listing


def claim_path(namespace: str, name: str = "", *, status: bool = False) -> str:
    path = f"/apis/ovnvnet.io/v1/namespaces/{namespace}/ipclaims"
    return path + (f"/{name}" if name else "") + ("/status" if status else "")


def is_claim_key(uid: str) -> bool:
    """Whether a holdings key (a holder's pod_uid) is a claim's podless hold, not a pod."""
    return uid.startswith(HOLDER_PREFIX)


def claim_holder(ref: str, uid: str, interface: str, mac: str) -> Holder:
    return Holder(f"ipclaim {ref}", HOLDER_PREFIX + uid, interface, mac, ref, uid)


@dataclass(frozen=True)
class Bound:
    """One interface's claim, resolved: ``ref`` ``namespace/name`` and the object's UID."""
    ref: str
    uid: str
    network: str
    interface: str
    ips: tuple[netaddr.IPAddress, ...] = ()   # the claim's requested addresses (spec.ips)
    mac: str | None = None                    # and MAC (spec.mac)


def wants_claims(annotations: dict, reqs: list[InterfaceRequest]) -> bool:
    return any(r.claim for r in reqs) or KEEP_ANNOTATION in annotations


# ---------------------------------------------------------------- attach: resolve (async), take, tag (sync)
async def resolve(state: State, body: dict, reqs: list[InterfaceRequest]
                  ) -> tuple[list[InterfaceRequest], dict[str, Bound]]:
    """Read the claims a pod's request uses (creating a StatefulSet pod's own claims) and check
    them against the request; the requests come back with ``claim`` filled in."""
    meta = body.get("metadata") or {}
    ns, name = meta.get("namespace", ""), meta.get("name", "")
    sts = await _statefulset_of(state, body) if KEEP_ANNOTATION in (meta.get("annotations") or {}) else None
    out: list[InterfaceRequest] = []
    bound: dict[str, Bound] = {}
    for req in reqs:
        claim = req.claim or (f"{name}.{req.interface}" if sts is not None else None)
        if claim is None:
            out.append(req)
            continue
        obj = await _get(state, ns, claim)
        if obj is None and sts is not None and not req.claim:
            obj = await _create_for_statefulset(state, ns, claim, req, sts, name)
        if obj is None:
            raise RequestRefused(f"interface {req.interface}: IPClaim {ns}/{claim} does not exist",
                                 retry=True, reason="UnknownClaim")
        raw = obj.get("spec") or {}
        if raw.get("network") != req.network or raw.get("interface") != req.interface:
            raise RequestRefused(
                f"interface {req.interface} on {req.network}: IPClaim {ns}/{claim} is for network "
                f"{raw.get('network')} interface {raw.get('interface')}", retry=False, reason="InvalidClaim")
        try:
            spec = parse_claim_spec(raw, f"{ns}/{claim}")
        except ClaimSpecError as exc:
            raise RequestRefused(f"interface {req.interface}: {exc}", retry=False, reason="InvalidClaim") from None
        if sts is not None and not req.claim and _set_owner(obj) not in (None, sts["metadata"]["uid"]):
            raise RequestRefused(f"interface {req.interface}: IPClaim {ns}/{claim} belongs to another "
                                 f"StatefulSet {sts['metadata']['name']} (an earlier one?); waiting for its deletion",
                                 retry=True, reason="ClaimInUse")
        bound[req.interface] = Bound(f"{ns}/{claim}", obj["metadata"]["uid"], req.network, req.interface,
                                     spec.ips, spec.mac)
        out.append(replace(req, claim=claim))
    return out, bound


async def _get(state: State, ns: str, name: str) -> dict | None:
    try:
        return dict(await state.kube.get(claim_path(ns, name)))
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise RetryLater(f"reading IPClaim {ns}/{name} failed: {exc}") from exc


async def _statefulset_of(state: State, body: dict) -> dict:
    """The StatefulSet controlling the pod, checked (the ownerReference is the pod creator's
    input: the object must exist with that UID, and the pod's name be ``<set>-<ordinal>``)."""
    meta = body.get("metadata") or {}
    value = (meta.get("annotations") or {}).get(KEEP_ANNOTATION)
    owner = next((o for o in meta.get("ownerReferences") or []
                  if o.get("kind") == "StatefulSet" and o.get("controller")), None)
    if value != "true":
        raise RequestRefused(f'{KEEP_ANNOTATION}: {value!r} is not "true" (remove it to let addresses go with '
                             f"the pod)", retry=False, reason="InvalidRequest")
    match = _ORDINAL.match(meta.get("name", ""))
    if owner is None or match is None or match.group(1) != owner.get("name"):
        raise RequestRefused(f"{KEEP_ANNOTATION} applies to StatefulSet pods only (pod {meta.get('name')} is not "
                             f"controlled by a StatefulSet); use \"claim\" in ovnNetwork entries instead",
                             retry=False, reason="InvalidRequest")
    path = f"/apis/apps/v1/namespaces/{meta.get('namespace')}/statefulsets/{owner['name']}"
    try:
        sts = dict(await state.kube.get(path))
    except ApiError as exc:
        raise RequestRefused(f"StatefulSet {owner['name']} of pod {meta.get('name')} cannot be read: {exc}",
                             retry=True, reason="UnknownClaim") from None
    if sts["metadata"]["uid"] != owner.get("uid"):
        raise RequestRefused(f"pod {meta.get('name')}: its StatefulSet {owner['name']} has another UID "
                             f"(an ownerReference to a deleted set?)", retry=False, reason="InvalidRequest")
    return sts


def _owned_by(obj: dict, sts: dict) -> bool:
    return any(o.get("uid") == sts["metadata"]["uid"] for o in obj["metadata"].get("ownerReferences") or [])


def _set_owner(obj: dict) -> str | None:
    """The UID of the StatefulSet owning a claim (None: a claim the user created, e.g. ahead of
    the pod with the ordinal's requested addresses: used by the member, never deleted by ovnvnet)."""
    return next((o.get("uid") for o in obj["metadata"].get("ownerReferences") or []
                 if o.get("kind") == "StatefulSet"), None)


async def _create_for_statefulset(state: State, ns: str, claim: str, req: InterfaceRequest, sts: dict,
                                  pod: str) -> dict | None:
    ordinal = pod.rsplit("-", 1)[1]
    body = {"apiVersion": GROUP_VERSION, "kind": KIND,
            "metadata": {"name": claim, "namespace": ns,
                         "labels": {STATEFULSET_LABEL: sts["metadata"]["name"], ORDINAL_LABEL: ordinal},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                              "name": sts["metadata"]["name"], "uid": sts["metadata"]["uid"],
                                              "blockOwnerDeletion": False}]},
            "spec": {"network": req.network, "interface": req.interface}}
    try:
        created = dict(await state.kube.request("POST", claim_path(ns), body=body))
        log.info("created IPClaim %s/%s for StatefulSet %s", ns, claim, sts["metadata"]["name"])
        return created
    except ApiError as exc:
        if exc.status == 409:
            return await _get(state, ns, claim)
        raise RetryLater(f"creating IPClaim {ns}/{claim} failed: {exc}") from exc


def take(state: State, uid: str, reqs: list[InterfaceRequest], bound: dict[str, Bound],
         undo: AsyncExitStack) -> list[InterfaceRequest]:
    """Synchronous, right before the request is validated and allocated: a claim's podless hold
    is given up for this pod, and its request asks for exactly those addresses and MAC (``undo``
    gives them back to the claim if the attach fails; its callbacks run after the pod's own
    addresses are released). A claim another pod uses refuses the pod (retried)."""
    out = []
    for req in reqs:
        b = bound.get(req.interface)
        net = state.networks.get(req.network)
        if b is None or net is None:   # no claim; or no network: validate_request says so
            out.append(req)
            continue
        held = net.allocator.find_all(HOLDER_PREFIX + b.uid, b.interface)
        if not held:
            user = _user_of(state, b)
            if user is not None and user.pod_uid != uid:
                raise RequestRefused(f"IPClaim {b.ref} is used by pod {user.pod} (interface {user.interface}); "
                                     f"waiting until that pod is gone", retry=True, reason="ClaimInUse")
            out.append(_requested(net.allocator, uid, req, b) if user is None and (b.ips or b.mac) else req)
            continue
        holder = net.allocator.held_by(held[0])
        asked = {str(ip) for ip in req.ips} - {str(ip) for ip in held}
        if asked or (req.mac is not None and req.mac != holder.mac):
            raise RequestRefused(f"interface {req.interface} on {req.network}: IPClaim {b.ref} holds "
                                 f"{' '.join(str(ip) for ip in held)} {holder.mac}, the request asks "
                                 f"{' '.join(sorted(asked)) or req.mac}; remove the static address or use "
                                 f"another claim",
                                 retry=False, reason="InvalidClaim")
        for ip in held:
            state.unhold(req.network, str(ip))
        undo.callback(_give_back, state, req.network, held, holder)
        out.append(replace(req, ip=held[0], ips=held, mac=holder.mac))
    return out


def _requested(alloc: NetworkAllocator, uid: str, req: InterfaceRequest, b: Bound) -> InterfaceRequest:
    """A claim asking for addresses it does not hold yet (its own hold failed: taken, or not made
    yet): the request asks for exactly those, checked here so that the message names the claim.
    A static address or MAC in the request must be the claim's."""
    wanted = {ip.version: ip for ip in b.ips}
    other = [ip for ip in req.ips if wanted.get(ip.version) != ip]
    if other or (req.mac is not None and b.mac is not None and req.mac != b.mac):
        raise RequestRefused(f"interface {req.interface} on {req.network}: IPClaim {b.ref} asks for "
                             f"{' '.join(str(ip) for ip in b.ips) or 'no address'} {b.mac or ''}".rstrip()
                             + f", the request asks {' '.join(str(ip) for ip in other) or req.mac}; remove the "
                             f"static address or use another claim", retry=False, reason="InvalidClaim")
    try:
        check_requested(alloc, uid, b.interface, b.ips, b.mac)
    except AddressHeld as exc:
        raise RequestRefused(f"interface {req.interface}: IPClaim {b.ref}: {exc}", retry=True,
                             reason="AddressUnavailable") from None
    except AllocationError as exc:
        raise RequestRefused(f"interface {req.interface}: IPClaim {b.ref}: {exc}", retry=False,
                             reason="InvalidAddress") from None
    ips = tuple(sorted({**{ip.version: ip for ip in req.ips}, **wanted}.values(), key=lambda ip: ip.version))
    return replace(req, ip=ips[0] if ips else None, ips=ips, mac=b.mac or req.mac)


def check_requested(alloc: NetworkAllocator, uid: str, interface: str, ips: tuple[netaddr.IPAddress, ...],
                    mac: str | None) -> None:
    """Whether a claim's requested addresses and MAC can be held by (uid, interface): the
    allocator's AllocationError (AddressHeld: held by someone else), worded for the claim's fields."""
    try:
        for ip in ips:
            alloc.check_static(ip, uid, interface)
        if mac is not None:
            alloc.check_mac(mac, uid, interface)
    except AllocationError as exc:
        raise type(exc)(claim_words(str(exc))) from None


def claim_words(message: str) -> str:
    """An allocator message about a request's fields, said of a claim's (spec.ips, spec.mac)."""
    return message.replace("ip_address", "spec.ips").replace("mac_address", "spec.mac")


def tag(state: State, taken: list[tuple[str, str, Holder]], bound: dict[str, Bound]) -> list[tuple[str, str, Holder]]:
    """Mark the pod's claimed addresses as held for their claim (synchronous, after allocation)."""
    out = []
    for network, ip, holder in taken:
        b = bound.get(holder.interface)
        if b is not None and b.network == network and holder.claim_uid != b.uid:
            alloc = state.networks[network].allocator
            alloc.release(ip)
            holder = replace(holder, claim=b.ref, claim_uid=b.uid)
            alloc.reserve(netaddr.IPAddress(ip), holder)
            state.hold(network, ip, holder, record_status=False)   # indexed for the claim
        out.append((network, ip, holder))
    return out


def _give_back(state: State, network: str, ips: tuple[netaddr.IPAddress, ...], holder: Holder) -> None:
    net = state.networks.get(network)
    for ip in ips:
        try:
            if net is None:
                raise AllocationError(f"network {network} is gone")
            net.allocator.reserve(ip, holder)
        except AllocationError as exc:
            log.error("IPClaim %s: %s on %s could not be held again: %s", holder.claim, ip, network, exc)
            continue
        state.hold(network, str(ip), net.allocator.held_by(ip))


def _user_of(state: State, b: Bound) -> Holder | None:
    """The pod holding the claim's addresses now, if any (the claim index: no scan)."""
    return next((h for _, h in held_for(state, b.uid) if not is_claim_key(h.pod_uid)), None)


def held_for(state: State, uid: str) -> list[tuple[str, Holder]]:
    """[(ip, holder)] of every address held for the claim (by a pod or by itself), from the index."""
    out = []
    for network, ip in state.claim_index.get(uid, ()):
        net = state.networks.get(network)
        holder = net.allocator.holder_of(ip) if net is not None else None
        if holder is not None:
            out.append((ip, holder))
    return out


# ---------------------------------------------------------------- release
def retain(state: State, network: str, ip: str, holder: Holder) -> None:
    """After a pod's address was released: an address held for a claim stays held by the claim."""
    net = state.networks.get(network)
    if not holder.claim or net is None or is_claim_key(holder.pod_uid) or holder.claim_uid in state.claims_deleted:
        return   # (a claim seen deleted: the address goes with its last pod)
    kept = claim_holder(holder.claim, holder.claim_uid, holder.interface, holder.mac)
    try:
        net.allocator.reserve(netaddr.IPAddress(ip), kept)
    except AllocationError as exc:
        log.error("IPClaim %s: %s on %s not kept: %s", holder.claim, ip, network, exc)
        return
    state.hold(network, ip, net.allocator.held_by(ip))


def release_claim(state: State, key: str, why: str) -> None:
    held = sorted(state.holdings.get(key, ()))
    for network, ip in held:
        state.unhold(network, ip)
    if held:
        log.info("released IPClaim uid %s (%s): %s", key[len(HOLDER_PREFIX):], why,
                 ", ".join(f"{n}/{ip}" for n, ip in held))


# ---------------------------------------------------------------- requested addresses: bind
async def bind_requested(state: State, obj: dict) -> None:
    """A claim asking for addresses (spec.ips / spec.mac) and holding none: hold exactly those,
    by the claim itself, if the network admits the claim's namespace and they are free; else
    say why in the claim's problem (its Ready condition). Retried by `rebind` (the retry loop,
    woken by releases and network changes) and by the sweep."""
    meta = obj["metadata"]
    uid, ns = meta["uid"], meta["namespace"]
    ref = f"{ns}/{meta['name']}"
    if uid in state.claim_index:   # held already (by the claim, or by the pod using it)
        _problem(state, uid, None)
        return
    try:
        spec = parse_claim_spec(obj.get("spec"), ref)
    except ClaimSpecError as exc:
        _problem(state, uid, ("InvalidClaim", str(exc)))
        return
    if not spec.requests:
        _problem(state, uid, None)
        return
    net = state.networks.get(spec.network)
    if net is not None and net.selector is not None:
        try:
            labels = await state.namespace_labels(ns)
        except ApiError as exc:
            log.info("IPClaim %s: labels of namespace %s not read (%s); the sweep retries", ref, ns, exc)
            return
        if not net.selector.matches(labels):
            _problem(state, uid, ("NamespaceNotAllowed", f"network {spec.network} does not admit IPClaims from "
                                  f"namespace {ns} (its namespaceSelector requires: {net.selector})"))
            return
        net = state.networks.get(spec.network)   # (after the await: it may have changed)
        if uid in state.claim_index or uid not in state.claim_objects:   # held meanwhile, or deleted
            return
    if net is None:   # (the status says whether it is unknown or not ready; retried when it is)
        _problem(state, uid, ("UnknownNetwork", f"network {spec.network} is not ready"))
        return
    _hold_requested(state, net.allocator, ref, uid, spec)


async def rebind(state: State) -> None:
    """Try again every claim whose requested addresses are not held (the retry loop, woken by
    releases: a claim waiting for an address gets it as soon as its holder lets it go)."""
    for uid in list(state.claim_problems):
        obj = state.claim_objects.get(uid)
        if obj is not None:
            try:
                await bind_requested(state, obj)
            except Exception as exc:  # noqa: BLE001 - isolated per claim; the sweep retries it
                log.warning("IPClaim uid %s: binding its requested addresses failed: %s", uid, exc)


def _hold_requested(state: State, alloc: NetworkAllocator, ref: str, uid: str, spec: ClaimSpec) -> None:
    holder = claim_holder(ref, uid, spec.interface, spec.mac or "")
    try:
        check_requested(alloc, holder.pod_uid, spec.interface, spec.ips, spec.mac)
        ips = alloc.attach(holder, spec.ips)
    except AddressHeld as exc:
        _problem(state, uid, ("AddressUnavailable", claim_words(str(exc))))
        return
    except NetworkExhausted as exc:
        _problem(state, uid, ("NetworkExhausted", str(exc)))
        return
    except AllocationError as exc:
        _problem(state, uid, ("InvalidAddress", claim_words(str(exc))))
        return
    for ip in ips:
        state.hold(spec.network, ip_text(ip), alloc.held_by(ip))
    _problem(state, uid, None)
    log.info("IPClaim %s holds its requested %s on %s", ref, " ".join(ip_text(ip) for ip in ips), spec.network)


def _problem(state: State, uid: str, problem: tuple[str, str] | None) -> None:
    """Why a claim asking for addresses holds none (reason, message), or None; a change is reported."""
    if state.claim_problems.get(uid) == problem:
        return
    if problem is None:
        state.claim_problems.pop(uid, None)
    else:
        state.claim_problems[uid] = problem
    state.claim_changed(uid)


# ---------------------------------------------------------------- the claims' watch
async def on_claim(state: State, obj: dict, kind: str) -> None:
    """One watch event (or listed claim, ADDED): keep the object, bind its requested addresses,
    and queue a status write when the status differs; a deleted claim's own hold is released."""
    meta = obj.get("metadata") or {}
    uid = meta.get("uid")
    if not uid:
        return
    if kind == "DELETED":
        state.claim_objects.pop(uid, None)
        state.claim_problems.pop(uid, None)
        state.claims_dirty.discard(uid)
        if uid in state.claim_index:
            state.claims_deleted.add(uid)   # a pod using it keeps the addresses; they go with it
        release_claim(state, HOLDER_PREFIX + uid, "the IPClaim was deleted")
        return
    state.claim_objects[uid] = obj
    await bind_requested(state, obj)
    if _differs(claim_status(state, obj, held_for(state, uid)), obj.get("status") or {}):
        state.claim_changed(uid)


class ClaimWatch:
    """Every IPClaim: one list, then a watch from its resourceVersion (relisting after 410 Gone or
    an interruption), each event handled in order (as reconcile/podwatch.py does for pods)."""

    def __init__(self, state: State):
        self.state = state

    async def relist(self) -> str:
        meta: dict[str, Any] = {}
        known, seen = set(self.state.claim_objects), set()
        started = time.monotonic()
        async for obj in self.state.kube.list_all(ALL_CLAIMS, meta=meta):
            seen.add(obj["metadata"]["uid"])
            await self._handle(obj, "ADDED")
            if len(seen) % YIELD_EVERY == 0:
                await asyncio.sleep(0)   # a page is handled without awaiting: let a waiting attach run
        for uid in known - seen:   # deleted while not watched
            gone = self.state.claim_objects.get(uid)
            if gone is not None:
                await self._handle(gone, "DELETED")
        log.info("IPClaims listed: %d in %.2fs (%d to report)", len(seen), time.monotonic() - started,
                 len(self.state.claims_dirty))
        return str(meta.get("resourceVersion", ""))

    async def _handle(self, obj: dict, kind: str) -> None:
        try:
            await on_claim(self.state, obj, kind)
        except Exception as exc:  # noqa: BLE001 - one claim's failure: logged; the sweep retries it
            log.warning("IPClaim %s/%s (%s): %s: %s", (obj.get("metadata") or {}).get("namespace"),
                        (obj.get("metadata") or {}).get("name"), kind, type(exc).__name__, exc)

    async def run(self) -> None:
        rv, backoff = "", 0.5
        while True:
            try:
                if not rv:
                    rv = await self.relist()
                async for event in self.state.kube.watch(ALL_CLAIMS, rv, timeout=WATCH_TIMEOUT):
                    kind, obj = event.get("type", ""), event.get("object") or {}
                    if kind == "ERROR":
                        rv = ""
                        if obj.get("code") != 410:
                            raise ApiError(obj.get("code", 500), obj.get("message", "watch error"))
                        break
                    rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                    if kind != "BOOKMARK":
                        await self._handle(obj, kind)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - connection reset, API restart...: resume
                if isinstance(exc, ApiError) and exc.status == 410:
                    rv = ""
                log.warning("IPClaim watch interrupted (%s); resuming in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)


# ---------------------------------------------------------------- status, written on change
async def report_loop(state: State) -> None:
    """Write the status of every claim whose holding changed (`State.claim_changed`), a moment
    after the change (a burst is one write); a claim not seen by the watch yet is reported by it."""
    while True:
        await state.claims_changed.wait()
        await asyncio.sleep(REPORT_DELAY)
        state.claims_changed.clear()
        dirty, state.claims_dirty = state.claims_dirty, set()
        failed = set()
        for uid in dirty:
            obj = state.claim_objects.get(uid)
            if obj is None:
                continue
            try:
                await _report(state, obj, held_for(state, uid))
            except Exception as exc:  # noqa: BLE001 - retried in a second (and by the sweep)
                if isinstance(exc, ApiError) and exc.status in (404, 409, 422):
                    continue   # deleted (or recreated: another UID)
                failed.add(uid)
                log.warning("status of IPClaim %s/%s not written: %s", obj["metadata"].get("namespace"),
                            obj["metadata"].get("name"), exc)
        if failed:
            state.claims_dirty |= failed
            await asyncio.sleep(1.0)
            state.claims_changed.set()


# ---------------------------------------------------------------- sweep
async def sweep(state: State) -> None:
    """Release the holds of claims that no longer exist, bind requested addresses not held yet,
    delete scaled-down StatefulSet ordinals' claims after the retention delay, and report each
    claim's holding in its status (a safety net: the status is written on change)."""
    listed = [c async for c in state.kube.list_all(ALL_CLAIMS)]
    uids = {c["metadata"]["uid"] for c in listed}
    for key in [k for k in state.holdings if is_claim_key(k)]:
        if key[len(HOLDER_PREFIX):] not in uids:
            release_claim(state, key, "the IPClaim no longer exists")
    state.claims_deleted &= set(state.claim_index)   # forgotten once nothing is held for them
    for obj in listed:
        if obj["metadata"]["uid"] not in state.claim_index:
            await bind_requested(state, obj)
    users = {c["metadata"]["uid"]: held_for(state, c["metadata"]["uid"]) for c in listed}
    deleted = await _scale_down(state, listed, users)
    for obj in listed:
        if obj["metadata"]["uid"] not in deleted:
            try:
                await _report(state, obj, users.get(obj["metadata"]["uid"], []))
            except ApiError as exc:
                if exc.status not in (404, 409, 422):
                    log.warning("status of IPClaim %s/%s not written: %s", obj["metadata"].get("namespace"),
                                obj["metadata"]["name"], exc)


async def _scale_down(state: State, listed: list[dict], users: dict[str, list[tuple[str, Holder]]]) -> set[str]:
    now = time.monotonic()
    sets: dict[tuple[str, str], dict | None] = {}
    deleted: set[str] = set()
    seen: set[str] = set()
    for obj in listed:
        meta = obj["metadata"]
        labels = meta.get("labels") or {}
        sts_name, ordinal = labels.get(STATEFULSET_LABEL), labels.get(ORDINAL_LABEL, "")
        if not sts_name or not ordinal.isdigit():
            continue
        key = (meta["namespace"], sts_name)
        if key not in sets:
            try:
                sets[key] = dict(await state.kube.get(f"/apis/apps/v1/namespaces/{key[0]}/statefulsets/{key[1]}"))
            except ApiError:
                sets[key] = None   # gone: the garbage collector deletes its claims
        sts = sets[key]
        if sts is None or not _owned_by(obj, sts):
            continue
        replicas = (sts.get("spec") or {}).get("replicas", 1)
        held = users.get(meta["uid"], [])
        if int(ordinal) < replicas or any(not is_claim_key(h.pod_uid) for _, h in held):
            continue
        seen.add(meta["uid"])
        first = state.claims_scaled_down.setdefault(meta["uid"], now)
        if now - first < state.settings.claim_retention:
            continue
        try:
            await state.kube.request("DELETE", claim_path(meta["namespace"], meta["name"]))
        except ApiError as exc:
            if exc.status != 404:
                log.warning("deleting IPClaim %s/%s failed: %s", meta["namespace"], meta["name"], exc)
                continue
        log.info("IPClaim %s/%s deleted: ordinal %s is beyond StatefulSet %s's %d replicas for %.0fs",
                 meta["namespace"], meta["name"], ordinal, sts_name, replicas, now - first)
        release_claim(state, HOLDER_PREFIX + meta["uid"], "StatefulSet scaled down")
        deleted.add(meta["uid"])
    for uid in set(state.claims_scaled_down) - seen:
        state.claims_scaled_down.pop(uid, None)
    return deleted


def claim_status(state: State, obj: dict, held: list[tuple[str, Holder]]) -> dict[str, Any]:
    """What the claim's status says: its addresses (with the prefix, IPv4 first), MAC, user."""
    spec = obj.get("spec") or {}
    net = state.networks.get(spec.get("network") or "")
    ips = []
    for version, _, ip in sorted((*(ip_value(ip) or (0, 0)), ip) for ip, _ in held):   # ints: no netaddr per claim
        fam = net.spec.family(version) if net is not None else None
        ips.append(f"{ip}/{fam.prefix_length}" if fam is not None else ip)
    user = next((h for _, h in held if not is_claim_key(h.pod_uid)), None)
    if net is None:
        cond = {"type": "Ready", "status": "False", "reason": "UnknownNetwork",
                "message": f"network {spec.get('network')} does not exist (no VirtualNetwork named "
                           f"{spec.get('network')})" if spec.get("network") not in state.known_networks
                           else f"network {spec.get('network')} is not ready"}
    elif not ips and (problem := state.claim_problems.get(obj["metadata"]["uid"])) is not None:
        cond = {"type": "Ready", "status": "False", "reason": problem[0], "message": problem[1]}
    elif (changed := _spec_changed(obj, held)) is not None:
        cond = {"type": "Ready", "status": "False", "reason": "SpecChanged", "message": changed}
    else:
        cond = {"type": "Ready", "status": "True", "reason": "Held" if ips else "Unused",
                "message": f"holds {' '.join(ips)}" if ips else "no address held yet: the first pod using it gets them"}
    return {"ips": ips or None, "mac": held[0][1].mac if held else None,
            "ownerPod": {"name": user.pod.partition("/")[2], "uid": user.pod_uid} if user else None,
            "conditions": [cond]}


def _spec_changed(obj: dict, held: list[tuple[str, Holder]]) -> str | None:
    """The message when a claim holds addresses other than its spec asks (the spec was edited
    after it got them: they never change while the claim exists), else None."""
    meta, raw = obj["metadata"], obj.get("spec")
    if not held or (isinstance(raw, dict) and not raw.get("ips") and raw.get("mac") is None):
        return None   # (the common case, read without parsing: a claim asking for nothing of its own)
    try:
        spec = parse_claim_spec(raw, f"{meta.get('namespace')}/{meta.get('name')}")
    except ClaimSpecError as exc:
        return str(exc) if held else None
    have = {str(netaddr.IPAddress(ip)) for ip, _ in held}
    other = [str(ip) for ip in spec.ips if str(ip) not in have]
    if not held or (not other and (spec.mac is None or spec.mac == held[0][1].mac)):
        return None
    asked = " ".join(str(ip) for ip in spec.ips) + (f" {spec.mac}" if spec.mac else "")
    return (f"spec asks for {asked.strip()}, but the claim holds {' '.join(sorted(have))} {held[0][1].mac}: a "
            f"claim's addresses never change while it exists (delete it and create it again to change them)")


def _differs(want: dict[str, Any], have: dict[str, Any]) -> bool:
    return any(have.get(k) != v for k, v in want.items())


async def _report(state: State, obj: dict, held: list[tuple[str, Holder]]) -> None:
    want = claim_status(state, obj, held)
    if not _differs(want, obj.get("status") or {}):
        return
    meta = obj["metadata"]
    await state.kube.merge_patch(claim_path(meta["namespace"], meta["name"], status=True),
                                 {"metadata": {"uid": meta["uid"]}, "status": want})   # this claim, not a namesake
    obj["status"] = want
