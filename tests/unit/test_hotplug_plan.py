"""Hot-plug's decision (issue 16): an attached pod's new request against its record, by interface
name (`pod.plan_change`, pure): kept, added (new or replaced), removed; and what is refused."""
from __future__ import annotations

import json

import pytest

from ovnvnet.model.annotation import AnnotationError, InterfaceResult, parse_ovn_network
from ovnvnet.reconcile import pod as pod_rec
from ovnvnet.reconcile.errors import RequestRefused
from ovnvnet.reconcile.state import PodRecord


def _res(interface: str, network: str, ip: str, *, gw: bool = False, mac: str = "") -> InterfaceResult:
    mac = mac or "0a:58:" + ":".join(f"{int(o):02x}" for o in ip.split("."))
    return InterfaceResult(interface, network, ip, 24, mac, ip.rsplit(".", 1)[0] + ".1", gw, None, ())


def _record(*results: InterfaceResult, legacy: bool = False) -> PodRecord:
    return PodRecord("ns", "p", "uid-1", list(results), legacy=legacy)


def _plan(record: PodRecord, request: list[dict]) -> pod_rec.Change:
    return pod_rec.plan_change(record, parse_ovn_network(json.dumps(request)), None)


REC = _record(_res("net0", "a", "10.0.0.5", gw=True), _res("net1", "b", "10.1.0.5"))


def test_same_request_in_other_words_is_no_change() -> None:
    change = _plan(REC, [{"name": "a", "interface": "net0", "defaultGateway": True},
                         {"name": "b", "interface": "net1", "ip_address": "10.1.0.5"}])
    assert change.noop and set(change.kept) == {"net0", "net1"}


def test_add_remove_replace_by_interface_name() -> None:
    change = _plan(REC, [{"name": "a", "interface": "net0", "defaultGateway": True},
                         {"name": "b", "interface": "net2"}])
    assert list(change.kept) == ["net0"] and [r.interface for r in change.added] == ["net2"]
    assert [r.interface for r in change.removed] == ["net1"] and not change.replaced
    for other in ({"name": "a", "interface": "net1"},                              # another network
                  {"name": "b", "interface": "net1", "ip_address": "10.1.0.9"},    # another static address
                  {"name": "b", "interface": "net1", "mac_address": "02:00:00:00:00:01"}):   # another MAC
        change = _plan(REC, [{"name": "a", "interface": "net0", "defaultGateway": True}, other])
        assert [r.interface for r in change.replaced] == ["net1"], other
        assert [r.interface for r in change.added] == ["net1"] and not change.removed, other


def test_reorder_only_rewrites_the_result() -> None:
    change = _plan(REC, [{"name": "b", "interface": "net1"},
                         {"name": "a", "interface": "net0", "defaultGateway": True}])
    assert not change.added and not change.removed and not change.noop


@pytest.mark.parametrize("request_, text", [
    ([{"name": "b", "interface": "net1"}], "interface net0 carries the pod's default route"),
    ([{"name": "a", "interface": "net0"}, {"name": "b", "interface": "net1"}], "interface net0 carries"),
    ([{"name": "a", "interface": "net0", "defaultGateway": True, "ip_address": "10.0.0.7"}], "interface net0 carries"),
])
def test_the_default_route_interface_stays(request_: list[dict], text: str) -> None:
    with pytest.raises(RequestRefused) as info:
        _plan(REC, request_)
    assert text in str(info.value) and info.value.reason == "ChangeRefused" and not info.value.retry


def test_no_default_route_is_added_later() -> None:
    rec = _record(_res("net0", "a", "10.0.0.5"))
    with pytest.raises(RequestRefused, match="interface net1 asks for defaultGateway"):
        _plan(rec, [{"name": "a", "interface": "net0"}, {"name": "b", "interface": "net1", "defaultGateway": True}])


def test_refused_wholesale() -> None:
    with pytest.raises(RequestRefused, match="no longer asks for any ovnvnet interface"):
        pod_rec.plan_change(REC, None, None)
    with pytest.raises(RequestRefused, match="not valid JSON") as info:
        pod_rec.plan_change(REC, None, AnnotationError("ovnNetwork is not valid JSON"))
    assert info.value.reason == "InvalidRequest"
    with pytest.raises(RequestRefused, match="legacy ovn annotation"):
        _plan(_record(_res("ns_p", "a", "10.0.0.5"), legacy=True), [{"name": "a", "interface": "net0"}])
