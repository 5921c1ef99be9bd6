"""Hot-plug, the operator side (issue 16), on the real stack: a change of an attached pod's
`ovnNetwork` is diffed by interface name and served (added interfaces allocated with ports, removed
ones released, unchanged ones untouched, changed ones removed and added again); a change that
cannot be served is refused with `ovnNetworkError` + a `ChangeRefused` Event and leaves the pod
exactly as it was; a restart rebuilds exactly the new set and serves a change made while down."""
from __future__ import annotations

import json
import signal
import time
import uuid

import netaddr
import pytest
from kubernetes.client.rest import ApiException

from tests.integration.conftest import OPERATOR_ENV
from tests.integration.kit import Cluster, check_invariant, wait_until
from tests.integration.test_webhook import webhook_operator  # noqa: F401 - the fixture, shared


def _set(cluster: Cluster, ns: str, pod: str, request: list[dict] | str | None) -> None:
    raw = request if isinstance(request, str) or request is None else json.dumps(request)
    cluster.core.patch_namespaced_pod(pod, ns, {"metadata": {"annotations": {"ovnNetwork": raw}}})


def _ifaces(cluster: Cluster, ns: str, pod: str) -> dict[str, dict]:
    return {i["interface"]: i for i in json.loads(cluster.annotations(ns, pod).get("ovnIfaceList") or "[]")}


def _served(cluster: Cluster, ns: str, pod: str, want: list[tuple[str, str]], timeout: float = 30,
            ips: dict[str, str] | None = None) -> dict[str, dict]:
    """Wait until the result lists exactly ``want`` [(interface, network)] in that order (and,
    for the interfaces in ``ips``, those static addresses: a replaced address keeps the names)."""
    def check() -> dict[str, dict] | None:
        got = json.loads(cluster.annotations(ns, pod).get("ovnIfaceList") or "[]")
        by_name = {i["interface"]: i for i in got}
        if [(i["interface"], i["name"]) for i in got] != want:
            return None
        return by_name if all(by_name[k].get("ip_address") == v for k, v in (ips or {}).items()) else None
    return wait_until(check, timeout, what=f"{ns}/{pod} result {want} {ips or ''}")


def _ports(cluster: Cluster, ns: str, pod: str) -> dict[str, tuple[str, tuple[str, ...], str]]:
    """The pod's NB ports: name -> (row uuid, addresses, switch)."""
    lsps = cluster.nb_rows("Logical_Switch_Port")
    switch = {u: sw["name"] for sw in cluster.nb_rows("Logical_Switch") for u in sw["ports"]}
    return {r["name"]: (r["_uuid"], tuple(r["addresses"]), switch.get(r["_uuid"], "")) for r in lsps
            if r["name"].startswith(f"{ns}_{pod}_")}


def _snapshot(cluster: Cluster, ns: str, pod: str, nets: list[str]) -> dict:
    ann = cluster.annotations(ns, pod)
    return {"result": ann.get("ovnIfaceList"), "seal": ann.get("ovnvnet.io/seal"),
            "ports": _ports(cluster, ns, pod), "allocations": {n: cluster.allocations(n) for n in nets}}


@pytest.fixture
def two_nets(cluster: Cluster, subnet, net_name):
    a, b = net_name("hpa"), net_name("hpb")
    sa, sb = subnet(), subnet()
    cluster.create_vnet(a, sa)
    cluster.create_vnet(b, sb)
    cluster.wait_ready(a)
    cluster.wait_ready(b)
    yield a, b, sa.rsplit(".", 1)[0], sb.rsplit(".", 1)[0]
    for n in (a, b):
        cluster.delete_vnet(n)


def _cleanup(cluster: Cluster, ns: str, pods: list[str], nets: list[str]) -> None:
    for p in pods:
        cluster.delete_pod(ns, p, wait=False)
    wait_until(lambda: all(not cluster.allocations(n) for n in nets), 30, what="all released")


