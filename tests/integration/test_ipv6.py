"""IPv6 and dual-stack networks on the real stack (issue 13): attach on a dual-stack and an
IPv6-only network with the NB rows, IPBlocks and status checked; every bad-input rule with its
message and nothing left behind; a restart recovering IPv6 allocations exactly (cursor included,
and with the NB wiped while down); an operator-killed churn on a dual-stack network."""
from __future__ import annotations

import json
import signal
import uuid

import netaddr
import pytest

from harness.soak import run_churn
from tests.integration.conftest import OPERATOR_ENV
from tests.integration.kit import Cluster, check_invariant, invariant_now, wait_until
from tests.integration.test_webhook import _refusal, _try_bad, webhook_operator  # noqa: F401 - a fixture


@pytest.fixture
def v6net():
    """A fresh IPv6 /64 prefix per call (routed networks may not overlap)."""
    def make(prefix: int = 64) -> str:
        # canonical text (no leading zeros in a group), as the operator's messages print it
        return str(netaddr.IPNetwork(f"fd{uuid.uuid4().hex[:2]}:{uuid.uuid4().hex[:4]}::/{prefix}"))
    return make


def _host(cidr: str, n: int) -> str:
    return str(netaddr.IPAddress(netaddr.IPNetwork(cidr).first + n))


def _port(cluster: Cluster, ns: str, pod: str, iface: str) -> dict:
    return cluster.nb_pod_ports()[f"{ns}_{pod}_{iface}"]


def _lrp_networks(cluster: Cluster, net: str) -> list[str]:
    return sorted({r["name"]: r for r in cluster.nb_rows("Logical_Router_Port")}[f"rtr-{net}"]["networks"])


