"""VirtualNetwork lifecycle: refused updates keep OVN as it was; delete waits while in use;
rows ovnvnet does not own are never touched."""
from __future__ import annotations

from tests.integration.kit import Cluster, check_invariant, wait_until


def _lrp(cluster: Cluster, net: str) -> dict:
    return {r["name"]: r for r in cluster.nb_rows("Logical_Router_Port")}[f"rtr-{net}"]


def test_update_that_would_strand_allocations_is_refused(cluster: Cluster, ns: str, subnet, net_name) -> None:
    n = net_name("upd")
    sn = subnet()
    prefix = sn.rsplit(".", 1)[0]
    cluster.create_vnet(n, sn)
    cluster.wait_ready(n)
    try:
        cluster.create_pod(ns, "tenant", [{"name": n, "interface": "net0", "ip_address": f"{prefix}.7"}])
        cluster.iface_list(ns, "tenant")

        for spec, needle in [
            ({"subnet": subnet()}, "would strand"),
            ({"gateway": f"{prefix}.7"}, f"gateway {prefix}.7 is held by {ns}/tenant"),
            ({"excludeIPs": [f"{prefix}.5..{prefix}.9"]}, f"excludeIPs covers {prefix}.7 held by {ns}/tenant"),
        ]:
            cluster.patch_vnet_spec(n, spec)
            cond = wait_until(
                lambda needle=needle: ((c := cluster.ready(n)) and c["status"] == "False"
                                       and needle in c["message"] and c),
                what=f"refusal naming {needle!r}")
            assert cond["reason"] == "Conflict"
            assert any(needle in m for m in cluster.event_messages("default", n)) or \
                any(needle in (e.message or "") for e in cluster.core.list_event_for_all_namespaces(
                    field_selector=f"involvedObject.name={n}").items), "no Warning event"
            # the configuration in force stays in OVN and in status.appliedSpec
            assert _lrp(cluster, n)["networks"] == [f"{prefix}.1/24"]
            assert cluster.vnet(n)["status"]["appliedSpec"]["subnet"] == sn
            # revert to the spec in force
            cluster.patch_vnet_spec(n, {"subnet": sn, "gateway": None, "excludeIPs": None})
            cluster.wait_ready(n)

        # a safe update (gateway elsewhere) is applied
        cluster.patch_vnet_spec(n, {"gateway": f"{prefix}.254"})
        wait_until(lambda: _lrp(cluster, n)["networks"] == [f"{prefix}.254/24"], what="gateway moved in OVN")
        wait_until(lambda: cluster.vnet(n)["status"]["gateway"] == f"{prefix}.254", what="status gateway")
        check_invariant(cluster, [n])
    finally:
        cluster.delete_pod(ns, "tenant")
        cluster.delete_vnet(n)


def test_delete_waits_while_pods_hold_addresses(cluster: Cluster, ns: str, subnet, net_name) -> None:
    n = net_name("del")
    cluster.create_vnet(n, subnet())
    cluster.wait_ready(n)
    cluster.create_pod(ns, "user", [{"name": n, "interface": "net0"}])
    cluster.iface_list(ns, "user")
    cluster.delete_vnet(n)
    cond = wait_until(lambda: (c := cluster.ready(n)) and c["reason"] == "InUse" and c,
                      what="InUse condition")
    assert f"{ns}/user" in cond["message"]
    assert n in cluster.nb_switches()
    assert cluster.vnet_exists(n)
    cluster.delete_pod(ns, "user")
    wait_until(lambda: not cluster.vnet_exists(n), timeout=30, what="network deleted after the pod left")
    assert n not in cluster.nb_switches()
    assert f"rtr-{n}" not in {r["name"] for r in cluster.nb_rows("Logical_Router_Port")}


def test_invalid_and_overlapping_specs(cluster: Cluster, subnet, net_name) -> None:
    a, b, c = net_name("ok"), net_name("overlap"), net_name("badgw")
    sa = subnet()
    cluster.create_vnet(a, sa)
    cluster.wait_ready(a)
    cluster.create_vnet(b, sa.replace("/24", "/25"))
    cluster.create_vnet(c, subnet(), gateway="192.0.2.1")
    try:
        cb = wait_until(lambda: (x := cluster.ready(b)) and x["status"] == "False" and x, what="overlap refused")
        assert cb["reason"] == "Overlap" and a in cb["message"]
        cc = wait_until(lambda: (x := cluster.ready(c)) and x["status"] == "False" and x, what="bad gateway refused")
        assert cc["reason"] == "InvalidSpec" and "192.0.2.1" in cc["message"]
        assert b not in cluster.nb_switches() and c not in cluster.nb_switches()
    finally:
        for n in (a, b, c):
            cluster.delete_vnet(n)