def test_add_replace_remove_leave_the_others_untouched(cluster: Cluster, ns: str, two_nets) -> None:
    a, b, pa, pb = two_nets
    cluster.create_pod(ns, "hp", [{"name": a, "interface": "net0"}])
    first = _served(cluster, ns, "hp", [("net0", a)])["net0"]
    uuid0 = _ports(cluster, ns, "hp")[f"{ns}_hp_net0"][0]

    def net0_untouched() -> None:
        now = _ifaces(cluster, ns, "hp")["net0"]
        assert now == first, (now, first)
        assert _ports(cluster, ns, "hp")[f"{ns}_hp_net0"][0] == uuid0   # same LSP row, never re-created

    try:
        # add net1 (dynamic) on b
        _set(cluster, ns, "hp", [{"name": a, "interface": "net0"}, {"name": b, "interface": "net1"}])
        got = _served(cluster, ns, "hp", [("net0", a), ("net1", b)])
        net0_untouched()
        dyn = got["net1"]["ip_address"]
        wait_until(lambda: set(cluster.allocations(b)) == {dyn}, what="net1 recorded in b's IPBlocks")
        assert _ports(cluster, ns, "hp")[f"{ns}_hp_net1"][2] == b
        check_invariant(cluster, [a, b])

        # replace net1: a static address instead (removed and added again, the old address freed)
        _set(cluster, ns, "hp", [{"name": a, "interface": "net0"},
                                 {"name": b, "interface": "net1", "ip_address": f"{pb}.77"}])
        wait_until(lambda: _ifaces(cluster, ns, "hp")["net1"]["ip_address"] == f"{pb}.77", what="net1 re-addressed")
        net0_untouched()
        wait_until(lambda: set(cluster.allocations(b)) == {f"{pb}.77"}, what="old net1 address released")
        assert _ports(cluster, ns, "hp")[f"{ns}_hp_net1"][1][0].endswith(f" {pb}.77")
        check_invariant(cluster, [a, b])

        # replace net1 again: another network (the port moves to a's switch)
        _set(cluster, ns, "hp", [{"name": a, "interface": "net0"}, {"name": a, "interface": "net1"}])
        _served(cluster, ns, "hp", [("net0", a), ("net1", a)])
        net0_untouched()
        wait_until(lambda: not cluster.allocations(b), what="b released")
        assert _ports(cluster, ns, "hp")[f"{ns}_hp_net1"][2] == a
        check_invariant(cluster, [a, b])

        # remove net1; then add net2 before net0 (order follows the request)
        _set(cluster, ns, "hp", [{"name": a, "interface": "net0"}])
        _served(cluster, ns, "hp", [("net0", a)])
        net0_untouched()
        wait_until(lambda: set(_ports(cluster, ns, "hp")) == {f"{ns}_hp_net0"}, what="net1 port deleted")
        wait_until(lambda: set(cluster.allocations(a)) == {first["ip_address"]}, what="net1 released")
        _set(cluster, ns, "hp", [{"name": b, "interface": "net2"}, {"name": a, "interface": "net0"}])
        _served(cluster, ns, "hp", [("net2", b), ("net0", a)])
        net0_untouched()
        check_invariant(cluster, [a, b])
        events = {e.reason for e in cluster.events(ns, "hp")}
        assert "ChangeIgnored" not in events and "ChangeRefused" not in events, events
    finally:
        _cleanup(cluster, ns, ["hp"], [a, b])


def test_static_address_moves_between_interfaces_in_one_change(cluster: Cluster, ns: str, two_nets) -> None:
    a, _, pa, _ = two_nets
    cluster.create_pod(ns, "mv", [{"name": a, "interface": "net0"},
                                  {"name": a, "interface": "net1", "ip_address": f"{pa}.40"}])
    _served(cluster, ns, "mv", [("net0", a), ("net1", a)])
    try:
        _set(cluster, ns, "mv", [{"name": a, "interface": "net0"},
                                 {"name": a, "interface": "net2", "ip_address": f"{pa}.40"}])
        got = _served(cluster, ns, "mv", [("net0", a), ("net2", a)])
        assert got["net2"]["ip_address"] == f"{pa}.40"
        wait_until(lambda: set(_ports(cluster, ns, "mv")) == {f"{ns}_mv_net0", f"{ns}_mv_net2"},
                   what="net1 port gone, net2 port there")
        check_invariant(cluster, [a])
    finally:
        _cleanup(cluster, ns, ["mv"], [a])


