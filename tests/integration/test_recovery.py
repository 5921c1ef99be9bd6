"""Exact recovery: a killed operator, a wiped NB, pods deleted while the operator was down."""
from __future__ import annotations

import json
import signal
import time

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


def _log_from(stack, offset: int) -> str:
    return (stack.logs / "operator.log").read_bytes()[offset:].decode(errors="replace")


def _log_size(stack) -> int:
    path = stack.logs / "operator.log"
    return path.stat().st_size if path.exists() else 0


def test_copied_result_never_takes_the_address_at_restart(cluster: Cluster, ns: str, subnet, net_name) -> None:
    """Issue 9 point 2: a pod carrying a copy of another pod's ovnIfaceList, created while the
    operator is down and sorting before it, does not win the address at the restart (or at the
    next one, as after a leader change): the records decide; the victim keeps address and NB port,
    the copy gets ovnNetworkError and no port."""
    import uuid
    n = net_name("trust")
    cluster.create_vnet(n, subnet())
    cluster.wait_ready(n)
    request = [{"name": n, "interface": "net0"}]
    cluster.create_pod(ns, "victim", request)
    victim = cluster.iface_list(ns, "victim")
    victim_raw = cluster.annotations(ns, "victim")["ovnIfaceList"]
    victim_port = f"{ns}_victim_net0"
    address = f"{victim[0]['mac_address']} {victim[0]['ip_address']}"
    assert cluster.nb_pod_ports()[victim_port]["addresses"] == [address]
    alpha = "a-" + uuid.uuid4().hex[:8]      # sorts before the victim's namespace
    cluster.ensure_namespace(alpha)
    stack = cluster.stack
    try:
        stack.stop_operator(signal.SIGKILL)
        cluster.create_pod(alpha, "evil", request, extra_annotations={"ovnIfaceList": victim_raw})
        for round_ in ("restart", "second restart (as a leader change)"):
            offset = _log_size(stack)
            stack.start_operator(OPERATOR_ENV)
            wait_until(lambda offset=offset: f"pod {alpha}/evil refused: ovnIfaceList claims"
                       in _log_from(stack, offset),
                       timeout=30, what="the rebuild refuses the copy")
            err = cluster.pod_error(alpha, "evil", timeout=30)
            assert f"which the operator's records give to pod {ns}/victim" in err, (round_, err)
            assert victim[0]["ip_address"] in err
            time.sleep(3)   # several sweeps and NB repairs (1 s interval) have run
            assert cluster.annotations(ns, "victim")["ovnIfaceList"] == victim_raw, round_
            assert "ovnNetworkError" not in cluster.annotations(ns, "victim"), round_
            ports = cluster.nb_pod_ports()
            assert ports[victim_port]["addresses"] == [address], round_
            assert ports[victim_port]["external_ids"]["ovnvnet.io/pod-uid"] == cluster.pod(ns, "victim").metadata.uid
            assert not [p for p in ports if p.startswith(f"{alpha}_")], (round_, "the copy got a port")
            held = cluster.allocations(n)[victim[0]["ip_address"]]
            assert held["pod"] == f"{ns}/victim", round_
            assert any("ResultNotOwned" == e.reason for e in cluster.events(alpha, "evil")), round_
            if round_ == "restart":
                stack.stop_operator(signal.SIGKILL)
        # the victim still works: a new pod never gets its address, and the copy's deletion frees nothing
        cluster.delete_pod(alpha, "evil")
        cluster.create_pod(ns, "after", request)
        assert cluster.iface_list(ns, "after")[0]["ip_address"] != victim[0]["ip_address"]
        time.sleep(2)
        assert cluster.nb_pod_ports()[victim_port]["addresses"] == [address]
        check_invariant(cluster, [n])
    finally:
        stack.start_operator(OPERATOR_ENV)
        cluster.delete_pod(alpha, "evil", wait=False)
        for p in ("victim", "after"):
            cluster.delete_pod(ns, p, wait=False)
        wait_until(lambda: cluster.vnet(n)["status"]["usedIPs"] == 0, timeout=30, what="released")
        cluster.delete_vnet(n)


def test_repair_log_mode_changes_nothing_and_logs_each_row(cluster: Cluster, ns: str, subnet, net_name) -> None:
    """OVNVNET_REPAIR=log: drift is logged one line per row and left as is; repair mode fixes it."""
    n = net_name("logmode")
    cluster.create_vnet(n, subnet())
    cluster.wait_ready(n)
    cluster.create_pod(ns, "lm0", [{"name": n, "interface": "net0"}])
    cluster.iface_list(ns, "lm0")
    stack = cluster.stack
    wanted = f"{ns}_lm0_net0"
    try:
        stack.stop_operator()
        offset = _log_size(stack)
        stack.start_operator({**OPERATOR_ENV, "OVNVNET_REPAIR": "log"})
        stack.nbctl("lsp-del", wanted)
        stack.nbctl("lsp-add", n, "stale-lm", "--", "set", "Logical_Switch_Port", "stale-lm",
                    "external_ids:ovnvnet.io/owner=ovnvnet")
        before = cluster.nb_rows("Logical_Switch_Port")
        wait_until(lambda: f"port {wanted} found in the records but not in NB" in _log_from(stack, offset)
                   and "port stale-lm found in NB but not in the records" in _log_from(stack, offset),
                   timeout=20, what="one log line per drifted row")
        time.sleep(2.5)   # more sweeps
        assert sorted(r["_uuid"] for r in cluster.nb_rows("Logical_Switch_Port")) == sorted(r["_uuid"] for r in before)
        ports = cluster.nb_pod_ports()
        assert wanted not in ports and "stale-lm" in ports
        text = _log_from(stack, offset)
        assert "NB drift repaired" not in text
        assert all("OVNVNET_REPAIR=log: left as is" in line for line in text.splitlines() if "NB drift:" in line)
        # back to the default (repair): the same drift is repaired
        stack.stop_operator()
        stack.start_operator(OPERATOR_ENV)
        wait_until(lambda: wanted in cluster.nb_pod_ports() and "stale-lm" not in cluster.nb_pod_ports(),
                   timeout=20, what="drift repaired")
        check_invariant(cluster, [n])
    finally:
        stack.stop_operator()
        stack.start_operator(OPERATOR_ENV)
        cluster.delete_pod(ns, "lm0")
        cluster.delete_vnet(n)


def test_deleted_networks_stay_deleted_while_sweeps_run(cluster: Cluster, subnet, net_name) -> None:
    """A network deleted while a sweep is between its NB read and its repair must not be
    re-created by that repair (CI once saw a deleted network's switch come back: the sweep had
    planned from a snapshot taken before the deletion). Sweeps run every second here; eight
    networks are deleted at once, three times over, and none may reappear in the NB."""
    for rnd in range(3):
        nets = [net_name(f"gone{rnd}x{k}") for k in range(8)]
        for n in nets:
            cluster.create_vnet(n, subnet())
        for n in nets:
            cluster.wait_ready(n)
        for n in nets:
            cluster.delete_vnet(n)
        wait_until(lambda nets=nets: not any(cluster.vnet_exists(n) for n in nets), 60, 0.2, what="networks deleted")
        end = time.monotonic() + 3.0   # three sweeps after the last object is gone
        while time.monotonic() < end:
            back = set(nets) & set(cluster.nb_switches())
            assert not back, f"deleted networks came back in the NB: {sorted(back)}"
            time.sleep(0.2)