def test_dual_stack_and_ipv6_only_networks(cluster: Cluster, ns: str, subnet, v6net, net_name) -> None:
    d, s = net_name("dual"), net_name("six")
    s4, s6, only6 = subnet(), v6net(), v6net()
    cluster.create_vnet(d, [s6, s4], excludeIPs=[_host(s6, 9)],
                        routes=[{"dst": "fd10::/48", "gw": _host(s6, 254)},
                                {"dst": "10.250.0.0/16", "gw": _host(s4, 254)}])
    cluster.create_vnet(s, only6)
    try:
        cond = cluster.wait_ready(d)
        assert cond["message"] == f"logical switch {d} and gateways {_host(s4, 1)} and {_host(s6, 1)} are in OVN"
        cluster.wait_ready(s)
        cluster.create_pod(ns, "p1", [{"name": d, "interface": "net0", "defaultGateway": True},
                                      {"name": s, "interface": "net1"}])
        cluster.create_pod(ns, "p2", [{"name": d, "interface": "net0",
                                       "ip_addresses": [_host(s6, 0x77), _host(s4, 77)]},
                                      {"name": s, "interface": "net1", "ip_address": _host(only6, 0x55)}])
        cluster.create_pod(ns, "p3", [{"name": d, "interface": "net0", "ip_address": _host(s6, 0x78)}])

        (dual1, six1) = cluster.iface_list(ns, "p1")
        assert dual1["ip_address"] == _host(s4, 2) and dual1["prefix_length"] == 24   # the IPv4 fields as always
        assert dual1["gateway_ip"] == _host(s4, 1) and dual1["mac_address"] == "0a:58:" + ":".join(
            f"{int(o):02x}" for o in _host(s4, 2).split("."))
        assert dual1["ip_addresses"] == [f"{_host(s4, 2)}/24", f"{_host(s6, 2)}/64"]
        assert dual1["gateway_ips"] == [_host(s4, 1), _host(s6, 1)]
        assert dual1["routes"] == [{"dst": "10.250.0.0/16", "gw": _host(s4, 254)},
                                   {"dst": "fd10::/48", "gw": _host(s6, 254)}]
        assert six1["ip_address"] == _host(only6, 2) and six1["prefix_length"] == 64
        assert six1["gateway_ip"] == _host(only6, 1) and six1["ip_addresses"] == [f"{_host(only6, 2)}/64"]
        assert six1["mac_address"] == "0a:58:00:00:00:02"   # the IPv6 address's low 4 bytes
        (dual2, six2) = cluster.iface_list(ns, "p2")
        assert dual2["ip_addresses"] == [f"{_host(s4, 77)}/24", f"{_host(s6, 0x77)}/64"]
        assert six2["ip_address"] == _host(only6, 0x55)
        (dual3,) = cluster.iface_list(ns, "p3")   # a static IPv6 address, the IPv4 one dynamic
        assert dual3["ip_addresses"] == [f"{_host(s4, 3)}/24", f"{_host(s6, 0x78)}/64"]

        # NB: one port per interface carrying every family; the router ports hold every gateway
        p1 = _port(cluster, ns, "p1", "net0")
        want = [f"{dual1['mac_address']} {_host(s4, 2)} {_host(s6, 2)}"]
        assert p1["addresses"] == want and p1["port_security"] == want
        p1six = _port(cluster, ns, "p1", "net1")
        assert p1six["addresses"] == p1six["port_security"] == [f"0a:58:00:00:00:02 {_host(only6, 2)}"]
        assert _lrp_networks(cluster, d) == sorted([f"{_host(s4, 1)}/24", f"{_host(s6, 1)}/64"])
        assert _lrp_networks(cluster, s) == [f"{_host(only6, 1)}/64"]

        # IPBlocks: IPv6 addresses in /120 blocks named after their first address
        first6 = netaddr.IPNetwork(s6).first
        digits = f"{first6:032x}"
        block6 = f"{d}." + "-".join(digits[i:i + 4] for i in range(0, 32, 4))
        # the records are written after the results, coalesced: wait until the three pods' are in
        def blocks_written():
            got = {b["metadata"]["name"]: b for b in cluster.ipblocks(d)}
            return got if len((got.get(block6) or {}).get("allocations") or {}) == 3 else None
        blocks = wait_until(blocks_written, what=f"the IPv6 IPBlock {block6} holding 3 addresses")
        assert set(blocks) == {f"{d}.{_host(s4, 0)}", block6}, set(blocks)
        assert blocks[block6]["spec"]["cidr"] == f"{_host(s6, 0)}/120"
        assert set(blocks[block6]["allocations"]) == {_host(s6, 2), _host(s6, 0x77), _host(s6, 0x78)}
        assert blocks[block6]["allocations"][_host(s6, 2)]["mac"] == dual1["mac_address"]

        # status: the integer counters of the primary family, exact decimal strings per family
        def status_settled(net: str, used: int):
            st = cluster.vnet(net).get("status") or {}
            return st.get("usedIPs") == used and st
        st = wait_until(lambda: status_settled(d, 3), what="dual status")
        assert st["availableIPs"] == 253 - 3
        assert [(f["family"], f["usedIPs"], f["availableIPs"]) for f in st["families"]] == [
            ("IPv4", "3", str(253 - 3)), ("IPv6", "3", str(2**64 - 3 - 3))]
        st6 = wait_until(lambda: status_settled(s, 2), what="six status")
        assert "availableIPs" not in st6, "a /64's free count does not fit a JSON number exactly"
        assert st6["families"][0]["availableIPs"] == str(2**64 - 2 - 2)
        check_invariant(cluster, [d, s])

        for p in ("p1", "p2", "p3"):
            cluster.delete_pod(ns, p)
        wait_until(lambda: not cluster.allocations(d) and not cluster.allocations(s), 30, what="released")
        assert not [n for n in cluster.nb_pod_ports() if n.startswith(f"{ns}_")]
        check_invariant(cluster, [d, s])
    finally:
        for p in ("p1", "p2", "p3"):
            cluster.delete_pod(ns, p, wait=False)
        wait_until(lambda: not cluster.allocations(d) and not cluster.allocations(s), 30, what="released")
        cluster.delete_vnet(d)
        cluster.delete_vnet(s)