def test_dual_stack_interface_added_and_its_mac_changed(cluster: Cluster, ns: str, two_nets, subnet,
                                                        net_name) -> None:
    a, *_ = two_nets
    dual = net_name("hpd")
    v6 = f"fd00:{uuid.uuid4().hex[:4]}::/64"
    cluster.create_vnet(dual, [subnet(), v6])
    cluster.wait_ready(dual)
    cluster.create_pod(ns, "ds", [{"name": a, "interface": "net0"}])
    first = _served(cluster, ns, "ds", [("net0", a)])["net0"]
    try:
        _set(cluster, ns, "ds", [{"name": a, "interface": "net0"}, {"name": dual, "interface": "net1"}])
        got = _served(cluster, ns, "ds", [("net0", a), ("net1", dual)])
        assert [netaddr.IPNetwork(c).version for c in got["net1"]["ip_addresses"]] == [4, 6]
        wait_until(lambda: len(cluster.allocations(dual)) == 2, what="both families recorded")
        check_invariant(cluster, [a, dual])
        # another MAC: removed and added again with it (both families re-addressed, one port)
        _set(cluster, ns, "ds", [{"name": a, "interface": "net0"},
                                 {"name": dual, "interface": "net1", "mac_address": "02:00:00:00:16:01"}])
        wait_until(lambda: _ifaces(cluster, ns, "ds")["net1"]["mac_address"] == "02:00:00:00:16:01",
                   what="net1 with the new MAC")
        assert _ifaces(cluster, ns, "ds")["net0"] == first
        assert _ports(cluster, ns, "ds")[f"{ns}_ds_net1"][1][0].startswith("02:00:00:00:16:01 ")
        check_invariant(cluster, [a, dual])
    finally:
        _cleanup(cluster, ns, ["ds"], [a, dual])
        cluster.delete_vnet(dual)


def _refusal(cluster: Cluster, ns: str, pod: str, text: str) -> str:
    msg = wait_until(lambda: (m := cluster.annotations(ns, pod).get("ovnNetworkError")) and text in m and m,
                     30, what=f"ovnNetworkError containing {text!r}")
    wait_until(lambda: any(e.reason == "ChangeRefused" and text in e.message and e.type == "Warning"
                           for e in cluster.events(ns, pod)), what=f"ChangeRefused event containing {text!r}")
    return msg


def test_refused_changes_leave_the_pod_exactly_as_it_was(cluster: Cluster, ns: str, two_nets) -> None:
    a, b, pa, pb = two_nets
    original = [{"name": a, "interface": "net0", "defaultGateway": True},
                {"name": b, "interface": "net1", "ip_address": f"{pb}.5"}]
    cluster.create_pod(ns, "holder", [{"name": a, "interface": "net0", "ip_address": f"{pa}.9"}])
    cluster.create_pod(ns, "rf", original)
    _served(cluster, ns, "rf", [("net0", a), ("net1", b)])
    cluster.iface_list(ns, "holder")
    check_invariant(cluster, [a, b])
    wait_until(lambda: len(cluster.allocations(a)) == 2, what="a recorded")
    before = _snapshot(cluster, ns, "rf", [a, b])
    gone = "nope-" + uuid.uuid4().hex[:4]
    keep = original
    cases = [
        (keep + [{"name": gone, "interface": "net2"}], f"network {gone} does not exist", "true"),
        (keep + [{"name": a, "interface": "net2", "ip_address": f"{pa}.9"}], f"{pa}.9 on {a} is held by {ns}/holder",
         "true"),
        (keep + [{"name": a, "interface": "net2", "ip_address": "192.0.2.1"}], f"ip_address 192.0.2.1 is outside {a}",
         None),
        ([keep[0], {"name": b, "interface": "net1", "ip_address": "192.0.2.7"}], "192.0.2.7 is outside", None),
        (keep + [{"name": a, "interface": f"x{i}"} for i in range(2, 11)], "ovnNetwork lists 11 interfaces", None),
        ('[{"name": ', "ovnNetwork is not valid JSON", None),
        ([keep[1]], "interface net0 carries the pod's default route", None),
        ([{**keep[0], "defaultGateway": False}, keep[1]], "interface net0 carries the pod's default route", None),
        (None, "the pod no longer asks for any ovnvnet interface", None),
    ]
    try:
        for request, text, retrying in cases:
            if request is None:
                cluster.core.patch_namespaced_pod("rf", ns, {"metadata": {"annotations": {"ovnNetwork": None}}})
            else:
                _set(cluster, ns, "rf", request)
            msg = _refusal(cluster, ns, "rf", text)
            assert "the pod keeps its interfaces net0" in msg, msg
            assert cluster.annotations(ns, "rf").get("ovnNetworkErrorRetry") == retrying, (text, retrying)
            assert _snapshot(cluster, ns, "rf", [a, b]) == before, text
            check_invariant(cluster, [a, b])
        # back to what it has: the error goes, nothing else moves
        _set(cluster, ns, "rf", original)
        wait_until(lambda: "ovnNetworkError" not in cluster.annotations(ns, "rf"), what="error removed")
        assert "ovnNetworkErrorRetry" not in cluster.annotations(ns, "rf")
        assert _snapshot(cluster, ns, "rf", [a, b]) == before
        # a refusal that clears by itself: the network appears, the change is served
        _set(cluster, ns, "rf", keep + [{"name": gone, "interface": "net2"}])
        _refusal(cluster, ns, "rf", f"network {gone} does not exist")
        cluster.create_vnet(gone, "10.99.250.0/24")
        try:
            got = _served(cluster, ns, "rf", [("net0", a), ("net1", b), ("net2", gone)], timeout=60)
            assert [got["net0"], got["net1"]] == json.loads(before["result"])
            wait_until(lambda: "ovnNetworkError" not in cluster.annotations(ns, "rf"), what="error removed")
            check_invariant(cluster, [a, b, gone])
        finally:
            _cleanup(cluster, ns, ["rf"], [gone])
            cluster.delete_vnet(gone)
    finally:
        _cleanup(cluster, ns, ["rf", "holder"], [a, b])


