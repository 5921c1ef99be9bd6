"""The operator's records as API objects: the allocation record sharded into IPBlock objects (one
per /24 block, IPv6: per /120, see blocks.py) and the VirtualNetwork status. These are shapes only; kube/status.py
writes them (coalesced merge patches) and reconcile/ reads them back at start."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .blocks import NETWORK_LABEL

IPBLOCK_API_VERSION = "ovnvnet.io/v1"


@dataclass(frozen=True)
class BlockRef:
    """One IPBlock: its object name, network, CIDR, and the ownerReference to the VirtualNetwork
    (the API server's garbage collector removes the blocks with it)."""
    name: str
    network: str
    cidr: str
    owner: dict[str, Any] | None


def owner_reference(vnet_meta: dict[str, Any]) -> dict[str, Any]:
    """An IPBlock's ownerReference to its VirtualNetwork (not blocking its deletion)."""
    return {"apiVersion": IPBLOCK_API_VERSION, "kind": "VirtualNetwork", "name": vnet_meta["name"],
            "uid": vnet_meta["uid"], "blockOwnerDeletion": False}


def ipblock_object(block: BlockRef, allocations: dict[str, dict[str, str] | None]) -> dict[str, Any]:
    """A new IPBlock holding `allocations` (ip -> entry; None entries, deletions in a patch, are left out)."""
    meta: dict[str, Any] = {"name": block.name, "labels": {NETWORK_LABEL: block.network}}
    if block.owner:
        meta["ownerReferences"] = [block.owner]
    return {"apiVersion": IPBLOCK_API_VERSION, "kind": "IPBlock", "metadata": meta,
            "spec": {"network": block.network, "cidr": block.cidr},
            "allocations": {ip: e for ip, e in allocations.items() if e is not None}}


OPTIONAL_ENTRY_KEYS = ("claim", "claimUID")
"""Entry keys only some holders have (an IPClaim's, issue 15): a merge patch merges an entry into
the one stored, so an entry without them says so with nulls (else a new holder of the address
would inherit the previous holder's claim)."""


def ipblock_patch(allocations: dict[str, dict[str, str] | None]) -> dict[str, Any]:
    """A merge patch of an IPBlock's allocations (a None entry deletes that address)."""
    return {"allocations": {ip: e if e is None or all(k in e for k in OPTIONAL_ENTRY_KEYS)
                            else {**dict.fromkeys(OPTIONAL_ENTRY_KEYS), **e}
                            for ip, e in allocations.items()}}


def network_status_patch(fields: dict[str, Any]) -> dict[str, Any]:
    """A merge patch of a VirtualNetwork's status subresource."""
    return {"status": fields}
