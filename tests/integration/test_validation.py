"""Every invalid request yields one specific message (annotation + Warning Event) and leaves
nothing behind: no allocation, no port."""
from __future__ import annotations

import json

import pytest

from tests.integration.kit import Cluster, check_invariant, wait_until


@pytest.fixture
def nets(cluster: Cluster, subnet, net_name):
    a, b = net_name("a"), net_name("b")
    sa, sb = subnet(), subnet()
    cluster.create_vnet(a, sa, excludeIPs=[sa.replace("0/24", "100") + ".." + sa.replace("0/24", "110")])
    cluster.create_vnet(b, sb)
    cluster.wait_ready(a)
    cluster.wait_ready(b)
    yield a, b, sa.rsplit(".", 1)[0], sb.rsplit(".", 1)[0]
    cluster.delete_vnet(a)
    cluster.delete_vnet(b)


def cases(a: str, b: str, pa: str, pb: str) -> list[tuple[str, object, str]]:
    eleven = [{"name": a, "interface": f"eth{i}"} for i in range(10)] + \
             [{"name": a, "interface": "x1"}]
    return [
        ("malformed", '[{"name": "x", ', "ovnNetwork is not valid JSON"),
        ("not-a-list", '{"name": "x"}', "ovnNetwork must be a JSON list of interfaces, got object"),
        ("no-digit", [{"name": a, "interface": "eth"}], 'interface "eth": name must end with a digit 0-9'),
        ("bad-ip", [{"name": b, "interface": "net1", "ip_address": "172.16.2526.3"}],
         'ip_address "172.16.2526.3" is not a valid IPv4 address'),
        ("outside", [{"name": b, "interface": "net1", "ip_address": "192.0.2.7"}],
         f"ip_address 192.0.2.7 is outside {b}"),
        ("network-addr", [{"name": b, "interface": "net1", "ip_address": f"{pb}.0"}],
         f"ip_address {pb}.0 is the network address of {b}"),
        ("broadcast", [{"name": b, "interface": "net1", "ip_address": f"{pb}.255"}],
         f"ip_address {pb}.255 is the broadcast address of {b}"),
        ("gateway", [{"name": b, "interface": "net1", "ip_address": f"{pb}.1"}],
         f"ip_address {pb}.1 is the gateway of {b}"),
        ("excluded", [{"name": a, "interface": "net1", "ip_address": f"{pa}.105"}],
         f"ip_address {pa}.105 is excluded on {a}"),
        ("unknown-net", [{"name": "no-such-net", "interface": "net1"}], "network no-such-net does not exist"),
        ("eleven", eleven, "ovnNetwork lists 11 interfaces; at most 10 are supported"),
        ("same-digit", [{"name": a, "interface": "net1"}, {"name": b, "interface": "eth1"}],
         'interface "net1" and "eth1" end with the same digit 1'),
        ("bad-mac", [{"name": a, "interface": "net1", "mac_address": "01:00:00:00:00:01"}],
         'mac_address "01:00:00:00:00:01" is a multicast address'),
        ("two-gw", [{"name": a, "interface": "net0", "defaultGateway": True},
                    {"name": b, "interface": "net1", "defaultGateway": "true"}],
         "more than one interface sets defaultGateway (net0, net1)"),
    ]


def test_invalid_requests_leave_nothing_behind(cluster: Cluster, ns: str, nets) -> None:
    a, b, pa, pb = nets
    all_cases = cases(a, b, pa, pb)
    # the first interface of several requests is valid: nothing may be allocated for it either
    for case, request, _ in all_cases:
        if isinstance(request, list) and len(request) < 10:
            request = [{"name": a, "interface": "ok9"}] + request if not any(
                r.get("interface", "").endswith("9") for r in request) else request
        cluster.create_pod(ns, f"bad-{case}", request)
    for case, _, message in all_cases:
        err = cluster.pod_error(ns, f"bad-{case}")
        assert message in err, f"{case}: {err!r} does not contain {message!r}"
        assert "ovnIfaceList" not in cluster.annotations(ns, f"bad-{case}")
        wait_until(lambda case=case, message=message: any(message in m
                                                          for m in cluster.event_messages(ns, f"bad-{case}")),
                   what=f"Warning event for {case}")
        ev = [e for e in cluster.events(ns, f"bad-{case}") if message in e.message][0]
        assert ev.type == "Warning"
    assert not [p for p in cluster.nb_pod_ports() if p.startswith(f"{ns}_")], "a refused pod got a port"
    for net in (a, b):
        st = cluster.vnet(net)["status"]
        assert not cluster.allocations(net) and st["usedIPs"] == 0
    check_invariant(cluster, [a, b])


def test_taken_static_ip_and_mac(cluster: Cluster, ns: str, nets) -> None:
    a, b, pa, pb = nets
    cluster.create_pod(ns, "holder", [{"name": b, "interface": "net1", "ip_address": f"{pb}.3",
                                       "mac_address": "0a:00:00:00:00:15"}])
    cluster.iface_list(ns, "holder")
    cluster.create_pod(ns, "ip-thief", [{"name": a, "interface": "net0"},
                                        {"name": b, "interface": "net1", "ip_address": f"{pb}.3"}])
    assert cluster.pod_error(ns, "ip-thief") == f"ip_address {pb}.3 on {b} is held by {ns}/holder"
    cluster.create_pod(ns, "mac-thief", [{"name": b, "interface": "net1", "mac_address": "0a:00:00:00:00:15"}])
    assert cluster.pod_error(ns, "mac-thief") == f"mac_address 0a:00:00:00:00:15 on {b} is held by {ns}/holder"
    assert {p for p in cluster.nb_pod_ports() if p.startswith(f"{ns}_")} == {f"{ns}_holder_net1"}
    assert cluster.vnet(a)["status"]["usedIPs"] == 0   # ip-thief's valid net0 was not allocated
    check_invariant(cluster, [a, b])
    # the holder leaves: the waiting pod gets the address (it was refused, not forgotten)
    cluster.delete_pod(ns, "holder")
    got = cluster.iface_list(ns, "ip-thief", timeout=30)
    assert got[1]["ip_address"] == f"{pb}.3"
    wait_until(lambda: "ovnNetworkError" not in cluster.annotations(ns, "ip-thief"), what="error removed")


