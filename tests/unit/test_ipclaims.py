"""IPClaims (issue 15), the pure parts: the request's ``claim`` (and Multus's
``ipam-claim-reference``), the holder a claim keeps its addresses with, and the IPBlock record
entries and merge patches that carry the claim."""
from __future__ import annotations

import json

import pytest

from ovnvnet.ipam.allocator import Holder
from ovnvnet.model.annotation import AnnotationError, pod_requests
from ovnvnet.model.records import ipblock_patch
from ovnvnet.reconcile.claims import claim_holder, is_claim_key
from ovnvnet.reconcile.state import port_spec, status_entry

NAD_NS = "ovnvnet-system"


def _req(entry: dict) -> list:
    return pod_requests({"ovnNetwork": json.dumps([entry])}, "ns", NAD_NS)


def test_claim_in_ovnnetwork_and_in_a_network_selection_element() -> None:
    assert _req({"name": "a", "interface": "net0", "claim": "db-0"})[0].claim == "db-0"
    assert _req({"name": "a", "interface": "net0"})[0].claim is None
    sel = [{"name": "a", "namespace": NAD_NS, "interface": "net0", "ipam-claim-reference": "db-0"}]
    assert pod_requests({"k8s.v1.cni.cncf.io/networks": json.dumps(sel)}, "ns", NAD_NS)[0].claim == "db-0"


@pytest.mark.parametrize(("claim", "message"), [
    ("other/db", 'ovnNetwork[0]: "claim" "other/db" names another namespace; a pod may only use IPClaims of '
                 "its own namespace (give the claim's name alone)"),
    (5, 'ovnNetwork[0]: "claim" must be a string, got number'),
    ("", 'ovnNetwork[0]: "claim" (an IPClaim name) is required'),
    ("Bad_Name", 'ovnNetwork[0]: "claim" "Bad_Name" is not a valid IPClaim name'),
])
def test_bad_claims_are_refused_with_their_message(claim: object, message: str) -> None:
    with pytest.raises(AnnotationError) as err:
        _req({"name": "a", "interface": "net0", "claim": claim})
    assert str(err.value) == message


def test_records_name_the_claim() -> None:
    pod = Holder("ns/web-0", "uid-1", "net0", "0a:58:0a:00:00:05", "ns/web-0.net0", "c-1")
    assert status_entry(pod) == {"pod": "ns/web-0", "podUID": "uid-1", "interface": "net0",
                                 "mac": "0a:58:0a:00:00:05", "claim": "ns/web-0.net0", "claimUID": "c-1"}
    ids = dict(port_spec("a", "10.0.0.5", pod).external_ids)
    assert (ids["ovnvnet.io/claim"], ids["ovnvnet.io/claim-uid"]) == ("ns/web-0.net0", "c-1")
    kept = claim_holder("ns/web-0.net0", "c-1", "net0", pod.mac)
    assert is_claim_key(kept.pod_uid) and not is_claim_key(pod.pod_uid)
    assert status_entry(kept)["pod"] == "ipclaim ns/web-0.net0"
    plain = Holder("ns/p", "uid-2", "net0", "0a:58:0a:00:00:06")
    assert "claim" not in status_entry(plain)
    assert "claim" not in dict(port_spec("a", "10.0.0.6", plain).external_ids)


def test_a_patch_clears_the_claim_of_an_entry_that_has_none() -> None:
    """A merge patch merges an entry into the stored one: a plain holder's entry nulls the claim
    keys, so the next holder of a claim's released address does not inherit the claim."""
    plain = status_entry(Holder("ns/p", "uid-2", "net0", "0a:58:0a:00:00:06"))
    claimed = status_entry(Holder("ns/p", "uid-2", "net0", "0a:58:0a:00:00:06", "ns/c", "c-1"))
    patch = ipblock_patch({"10.0.0.6": plain, "10.0.0.7": claimed, "10.0.0.8": None})["allocations"]
    assert patch["10.0.0.6"] == {**plain, "claim": None, "claimUID": None}
    assert patch["10.0.0.7"] == claimed and patch["10.0.0.8"] is None


def test_the_allocator_keeps_the_claim_of_a_holder() -> None:
    """A holder's claim survives the allocator filling in its MAC (static, dynamic, dual-stack)."""
    from ovnvnet.ipam.allocator import NetworkAllocator
    from ovnvnet.model.network import parse_network_spec
    alloc = NetworkAllocator("n", parse_network_spec({"subnets": ["10.0.0.0/24", "fd00:1::/64"]}))
    dyn = Holder("ns/p", "uid-1", "net0", "", "ns/c", "c-1")
    ips = alloc.attach(dyn)
    assert [alloc.held_by(ip).claim_uid for ip in ips] == ["c-1", "c-1"]
    alloc.reserve("10.0.0.9", Holder("ns/q", "uid-2", "net0", "", "ns/d", "d-1"))
    assert alloc.held_by("10.0.0.9").claim == "ns/d" and alloc.held_by("10.0.0.9").mac == "0a:58:0a:00:00:09"