def test_terminating_pod_is_never_changed(cluster: Cluster, ns: str, two_nets) -> None:
    a, b, *_ = two_nets
    cluster.create_pod(ns, "term", [{"name": a, "interface": "net0"}])
    _served(cluster, ns, "term", [("net0", a)])
    cluster.core.patch_namespaced_pod("term", ns, {"metadata": {"finalizers": ["ovnvnet.test/hold"]}})
    try:
        cluster.core.delete_namespaced_pod("term", ns, grace_period_seconds=0)
        wait_until(lambda: cluster.pod(ns, "term").metadata.deletion_timestamp, what="terminating")
        wait_until(lambda: cluster.allocations(a), what="a recorded (coalesced)")
        before = _snapshot(cluster, ns, "term", [a, b])
        _set(cluster, ns, "term", [{"name": a, "interface": "net0"}, {"name": b, "interface": "net1"}])
        # the operator sees the event; give it the time of a change, then check nothing moved
        wait_until(lambda: cluster.pod(ns, "term").metadata.annotations.get("ovnNetwork", "").count("net1"),
                   what="request written")
        cluster.create_pod(ns, "probe", [{"name": b, "interface": "net0"}])   # a later event, served
        cluster.iface_list(ns, "probe")
        assert _snapshot(cluster, ns, "term", [a, b])["result"] == before["result"]
        assert _snapshot(cluster, ns, "term", [a, b])["ports"] == before["ports"]
        assert cluster.allocations(a) == before["allocations"][a]
        check_invariant(cluster, [a, b])
    finally:
        cluster.core.patch_namespaced_pod("term", ns, {"metadata": {"finalizers": None}})
        _cleanup(cluster, ns, ["term", "probe"], [a, b])


