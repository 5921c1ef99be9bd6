"""IPClaims: addresses that outlive a pod (issue 15).

An `IPClaim` (namespaced, `ovnvnet.io/v1`, crds/ipclaims.ovnvnet.io.yaml; after
k8snetworkplumbingwg/ipamclaims' IPAMClaim) names a network and an interface. A pod uses it per
interface with ``"claim": "<name>"`` in its `ovnNetwork` entry; a StatefulSet pod whose template
carries ``ovnvnet.io/keep-addresses: "true"`` uses, per interface, the claim ``<pod>.<interface>``,
which the operator creates owned by the StatefulSet (the garbage collector deletes it with it).

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

The claim's status (`ips`, `mac`, `ownerPod`, a `Ready` condition) is the operator's report, written
by the sweep; nothing reads it back.
"""
from __future__ import annotations

import logging
import re
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from typing import Any

import netaddr

from ovnvnet.ipam.allocator import AllocationError, Holder
from ovnvnet.kube.client import ApiError
from ovnvnet.model.annotation import InterfaceRequest
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
        spec = obj.get("spec") or {}
        if spec.get("network") != req.network or spec.get("interface") != req.interface:
            raise RequestRefused(
                f"interface {req.interface} on {req.network}: IPClaim {ns}/{claim} is for network "
                f"{spec.get('network')} interface {spec.get('interface')}", retry=False, reason="InvalidClaim")
        if sts is not None and not req.claim and not _owned_by(obj, sts):
            raise RequestRefused(f"interface {req.interface}: IPClaim {ns}/{claim} belongs to another "
                                 f"StatefulSet {sts['metadata']['name']} (an earlier one?); waiting for its deletion",
                                 retry=True, reason="ClaimInUse")
        bound[req.interface] = Bound(f"{ns}/{claim}", obj["metadata"]["uid"], req.network, req.interface)
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
            out.append(req)
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
    """The pod holding the claim's addresses now, if any (a scan of the claim's network)."""
    net = state.networks.get(b.network)
    if net is None:
        return None
    return next((h for h in net.allocator.holders().values() if h.claim_uid == b.uid), None)


# ---------------------------------------------------------------- release
def retain(state: State, network: str, ip: str, holder: Holder) -> None:
    """After a pod's address was released: an address held for a claim stays held by the claim."""
    net = state.networks.get(network)
    if not holder.claim or net is None or is_claim_key(holder.pod_uid):
        return
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


# ---------------------------------------------------------------- sweep
async def sweep(state: State) -> None:
    """Release the holds of claims that no longer exist, delete scaled-down StatefulSet ordinals'
    claims after the retention delay, and report each claim's holding in its status."""
    listed = [c async for c in state.kube.list_all(ALL_CLAIMS)]
    uids = {c["metadata"]["uid"] for c in listed}
    for key in [k for k in state.holdings if is_claim_key(k)]:
        if key[len(HOLDER_PREFIX):] not in uids:
            release_claim(state, key, "the IPClaim no longer exists")
    users = _claim_users(state, listed)
    deleted = await _scale_down(state, listed, users)
    for obj in listed:
        if obj["metadata"]["uid"] not in deleted:
            try:
                await _report(state, obj, users.get(obj["metadata"]["uid"], []))
            except ApiError as exc:
                if exc.status != 404:
                    log.warning("status of IPClaim %s/%s not written: %s", obj["metadata"].get("namespace"),
                                obj["metadata"]["name"], exc)


def _claim_users(state: State, listed: list[dict]) -> dict[str, list[tuple[str, Holder]]]:
    """claim uid -> [(ip, holder)] of every address held for it (by a pod or by itself)."""
    wanted = {(c.get("spec") or {}).get("network") for c in listed}
    out: dict[str, list[tuple[str, Holder]]] = {}
    for network in wanted:
        net = state.networks.get(network or "")
        if net is None:
            continue
        for ip, holder in net.allocator.holders().items():
            if holder.claim_uid:
                out.setdefault(holder.claim_uid, []).append((ip, holder))
    return out


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
    for ip, _ in sorted(held, key=lambda e: (netaddr.IPAddress(e[0]).version, netaddr.IPAddress(e[0]))):
        fam = net.spec.family(netaddr.IPAddress(ip).version) if net is not None else None
        ips.append(f"{ip}/{fam.prefix_length}" if fam is not None else ip)
    user = next((h for _, h in held if not is_claim_key(h.pod_uid)), None)
    if net is None:
        cond = {"type": "Ready", "status": "False", "reason": "UnknownNetwork",
                "message": f"network {spec.get('network')} does not exist (no VirtualNetwork named "
                           f"{spec.get('network')})" if spec.get("network") not in state.known_networks
                           else f"network {spec.get('network')} is not ready"}
    else:
        cond = {"type": "Ready", "status": "True", "reason": "Held" if ips else "Unused",
                "message": f"holds {' '.join(ips)}" if ips else "no address held yet: the first pod using it gets them"}
    return {"ips": ips or None, "mac": held[0][1].mac if held else None,
            "ownerPod": {"name": user.pod.partition("/")[2], "uid": user.pod_uid} if user else None,
            "conditions": [cond]}


async def _report(state: State, obj: dict, held: list[tuple[str, Holder]]) -> None:
    want = claim_status(state, obj, held)
    have = obj.get("status") or {}
    if all(have.get(k) == v for k, v in want.items()):
        return
    meta = obj["metadata"]
    await state.kube.merge_patch(claim_path(meta["namespace"], meta["name"], status=True), {"status": want})