def test_bad_ipv6_input_is_refused_with_its_message(cluster: Cluster, ns: str, subnet, v6net, net_name) -> None:
    d, v4only = net_name("dual"), net_name("four")
    s4, s6 = subnet(), v6net()
    cluster.create_vnet(d, [s4, s6], excludeIPs=[_host(s6, 9)])
    cluster.create_vnet(v4only, subnet())
    bad_nets: list[str] = []
    try:
        cluster.wait_ready(d)
        cluster.wait_ready(v4only)
        # networks: each refused in its Ready condition, nothing in OVN
        other6 = v6net()
        for spec, reason, message in [
            ({"subnets": [subnet(), subnet()]}, "InvalidSpec", "spec.subnets lists two IPv4 subnets"),
            ({"subnet": other6, "gateway": "10.9.9.1"}, "InvalidSpec",
             f"spec.gateway 10.9.9.1 is an IPv4 address, but subnet {other6} is IPv6"),
            ({"subnet": other6, "gateway": "fd00:ffff::1"}, "InvalidSpec",
             f"spec.gateway fd00:ffff::1 is outside subnet {other6}"),
            ({"subnet": other6.replace("/64", "/127")}, "InvalidSpec",
             "leaves no host after the subnet-router anycast address and the gateway; use /126 or shorter"),
            ({"subnet": "fd00::/47"}, "InvalidSpec",
             "spec.subnet fd00::/47 is too large: an IPv6 network is one L2 segment, at most a /48"),
            ({"subnets": [subnet(), s6.replace("/64", "/80")]}, "Overlap",
             f"subnet {s6.replace('/64', '/80')} overlaps network {d} ({s6})"),
        ]:
            name = net_name("bad")
            bad_nets.append(name)
            cluster.custom.create_cluster_custom_object("ovnvnet.io", "v1", "virtualnetworks", {
                "apiVersion": "ovnvnet.io/v1", "kind": "VirtualNetwork", "metadata": {"name": name}, "spec": spec})
            cond = wait_until(lambda name=name: (c := cluster.ready(name)) and c["status"] == "False" and c,
                              what=f"{name} refused")
            assert cond["reason"] == reason and message in cond["message"], (spec, cond)
            assert name not in cluster.nb_switches()
            assert f"rtr-{name}" not in {r["name"] for r in cluster.nb_rows("Logical_Router_Port")}

        # pods: each refused with ovnNetworkError, holding nothing
        cluster.create_pod(ns, "holder", [{"name": d, "interface": "net0", "ip_address": _host(s6, 0x50)}])
        cluster.iface_list(ns, "holder")
        before = wait_until(lambda: len(r := cluster.allocations(d)) == 2 and r, what="holder recorded")
        cases = [
            ([{"name": d, "interface": "net0", "ip_address": _host(s6, 0)}],
             f"ip_address {_host(s6, 0)} is the subnet-router anycast address of {d}"),
            ([{"name": d, "interface": "net0", "ip_address": _host(s6, 1)}],
             f"ip_address {_host(s6, 1)} is the gateway of {d}"),
            ([{"name": d, "interface": "net0", "ip_address": _host(s6, 9)}],
             f"ip_address {_host(s6, 9)} is excluded on {d}"),
            ([{"name": d, "interface": "net0", "ip_address": "fd00:ffff::5"}],
             f"ip_address fd00:ffff::5 is outside {d} ({s6})"),
            ([{"name": d, "interface": "net0", "ip_address": _host(s6, 0x50)}],
             f"ip_address {_host(s6, 0x50)} on {d} is held by {ns}/holder"),
            ([{"name": v4only, "interface": "net0", "ip_address": "fd00:1::5"}],
             f"ip_address fd00:1::5 is an IPv6 address, but network {v4only} has no IPv6 subnet"),
            ([{"name": d, "interface": "net0", "ip_addresses": [_host(s6, 5), _host(s6, 6)]}],
             f"ovnNetwork[0]: ip_addresses lists two IPv6 addresses ({_host(s6, 5)}, {_host(s6, 6)})"),
            ([{"name": d, "interface": "net0", "ip_address": "fd00::1%eth0"}],
             'ip_address "fd00::1%eth0" is not a valid IPv6 address'),
            # dual-stack atomicity: the IPv4 address is free, the IPv6 one held: neither is taken
            ([{"name": d, "interface": "net0", "ip_addresses": [_host(s4, 40), _host(s6, 0x50)]}],
             f"ip_address {_host(s6, 0x50)} on {d} is held by {ns}/holder"),
        ]
        for i, (request, message) in enumerate(cases):
            cluster.create_pod(ns, f"bad{i}", request)
            assert message in cluster.pod_error(ns, f"bad{i}"), (request, cluster.pod_error(ns, f"bad{i}"))
        assert cluster.allocations(d) == before and not cluster.allocations(v4only)
        assert not [n for n in cluster.nb_pod_ports() if n.startswith(f"{ns}_bad")]
        check_invariant(cluster, [d, v4only])
        # the held address frees: the pod waiting for it (retried) gets both families (bad4, which
        # waits for the same address, goes first)
        cluster.delete_pod(ns, "bad4")
        cluster.delete_pod(ns, "holder")
        last = len(cases) - 1
        (got,) = cluster.iface_list(ns, f"bad{last}", timeout=30)
        assert got["ip_addresses"] == [f"{_host(s4, 40)}/24", f"{_host(s6, 0x50)}/64"]
    finally:
        for i in range(12):
            cluster.delete_pod(ns, f"bad{i}", wait=False)
        cluster.delete_pod(ns, "holder", wait=False)
        wait_until(lambda: not cluster.allocations(d), 30, what="released")
        for n in [d, v4only, *bad_nets]:
            cluster.delete_vnet(n)