def test_corrected_annotation_is_processed(cluster: Cluster, ns: str, nets) -> None:
    a, *_ = nets
    cluster.create_pod(ns, "typo", [{"name": a, "interface": "eth"}])
    cluster.pod_error(ns, "typo")
    cluster.core.patch_namespaced_pod("typo", ns, {"metadata": {"annotations": {
        "ovnNetwork": json.dumps([{"name": a, "interface": "eth0"}])}}})
    ifaces = cluster.iface_list(ns, "typo")
    assert ifaces[0]["interface"] == "eth0"
    wait_until(lambda: "ovnNetworkError" not in cluster.annotations(ns, "typo"), what="error annotation removed")
    check_invariant(cluster, [a])


def test_network_created_after_pod(cluster: Cluster, ns: str, subnet, net_name) -> None:
    late = net_name("late")
    cluster.create_pod(ns, "early", [{"name": late, "interface": "net0"}])
    assert "does not exist" in cluster.pod_error(ns, "early")
    cluster.create_vnet(late, subnet())
    try:
        assert cluster.iface_list(ns, "early", timeout=30)[0]["name"] == late
    finally:
        cluster.delete_pod(ns, "early")
        cluster.delete_vnet(late)


def test_change_after_attach_is_applied(cluster: Cluster, ns: str, nets) -> None:
    """Issue 16 (was: a ChangeIgnored warning): a change of an attached pod is served; the
    interface asked on another network is removed and added again (tests/integration/test_hotplug.py)."""
    a, b, *_ = nets
    cluster.create_pod(ns, "fixed", [{"name": a, "interface": "net0"}])
    cluster.iface_list(ns, "fixed")
    cluster.core.patch_namespaced_pod("fixed", ns, {"metadata": {"annotations": {
        "ovnNetwork": json.dumps([{"name": b, "interface": "net0"}])}}})
    wait_until(lambda: cluster.iface_list(ns, "fixed")[0]["name"] == b, what="net0 moved to b")
    wait_until(lambda: cluster.vnet(b)["status"]["usedIPs"] == 1 and cluster.vnet(a)["status"]["usedIPs"] == 0,
               what="a released, b held (coalesced)")
    assert not any(e.reason == "ChangeIgnored" for e in cluster.events(ns, "fixed"))
    check_invariant(cluster, [a, b])


def test_exhausted_network_attaches_when_an_address_frees(cluster: Cluster, ns: str, subnet, net_name) -> None:
    tiny = net_name("tiny")
    cluster.create_vnet(tiny, subnet().replace("/24", "/29"))   # 6 hosts - gateway = 5
    cluster.wait_ready(tiny)
    try:
        for i in range(5):
            cluster.create_pod(ns, f"t{i}", [{"name": tiny, "interface": "net0"}])
        for i in range(5):
            cluster.iface_list(ns, f"t{i}")
        cluster.create_pod(ns, "t5", [{"name": tiny, "interface": "net0"}])
        assert "has no free address" in cluster.pod_error(ns, "t5")
        wait_until(lambda: cluster.vnet(tiny)["status"]["availableIPs"] == 0, what="availableIPs 0 (coalesced)")
        freed = cluster.iface_list(ns, "t2")[0]["ip_address"]
        cluster.delete_pod(ns, "t2")
        assert cluster.iface_list(ns, "t5", timeout=30)[0]["ip_address"] == freed
        check_invariant(cluster, [tiny])
    finally:
        for i in range(6):
            cluster.delete_pod(ns, f"t{i}", wait=False)
        cluster.delete_vnet(tiny)


def test_finished_pod_releases(cluster: Cluster, ns: str, nets) -> None:
    a, *_ = nets
    cluster.create_pod(ns, "job", [{"name": a, "interface": "net0"}])
    cluster.iface_list(ns, "job")
    assert f"{ns}_job_net0" in cluster.nb_pod_ports()
    cluster.set_phase(ns, "job", "Succeeded")
    wait_until(lambda: f"{ns}_job_net0" not in cluster.nb_pod_ports(), what="port of finished pod removed")
    wait_until(lambda: cluster.vnet(a)["status"]["usedIPs"] == 0, what="released")
    check_invariant(cluster, [a])


def test_dynamic_cursor_reuses_freed_address_last(cluster: Cluster, ns: str, subnet, net_name) -> None:
    n = net_name("cur")
    cluster.create_vnet(n, subnet())
    cluster.wait_ready(n)
    try:
        cluster.create_pod(ns, "c0", [{"name": n, "interface": "net0"}])
        first = cluster.iface_list(ns, "c0")[0]["ip_address"]
        cluster.delete_pod(ns, "c0")
        wait_until(lambda: cluster.vnet(n)["status"]["usedIPs"] == 0, what="released")
        cluster.create_pod(ns, "c1", [{"name": n, "interface": "net0"}])
        second = cluster.iface_list(ns, "c1")[0]["ip_address"]
        assert second != first and int(second.rsplit(".", 1)[1]) == int(first.rsplit(".", 1)[1]) + 1
    finally:
        cluster.delete_pod(ns, "c1", wait=False)
        cluster.delete_vnet(n)
