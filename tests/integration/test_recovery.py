"""Exact recovery: a killed operator, a wiped NB, pods deleted while the operator was down."""
from __future__ import annotations

import json
import signal

from tests.integration.conftest import OPERATOR_ENV
from tests.integration.kit import Cluster, check_invariant, wait_until


def _addresses(cluster: Cluster, ns: str, pods: list[str]) -> dict[str, list[tuple[str, str]]]:
    return {p: [(i["ip_address"], i["mac_address"]) for i in cluster.iface_list(ns, p, timeout=60)] for p in pods}


def _nb_snapshot(cluster: Cluster, ns: str, net: str) -> dict:
    """What the NB holds for the namespace's pods and the network: port -> (addresses, port
    security, switch), the network's switch and router port (state a wipe really removes)."""
    lsps = {r["_uuid"]: r["name"] for r in cluster.nb_rows("Logical_Switch_Port")}
    holder = {lsps[u]: sw["name"] for sw in cluster.nb_rows("Logical_Switch") for u in sw["ports"] if u in lsps}
    ports = {name: (tuple(r["addresses"]), tuple(r["port_security"]), holder.get(name))
             for name, r in cluster.nb_pod_ports().items() if name.startswith(f"{ns}_")}
    lrp = {r["name"]: (tuple(r["networks"]), r["mac"]) for r in cluster.nb_rows("Logical_Router_Port")}
    return {"ports": ports, "switch": net in cluster.nb_switches(), "router port": lrp.get(f"rtr-{net}")}


def test_operator_killed_mid_burst_keeps_every_address(cluster: Cluster, ns: str, subnet, net_name) -> None:
    a, b = net_name("ra"), net_name("rb")
    cluster.create_vnet(a, subnet())
    cluster.create_vnet(b, subnet())
    cluster.wait_ready(a)
    cluster.wait_ready(b)
    stack = cluster.stack
    pods = [f"k{i}" for i in range(40)]
    for i, p in enumerate(pods):
        cluster.create_pod(ns, p, [{"name": a, "interface": "net0"}, {"name": b, "interface": "net1"}])
        if i == 15:   # mid-burst, once some are attached: some attached, some half-done, some not seen
            wait_until(lambda: any("ovnIfaceList" in cluster.annotations(ns, q) for q in pods[:8]),
                       what="a first pod attached")
            stack.stop_operator(signal.SIGKILL)
    attached_before = {p: raw for p in pods if (raw := cluster.annotations(ns, p).get("ovnIfaceList"))}
    assert 1 <= len(attached_before) <= 16, f"{len(attached_before)} pods attached before the kill"
    stack.start_operator(OPERATOR_ENV)
    after = _addresses(cluster, ns, pods)
    # a pod annotated before the kill keeps exactly its addresses
    for p, raw in attached_before.items():
        assert [(i["ip_address"], i["mac_address"]) for i in json.loads(raw)] == after[p], p
    check_invariant(cluster, [a, b])

    # a second kill with everything attached: a restart changes nothing
    stack.stop_operator(signal.SIGKILL)
    stack.start_operator(OPERATOR_ENV)
    cluster.create_pod(ns, "after-restart", [{"name": a, "interface": "net0"}])
    new_ip = cluster.iface_list(ns, "after-restart")[0]["ip_address"]
    assert new_ip not in {ip for v in after.values() for ip, _ in v}
    assert _addresses(cluster, ns, pods) == after
    check_invariant(cluster, [a, b])
    for p in pods + ["after-restart"]:
        cluster.delete_pod(ns, p, wait=False)
    wait_until(lambda: cluster.vnet(a)["status"]["usedIPs"] == 0 and cluster.vnet(b)["status"]["usedIPs"] == 0,
               timeout=60, what="all released")
    cluster.delete_vnet(a)
    cluster.delete_vnet(b)


def test_pods_deleted_while_operator_down_are_released(cluster: Cluster, ns: str, subnet, net_name) -> None:
    n = net_name("down")
    cluster.create_vnet(n, subnet())
    cluster.wait_ready(n)
    for i in range(3):
        cluster.create_pod(ns, f"d{i}", [{"name": n, "interface": "net0"}])
    held = [cluster.iface_list(ns, f"d{i}")[0]["ip_address"] for i in range(3)]
    cluster.stack.stop_operator(signal.SIGKILL)
    cluster.delete_pod(ns, "d0")
    cluster.delete_pod(ns, "d1")
    cluster.stack.start_operator(OPERATOR_ENV)
    wait_until(lambda: set(cluster.allocations(n)) == {held[2]}, timeout=30,
               what="orphans swept from status")
    wait_until(lambda: {p for p in cluster.nb_pod_ports() if p.startswith(f"{ns}_")} == {f"{ns}_d2_net0"},
               timeout=30, what="orphan ports swept")
    check_invariant(cluster, [n])
    cluster.delete_pod(ns, "d2")
    cluster.delete_vnet(n)