# ---------------------------------------------------------------- requested addresses (spec.ips / spec.mac)
def test_a_claims_requested_addresses_are_read_one_per_family() -> None:
    from ovnvnet.model.claims import parse_claim_spec
    spec = parse_claim_spec({"network": "a", "interface": "net0", "ips": ["fd00::5", "10.0.0.5"],
                             "mac": "0A-58-0A-00-00-05"}, "ns/c")
    assert [str(ip) for ip in spec.ips] == ["10.0.0.5", "fd00::5"] and spec.mac == "0a:58:0a:00:00:05"
    assert spec.requests
    assert not parse_claim_spec({"network": "a", "interface": "net0"}, "ns/c").requests


@pytest.mark.parametrize(("spec", "message"), [
    ({"network": "a", "interface": "net0", "ips": ["10.0.0.5/24"]},
     'IPClaim ns/c: spec.ips[0] "10.0.0.5/24" is not an IP address (give the address alone, without a prefix)'),
    ({"network": "a", "interface": "net0", "ips": ["10.0.0.5", "10.0.0.5"]},
     "IPClaim ns/c: spec.ips lists 10.0.0.5 twice"),
    ({"network": "a", "interface": "net0", "ips": ["10.0.0.5", "10.0.0.6"]},
     "IPClaim ns/c: spec.ips lists two IPv4 addresses (10.0.0.5 and 10.0.0.6); at most one per family"),
    ({"network": "a", "interface": "net0", "ips": "10.0.0.5"},
     "IPClaim ns/c: spec.ips must be a list of addresses, got string"),
    ({"network": "a", "interface": "net0", "mac": "01:00:00:00:00:01"},
     'IPClaim ns/c: spec.mac "01:00:00:00:00:01" is a multicast address'),
    ({"interface": "net0"}, "IPClaim ns/c: spec.network (a non-empty string) is required, got null"),
])
def test_bad_requested_addresses_are_refused_with_their_message(spec: dict, message: str) -> None:
    from ovnvnet.model.claims import ClaimSpecError, parse_claim_spec
    with pytest.raises(ClaimSpecError) as err:
        parse_claim_spec(spec, "ns/c")
    assert str(err.value) == message


# ---------------------------------------------------------------- the claim index
def test_the_claim_index_follows_every_hold_and_release() -> None:
    """Who holds a claim's addresses is a lookup (`State.claim_index`), kept by hold/unhold for
    pods and for the claim itself, and each change marks the claim for a status write."""
    import asyncio

    import netaddr

    from ovnvnet.config import Settings
    from ovnvnet.ipam.allocator import NetworkAllocator
    from ovnvnet.model.network import parse_network_spec
    from ovnvnet.reconcile import claims
    from ovnvnet.reconcile.state import Network, State

    async def run() -> None:
        state = State(Settings.from_env({"OVN_NB_DB": "tcp:127.0.0.1:6641"}), None, None, seal_key=b"k" * 32)  # type: ignore[arg-type]
        spec = parse_network_spec({"subnet": "10.0.0.0/24"})
        state.networks["a"] = Network("a", spec, NetworkAllocator("a", spec))
        alloc = state.networks["a"].allocator
        pod = Holder("ns/web-0", "uid-1", "net0", "", "ns/web-0.net0", "c-1")
        (ip,) = alloc.attach(pod)
        state.hold("a", str(ip), alloc.held_by(ip), record_status=False)
        assert state.claim_index == {"c-1": {("a", str(ip))}} and state.claims_dirty == {"c-1"}
        bound = claims.Bound("ns/web-0.net0", "c-1", "a", "net0")
        assert claims._user_of(state, bound) == alloc.held_by(ip)
        state.claims_dirty.clear()
        released = state.unhold("a", str(ip))   # the pod goes: the claim keeps the address
        assert released is not None
        claims.retain(state, "a", str(ip), released)
        assert state.claim_index == {"c-1": {("a", str(ip))}} and state.claims_dirty == {"c-1"}
        assert claims._user_of(state, bound) is None
        assert [h.pod for _, h in claims.held_for(state, "c-1")] == ["ipclaim ns/web-0.net0"]
        claims.release_claim(state, "claim:c-1", "deleted")
        assert state.claim_index == {} and alloc.holder_of(netaddr.IPAddress(ip)) is None
        plain = Holder("ns/p", "uid-2", "net0", "")
        (other,) = alloc.attach(plain)
        state.hold("a", str(other), alloc.held_by(other), record_status=False)
        assert state.claim_index == {}   # a pod without a claim is not indexed
    asyncio.run(run())