def test_restart_after_a_change_rebuilds_exactly_the_new_set(cluster: Cluster, ns: str, two_nets) -> None:
    a, b, pa, pb = two_nets
    stack = cluster.stack
    cluster.create_pod(ns, "rs", [{"name": a, "interface": "net0"}, {"name": b, "interface": "net1"}])
    _served(cluster, ns, "rs", [("net0", a), ("net1", b)])
    _set(cluster, ns, "rs", [{"name": a, "interface": "net0"}, {"name": a, "interface": "net2"},
                             {"name": b, "interface": "net3", "ip_address": f"{pb}.33"}])
    _served(cluster, ns, "rs", [("net0", a), ("net2", a), ("net3", b)])
    check_invariant(cluster, [a, b])
    before = _snapshot(cluster, ns, "rs", [a, b])
    try:
        for sig in (signal.SIGKILL, signal.SIGTERM):
            stack.stop_operator(sig)
            stack.start_operator(OPERATOR_ENV)
            # a new pod is served after the restart: the rebuild is done; nothing duplicated or leaked
            probe = f"probe-{sig.name.lower()}"
            cluster.create_pod(ns, probe, [{"name": a, "interface": "net0"}])
            ip = cluster.iface_list(ns, probe, timeout=60)[0]["ip_address"]
            assert ip not in {i["ip_address"] for i in json.loads(before["result"])}
            check_invariant(cluster, [a, b])
            now = _snapshot(cluster, ns, "rs", [a, b])
            assert (now["result"], now["seal"], now["ports"]) == (before["result"], before["seal"], before["ports"])
            assert now["allocations"][b] == before["allocations"][b]
            mine = {k: v for k, v in now["allocations"][a].items() if v["pod"] == f"{ns}/rs"}
            assert mine == before["allocations"][a]
            cluster.delete_pod(ns, probe)
    finally:
        _cleanup(cluster, ns, ["rs"], [a, b])


def test_change_made_while_the_operator_is_down_is_served_after_restart(cluster: Cluster, ns: str,
                                                                         two_nets) -> None:
    a, b, pa, pb = two_nets
    stack = cluster.stack
    cluster.create_pod(ns, "dn", [{"name": a, "interface": "net0"}, {"name": b, "interface": "net1"}])
    old = _served(cluster, ns, "dn", [("net0", a), ("net1", b)])
    cluster.create_pod(ns, "dn2", [{"name": a, "interface": "net0"}])
    _served(cluster, ns, "dn2", [("net0", a)])
    uuid0 = _ports(cluster, ns, "dn")[f"{ns}_dn_net0"][0]
    try:
        stack.stop_operator(signal.SIGKILL)
        _set(cluster, ns, "dn", [{"name": a, "interface": "net0"}, {"name": a, "interface": "net2"}])
        _set(cluster, ns, "dn2", [{"name": a, "interface": "net0"}, {"name": "nope-x", "interface": "net1"}])
        stack.start_operator(OPERATOR_ENV)
        got = _served(cluster, ns, "dn", [("net0", a), ("net2", a)], timeout=60)
        assert got["net0"] == old["net0"]
        assert _ports(cluster, ns, "dn")[f"{ns}_dn_net0"][0] == uuid0
        wait_until(lambda: not cluster.allocations(b), what="net1 released on b")
        _refusal(cluster, ns, "dn2", "network nope-x does not exist")
        check_invariant(cluster, [a, b])
    finally:
        _cleanup(cluster, ns, ["dn", "dn2"], [a, b])


def test_operator_killed_mid_change_converges(cluster: Cluster, ns: str, two_nets) -> None:
    """SIGKILL at various moments of a change (before, between the NB write and the result, after
    it): the restarted operator serves the request exactly, nothing duplicated, nothing leaked."""
    a, b, pa, pb = two_nets
    stack = cluster.stack
    steps = [
        [{"name": a, "interface": "net0"}, {"name": b, "interface": "net1"}],                       # add
        [{"name": a, "interface": "net0"}, {"name": b, "interface": "net1", "ip_address": f"{pb}.50"}],  # replace
        [{"name": a, "interface": "net0"}, {"name": b, "interface": "net2", "ip_address": f"{pb}.50"}],  # move
        [{"name": a, "interface": "net0"}],                                                          # remove
    ]
    cluster.create_pod(ns, "km", [{"name": a, "interface": "net0"}])
    first = _served(cluster, ns, "km", [("net0", a)])["net0"]
    try:
        for delay in (0.0, 0.05, 0.15):
            for request in steps:
                _set(cluster, ns, "km", request)
                time.sleep(delay)
                stack.stop_operator(signal.SIGKILL)
                stack.start_operator(OPERATOR_ENV)
                got = _served(cluster, ns, "km", [(r["interface"], r["name"]) for r in request], timeout=60,
                              ips={r["interface"]: r["ip_address"] for r in request if "ip_address" in r})
                assert got["net0"] == first
                for r in request:
                    if "ip_address" in r:
                        assert got[r["interface"]]["ip_address"] == r["ip_address"]
                check_invariant(cluster, [a, b])
    finally:
        _cleanup(cluster, ns, ["km"], [a, b])