def test_nb_drift_and_wipe_are_repaired_with_the_same_addresses(cluster: Cluster, ns: str, subnet, net_name) -> None:
    n = net_name("wipe")
    cluster.create_vnet(n, subnet())
    cluster.wait_ready(n)
    for i in range(5):
        cluster.create_pod(ns, f"w{i}", [{"name": n, "interface": "net0"}])
    before = {f"w{i}": cluster.iface_list(ns, f"w{i}") for i in range(5)}
    check_invariant(cluster, [n])
    nb_before = _nb_snapshot(cluster, ns, n)
    assert len(nb_before["ports"]) == 5 and nb_before["switch"] and nb_before["router port"], nb_before

    # drift: someone deletes a port and adds a stale owned one
    cluster.stack.nbctl("lsp-del", f"{ns}_w1_net0")
    cluster.stack.nbctl("lsp-add", n, "stale-port", "--", "set", "Logical_Switch_Port", "stale-port",
                        "external_ids:ovnvnet.io/owner=ovnvnet")
    wait_until(lambda: f"{ns}_w1_net0" in cluster.nb_pod_ports() and "stale-port" not in cluster.nb_pod_ports(),
               timeout=20, what="drift repaired")

    # the NB restarted empty: every switch, router port and pod port comes back, same addresses
    stack = cluster.stack
    stack.kill("ovsdb-nb", signal.SIGKILL)
    stack.start_ovsdb("nb", "/usr/share/ovn/ovn-nb.ovsschema", stack._port("nb"), wipe=True)
    assert _nb_snapshot(cluster, ns, n) == {"ports": {}, "switch": False, "router port": None}, "not wiped"
    wait_until(lambda: n in cluster.nb_switches() and len([p for p in cluster.nb_pod_ports()
                                                           if p.startswith(f"{ns}_")]) == 5,
               timeout=40, what="NB rebuilt after wipe")
    wait_until(lambda: f"rtr-{n}" in {r["name"] for r in cluster.nb_rows("Logical_Router_Port")}, what="router port")
    # what the wipe removed is back as it was (the annotations it never touched must be unchanged too)
    assert _nb_snapshot(cluster, ns, n) == nb_before
    assert {f"w{i}": cluster.iface_list(ns, f"w{i}") for i in range(5)} == before
    check_invariant(cluster, [n])
    for i in range(5):
        cluster.delete_pod(ns, f"w{i}", wait=False)
    wait_until(lambda: cluster.vnet(n)["status"]["usedIPs"] == 0, timeout=30, what="released")
    cluster.delete_vnet(n)


def test_restart_with_nb_wiped_while_down(cluster: Cluster, ns: str, subnet, net_name) -> None:
    """Operator down and NB wiped: the records in the API alone rebuild everything."""
    n = net_name("cold")
    cluster.create_vnet(n, subnet())
    cluster.wait_ready(n)
    cluster.create_pod(ns, "cold0", [{"name": n, "interface": "net0"}])
    before = cluster.iface_list(ns, "cold0")
    nb_before = _nb_snapshot(cluster, ns, n)
    stack = cluster.stack
    stack.stop_operator(signal.SIGKILL)
    stack.kill("ovsdb-nb", signal.SIGKILL)
    stack.start_ovsdb("nb", "/usr/share/ovn/ovn-nb.ovsschema", stack._port("nb"), wipe=True)
    assert _nb_snapshot(cluster, ns, n) == {"ports": {}, "switch": False, "router port": None}, "not wiped"
    stack.start_operator(OPERATOR_ENV)
    wait_until(lambda: f"{ns}_cold0_net0" in cluster.nb_pod_ports(), timeout=30, what="port restored")
    wait_until(lambda: _nb_snapshot(cluster, ns, n) == nb_before, what="NB rebuilt as it was")
    port = cluster.nb_pod_ports()[f"{ns}_cold0_net0"]
    assert port["addresses"] == [f"{before[0]['mac_address']} {before[0]['ip_address']}"]
    check_invariant(cluster, [n])
    cluster.delete_pod(ns, "cold0")
    cluster.delete_vnet(n)