def test_rows_not_owned_are_never_touched(cluster: Cluster, ns: str, subnet, net_name) -> None:
    foreign = net_name("foreign")
    cluster.stack.nbctl("ls-add", foreign)
    cluster.stack.nbctl("lsp-add", foreign, "foreign-port")
    try:
        # a VirtualNetwork named like a foreign switch is refused, the switch is left alone
        cluster.create_vnet(foreign, subnet())
        cond = wait_until(lambda: (x := cluster.ready(foreign)) and x["status"] == "False" and x,
                          what="NotOwned condition")
        assert cond["reason"] == "NotOwned"
        cluster.delete_vnet(foreign)
        wait_until(lambda: not cluster.vnet_exists(foreign), what="vnet deleted")
        # several sweeps later the foreign rows are still there, unchanged
        import time
        time.sleep(3)
        sw = cluster.nb_switches()[foreign]
        assert sw["external_ids"] == {}
        assert "foreign-port" in {r["name"] for r in cluster.nb_rows("Logical_Switch_Port")}
    finally:
        cluster.stack.nbctl("--if-exists", "ls-del", foreign)


def test_unrouted_network_has_no_router_port(cluster: Cluster, ns: str, subnet, net_name) -> None:
    iso = net_name("iso")
    sn = subnet()
    cluster.create_vnet(iso, sn, routed=False)
    try:
        cond = cluster.wait_ready(iso)
        assert "isolated" in cond["message"]
        assert iso in cluster.nb_switches()
        def lrps() -> set[str]:
            return {r["name"] for r in cluster.nb_rows("Logical_Router_Port")}
        assert f"rtr-{iso}" not in lrps()
        # isolated networks may overlap a routed one: they share no router
        twin = net_name("twin")
        cluster.create_vnet(twin, sn, routed=False)
        cluster.wait_ready(twin)
        cluster.delete_vnet(twin)
        # becoming routed adds the router port; back to isolated removes it (pods may stay)
        cluster.create_pod(ns, "stay", [{"name": iso, "interface": "net0"}])
        ip = cluster.iface_list(ns, "stay")[0]["ip_address"]
        cluster.patch_vnet_spec(iso, {"routed": True})
        wait_until(lambda: f"rtr-{iso}" in lrps(), what="router port added")
        cluster.patch_vnet_spec(iso, {"routed": False})
        wait_until(lambda: f"rtr-{iso}" not in lrps()
                   and f"rtr-{iso}-ls" not in {r["name"] for r in cluster.nb_rows("Logical_Switch_Port")},
                   what="router port removed")
        assert cluster.iface_list(ns, "stay")[0]["ip_address"] == ip
        check_invariant(cluster, [iso])
    finally:
        cluster.delete_pod(ns, "stay")
        cluster.delete_vnet(iso)


def test_namespace_selector_restricts_who_may_attach(cluster: Cluster, subnet, net_name) -> None:
    import uuid
    n = net_name("tenant")
    allowed, other = "red-" + uuid.uuid4().hex[:6], "blue-" + uuid.uuid4().hex[:6]
    cluster.core.create_namespace({"metadata": {"name": allowed, "labels": {"team": "red"}}})
    cluster.core.create_namespace({"metadata": {"name": other, "labels": {"team": "blue"}}})
    cluster.create_vnet(n, subnet(), namespaceSelector={"matchLabels": {"team": "red"}})
    cluster.wait_ready(n)
    try:
        cluster.create_pod(allowed, "in", [{"name": n, "interface": "net0"}])
        cluster.create_pod(other, "out", [{"name": n, "interface": "net0"}])
        assert cluster.iface_list(allowed, "in")[0]["name"] == n
        err = cluster.pod_error(other, "out")
        assert err == (f"network {n} does not admit pods from namespace {other} "
                       "(its namespaceSelector requires: team in (red))")
        assert not any(p.startswith(f"{other}_") for p in cluster.nb_pod_ports())
        check_invariant(cluster, [n])
    finally:
        cluster.delete_pod(allowed, "in", wait=False)
        cluster.delete_pod(other, "out", wait=False)
        cluster.delete_vnet(n)