def _snapshot(cluster: Cluster, ns: str, pods: list[str], nets: list[str]) -> dict:
    return {"results": {p: cluster.annotations(ns, p)["ovnIfaceList"] for p in pods},
            "ports": {n: (r["addresses"], r["port_security"]) for n, r in cluster.nb_pod_ports().items()
                      if n.startswith(f"{ns}_")},
            "record": {n: cluster.allocations(n) for n in nets}}


def test_restart_recovers_ipv6_exactly(cluster: Cluster, ns: str, subnet, v6net, net_name) -> None:
    d, s = net_name("dual"), net_name("six")
    s4, s6, only6 = subnet(), v6net(), v6net(120)
    cluster.create_vnet(d, [s4, s6])
    cluster.create_vnet(s, only6)
    stack = cluster.stack
    pods = [f"r{i}" for i in range(6)]
    try:
        cluster.wait_ready(d)
        cluster.wait_ready(s)
        for p in pods:
            cluster.create_pod(ns, p, [{"name": d, "interface": "net0"}, {"name": s, "interface": "net1"}])
        cluster.create_pod(ns, "static", [{"name": d, "interface": "net0", "ip_address": _host(s6, 0x99)}])
        for p in pods + ["static"]:
            cluster.iface_list(ns, p)
        cluster.delete_pod(ns, "r0")           # frees .2 / ::2: the cursor must not hand them out next
        pods.remove("r0")
        check_invariant(cluster, [d, s])
        before = _snapshot(cluster, ns, pods + ["static"], [d, s])

        stack.stop_operator(signal.SIGKILL)
        stack.start_operator(OPERATOR_ENV)
        wait_until(lambda: _snapshot(cluster, ns, pods + ["static"], [d, s]) == before, 30, what="same state")
        cluster.create_pod(ns, "next", [{"name": d, "interface": "net0"}, {"name": s, "interface": "net1"}])
        (nd, ns6) = cluster.iface_list(ns, "next")
        # every family's cursor came back: the next addresses follow the last handed out (r0..r5
        # took .2-.7 and ::2-::7, "static" .8 and its static ::99)
        assert nd["ip_addresses"] == [f"{_host(s4, 9)}/24", f"{_host(s6, 8)}/64"], nd
        assert ns6["ip_address"] == _host(only6, 8)
        check_invariant(cluster, [d, s])

        # the NB wiped while the operator is down: rebuilt from the IPBlocks with the same addresses
        before = _snapshot(cluster, ns, pods + ["static", "next"], [d, s])
        stack.stop_operator(signal.SIGKILL)
        for name in before["ports"]:
            stack.nbctl("lsp-del", name)
        stack.start_operator(OPERATOR_ENV)
        wait_until(lambda: _snapshot(cluster, ns, pods + ["static", "next"], [d, s]) == before, 30,
                   what="NB ports rebuilt")
        check_invariant(cluster, [d, s])
    finally:
        if not stack.running("operator"):
            stack.start_operator(OPERATOR_ENV)
        for p in pods + ["static", "next"]:
            cluster.delete_pod(ns, p, wait=False)
        wait_until(lambda: not cluster.allocations(d) and not cluster.allocations(s), 60, what="released")
        cluster.delete_vnet(d)
        cluster.delete_vnet(s)


def test_churn_on_dual_stack_with_operator_killed(cluster: Cluster, subnet, v6net, net_name) -> None:
    """A dual-stack /27 + /123 (29 and 30 addresses for pods) with at most 20 pods alive, so both
    cursors wrap several times; the invariant (every family's addresses, ports, blocks and
    counters) holds after each restart, and no address of either family is ever held twice."""
    n = net_name("dchurn")
    cluster.create_vnet(n, [subnet().replace("/24", "/27"), v6net(123)])
    cluster.wait_ready(n)
    try:
        res = run_churn(cluster.stack, cluster, pods=150, kills=2, networks=[n], operator_env=OPERATOR_ENV,
                        seed=4321, in_flight=20)
        print("\n" + res.summary())
        assert not res.violations, res.violations
        assert len(set(res.operator_pids)) == 3 and None not in res.operator_pids, res.operator_pids
        assert res.checkpoints == 2 + 2
        assert res.attached >= 75, f"the watch saw only {res.attached} pods attached"
        assert res.reused >= 40, f"only {res.reused} addresses (both families) were reused"
    finally:
        cluster.delete_vnet(n)