def test_fast_flapping_ends_in_the_right_state(cluster: Cluster, ns: str, two_nets) -> None:
    a, b, pa, pb = two_nets
    base = [{"name": a, "interface": "net0"}]
    with_b = base + [{"name": b, "interface": "net1"}]
    with_static = base + [{"name": b, "interface": "net1", "ip_address": f"{pb}.200"}]
    cluster.create_pod(ns, "fl", base)
    first = _served(cluster, ns, "fl", [("net0", a)])["net0"]
    try:
        for i in range(50):
            _set(cluster, ns, "fl", [base, with_b, with_static][i % 3])
        _set(cluster, ns, "fl", with_b)   # the last word: net1 dynamic
        _served(cluster, ns, "fl", [("net0", a), ("net1", b)], timeout=60)

        def settled() -> bool:   # read together: the result may still be an intermediate one
            got = _ifaces(cluster, ns, "fl")
            return set(got) == {"net0", "net1"} and set(cluster.allocations(b)) == {got["net1"]["ip_address"]}
        wait_until(settled, 30, what="exactly net1 held on b")
        assert _ifaces(cluster, ns, "fl")["net0"] == first
        wait_until(lambda: set(_ports(cluster, ns, "fl")) == {f"{ns}_fl_net0", f"{ns}_fl_net1"}, what="two ports")
        check_invariant(cluster, [a, b])
        # and back to one interface, quickly after a burst
        for i in range(10):
            _set(cluster, ns, "fl", [with_b, base][i % 2])
        _set(cluster, ns, "fl", base)
        _served(cluster, ns, "fl", [("net0", a)], timeout=60)
        wait_until(lambda: not cluster.allocations(b), what="b released")
        check_invariant(cluster, [a, b])
    finally:
        _cleanup(cluster, ns, ["fl"], [a, b])


def _admission_refusal(fn) -> str:
    with pytest.raises(ApiException) as info:
        fn()
    assert info.value.status == 400, info.value
    return json.loads(info.value.body)["message"]


def test_webhook_validates_a_change_on_update(webhook_operator, cluster: Cluster, ns: str,  # noqa: F811
                                              two_nets) -> None:
    a, b, pa, pb = two_nets
    cluster.create_pod(ns, "wh", [{"name": a, "interface": "net0", "defaultGateway": True}])
    _served(cluster, ns, "wh", [("net0", a)])
    wait_until(lambda: cluster.allocations(a), what="a recorded (coalesced)")
    before = _snapshot(cluster, ns, "wh", [a, b])
    try:
        def bad_update() -> bool:
            try:
                _set(cluster, ns, "wh", [{"name": a, "interface": "net0", "defaultGateway": True},
                                         {"name": "nope-wh", "interface": "net1"}])
            except ApiException as exc:
                return exc.status == 400
            return False
        wait_until(bad_update, 30, what="webhook refusing an update")
        for request, text in [
            ([{"name": a, "interface": "net0", "defaultGateway": True},
              {"name": a, "interface": "net1", "ip_address": "192.0.2.1"}], f"ip_address 192.0.2.1 is outside {a}"),
            ([{"name": b, "interface": "net1"}], "interface net0 carries the pod's default route"),
            ('[{"name": ', "ovnNetwork is not valid JSON"),
        ]:
            msg = _admission_refusal(lambda request=request: _set(cluster, ns, "wh", request))
            assert text in msg and "it keeps net0 on" in msg, (text, msg)
        assert _snapshot(cluster, ns, "wh", [a, b]) == before
        # a valid change passes admission and is served
        _set(cluster, ns, "wh", [{"name": a, "interface": "net0", "defaultGateway": True},
                                 {"name": b, "interface": "net1"}])
        _served(cluster, ns, "wh", [("net0", a), ("net1", b)])
        check_invariant(cluster, [a, b])
    finally:
        _cleanup(cluster, ns, ["wh"], [a, b])