@pytest.mark.usefixtures("webhook_operator")
def test_webhook_refuses_bad_ipv6_at_admission(cluster: Cluster, ns: str, subnet, v6net, net_name) -> None:
    """The same rules, refused at create time with the same messages (nothing is stored)."""
    d = net_name("whd")
    s4, s6 = subnet(), v6net()
    cluster.create_vnet(d, [s4, s6])
    cluster.wait_ready(d)
    try:
        cluster.create_pod(ns, "holder", [{"name": d, "interface": "net0", "ip_address": _host(s6, 5)}])
        cluster.iface_list(ns, "holder")
        wait_until(lambda: _try_bad(cluster, ns), 30, what="webhook answering")
        other6 = v6net()
        for spec, message in [
            ({"subnets": [other6, v6net()]}, "spec.subnets lists two IPv6 subnets"),
            ({"subnet": subnet(), "gateway": "fd00::1"}, "spec.gateway fd00::1 is an IPv6 address, but subnet"),
            ({"subnet": other6.replace("/64", "/127")}, "use /126 or shorter"),
            ({"subnet": "fd00::/40"}, "is too large: an IPv6 network is one L2 segment, at most a /48"),
            ({"subnets": [subnet(), s6]}, f"subnet {s6} overlaps network {d} ({s6})"),
        ]:
            name = net_name("whbad")
            msg = _refusal(lambda spec=spec, name=name: cluster.custom.create_cluster_custom_object(
                "ovnvnet.io", "v1", "virtualnetworks",
                {"apiVersion": "ovnvnet.io/v1", "kind": "VirtualNetwork", "metadata": {"name": name}, "spec": spec}))
            assert message in msg, (spec, msg)
            assert not cluster.vnet_exists(name)
        for request, message in [
            ([{"name": d, "interface": "net0", "ip_address": _host(s6, 0)}],
             f"ip_address {_host(s6, 0)} is the subnet-router anycast address of {d}"),
            ([{"name": d, "interface": "net0", "ip_address": _host(s6, 5)}],
             f"ip_address {_host(s6, 5)} on {d} is held by {ns}/holder"),
            ([{"name": d, "interface": "net0", "ip_addresses": ["fd00::1", "fd00::2"]}],
             "ip_addresses lists two IPv6 addresses"),
        ]:
            msg = _refusal(lambda request=request: cluster.create_pod(ns, "bad", request))
            assert message in msg, (request, msg)
            assert not cluster.pod_exists(ns, "bad")
        # an update that would strand IPv6 allocations
        msg = _refusal(lambda: cluster.patch_vnet_spec(d, {"subnets": [s4, v6net()]}))
        assert f"subnet change {s6} -> " in msg and f"{ns}/holder" in msg
    finally:
        cluster.delete_pod(ns, "holder")
        cluster.delete_vnet(d)


def test_legacy_pod_on_a_dual_stack_default_network(cluster: Cluster, ns: str, subnet, v6net, net_name) -> None:
    """A pod without `ovnNetwork` on a dual-stack default network gets both families, answered in
    `ovn` (the IPv4 `ip_address`/`gateway_ip` as before, plus `ip_addresses`/`gateway_ips`); a
    static IPv6 address from the legacy request is honoured; a restart keeps both."""
    default = net_name("ddef")
    s4, s6 = subnet(), v6net()
    cluster.create_vnet(default, [s4, s6])
    cluster.wait_ready(default)
    stack = cluster.stack
    env = {**OPERATOR_ENV, "OVNVNET_DEFAULT_NETWORK": default}
    stack.stop_operator()
    stack.start_operator(env)

    def legacy(name: str, ovn: dict | None = None) -> dict:
        cluster.core.create_namespaced_pod(ns, {
            "metadata": {"name": name, "annotations": {"ovn": json.dumps(ovn)} if ovn else {}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox"}]}})
        raw = wait_until(lambda: (a := cluster.annotations(ns, name).get("ovn")) and "gateway_ip" in a and a,
                         what=f"ovn result on {name}")
        return json.loads(raw)
    try:
        plain = legacy("plain")
        assert plain["ip_address"] == f"{_host(s4, 2)}/24" and plain["gateway_ip"] == _host(s4, 1)
        assert plain["ip_addresses"] == [f"{_host(s4, 2)}/24", f"{_host(s6, 2)}/64"]
        assert plain["gateway_ips"] == [_host(s4, 1), _host(s6, 1)]
        static = legacy("static", {"ip_address": _host(s6, 0x42)})
        assert static["ip_addresses"] == [f"{_host(s4, 3)}/24", f"{_host(s6, 0x42)}/64"]
        port = cluster.nb_pod_ports()[f"{ns}_plain"]
        assert port["addresses"] == [f"{plain['mac_address']} {_host(s4, 2)} {_host(s6, 2)}"]
        check_invariant(cluster, [default])
        stack.stop_operator(signal.SIGKILL)
        stack.start_operator(env)
        assert json.loads(cluster.annotations(ns, "plain")["ovn"]) == plain
        check_invariant(cluster, [default])
    finally:
        for p in ("plain", "static"):
            cluster.delete_pod(ns, p, wait=False)
        wait_until(lambda: not cluster.allocations(default), 30, what="released")
        stack.stop_operator()
        stack.start_operator(OPERATOR_ENV)
        cluster.delete_vnet(default)


def test_invariant_checker_sees_ipv6_corruptions(cluster: Cluster, ns: str, subnet, v6net, net_name) -> None:
    """The invariant covers IPv6: with the operator stopped (nothing repairs), each corruption of
    an IPv6 fact makes the checker fail naming it, and restoring it makes it pass again."""
    d = net_name("inv6")
    s4, s6 = subnet(), v6net()
    cluster.create_vnet(d, [s4, s6])
    cluster.wait_ready(d)
    stack = cluster.stack
    try:
        cluster.create_pod(ns, "p", [{"name": d, "interface": "net0"}])
        (res,) = cluster.iface_list(ns, "p")
        check_invariant(cluster, [d])
        stack.stop_operator()
        port, lrp = f"{ns}_p_net0", f"rtr-{d}"
        v4only = f'"{res["mac_address"]} {_host(s4, 2)}"'
        both = f'"{res["mac_address"]} {_host(s4, 2)} {_host(s6, 2)}"'
        block6 = next(b for b in cluster.ipblocks(d) if ":" in b["spec"]["cidr"])
        entry = block6["allocations"][_host(s6, 2)]

        def set_block(value):
            cluster.custom.patch_cluster_custom_object("ovnvnet.io", "v1", "ipblocks", block6["metadata"]["name"],
                                                       {"allocations": {_host(s6, 2): value}})

        def set_families(value: str):
            fams = cluster.vnet(d)["status"]["families"]
            fams[1]["availableIPs"] = value
            cluster.custom.patch_cluster_custom_object_status("ovnvnet.io", "v1", "virtualnetworks", d,
                                                              {"status": {"families": fams}})
        good_free = cluster.vnet(d)["status"]["families"][1]["availableIPs"]
        cases = [
            (lambda: stack.nbctl("set", "Logical_Switch_Port", port, f"addresses={v4only}"), f"port {port}: addresses",
             lambda: stack.nbctl("set", "Logical_Switch_Port", port, f"addresses={both}")),
            (lambda: stack.nbctl("set", "Logical_Switch_Port", port, f"port_security={v4only}"),
             f"port {port}: port_security",
             lambda: stack.nbctl("set", "Logical_Switch_Port", port, f"port_security={both}")),
            (lambda: stack.nbctl("set", "Logical_Router_Port", lrp, f"networks={_host(s4, 1)}/24"),
             f"{d}: router port networks",
             lambda: stack.nbctl("set", "Logical_Router_Port", lrp,
                                 f'networks="{_host(s4, 1)}/24","{_host(s6, 1)}/64"')),
            (lambda: set_block(None), f"{d}: the IPBlock record", lambda: set_block(entry)),
            (lambda: set_families(str(int(good_free) + 1)), f"{d}: status.families {s6}",
             lambda: set_families(good_free)),
        ]
        for corrupt, needle, restore in cases:
            corrupt()
            try:
                with pytest.raises(AssertionError) as exc:
                    invariant_now(cluster, [d])
                assert needle in str(exc.value), f"the checker failed for another reason: {exc.value}"
            finally:
                restore()
            invariant_now(cluster, [d])
    finally:
        if not stack.running("operator"):
            stack.start_operator(OPERATOR_ENV)
        cluster.delete_pod(ns, "p", wait=False)
        wait_until(lambda: not cluster.allocations(d), 30, what="released")
        cluster.delete_vnet(d)
