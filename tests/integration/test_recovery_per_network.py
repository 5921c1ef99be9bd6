"""The restart serves a pod as soon as the networks it names are rebuilt (issue 17).

At start the records (IPBlocks, NB ports) of every network are reserved first; the pods' sealed
results are then checked network by network (reconcile/recovery.py, `finish_rebuild`). A pod on a
network already rebuilt is attached while another network's pass is still in progress; a pod on
that other network waits for it, and then never gets an address that only a pod's result recorded
(its NB port and IPBlock entry lost while the operator was down). The pass is held open with the
test hook OVNVNET_TEST_REBUILD_PAUSE (network=path: the pass waits until the file exists)."""
from __future__ import annotations

import signal
import time

from tests.integration.conftest import OPERATOR_ENV
from tests.integration.kit import Cluster, check_invariant, wait_until


def _log_from(stack, offset: int) -> str:
    return (stack.logs / "operator.log").read_bytes()[offset:].decode(errors="replace")


def _log_size(stack) -> int:
    path = stack.logs / "operator.log"
    return path.stat().st_size if path.exists() else 0


def _forget_record(cluster: Cluster, ns: str, pod: str, network: str, ip: str) -> None:
    """Remove the pod's NB port and its IPBlock entry: only its sealed result records `ip` now."""
    cluster.stack.nbctl("lsp-del", f"{ns}_{pod}_net0")
    for block in cluster.ipblocks(network):
        if ip in (block.get("allocations") or {}):
            cluster.custom.patch_cluster_custom_object(
                "ovnvnet.io", "v1", "ipblocks", block["metadata"]["name"], {"allocations": {ip: None}})
    assert ip not in cluster.allocations(network), "IPBlock entry not removed"
    assert f"{ns}_{pod}_net0" not in cluster.nb_pod_ports(), "NB port not removed"


def test_pod_served_while_another_network_is_rebuilt(cluster: Cluster, ns: str, subnet, net_name, tmp_path) -> None:
    a, b = net_name("pa"), net_name("pb")   # a sorts before b: a's pass runs first
    for n in (a, b):
        cluster.create_vnet(n, subnet())
    for n in (a, b):
        cluster.wait_ready(n)
    cluster.create_pod(ns, "a0", [{"name": a, "interface": "net0"}])
    cluster.create_pod(ns, "b0", [{"name": b, "interface": "net0"}])
    a0 = cluster.iface_list(ns, "a0")[0]
    b0 = cluster.iface_list(ns, "b0")[0]
    wait_until(lambda: b0["ip_address"] in cluster.allocations(b), what="b0 recorded in its IPBlock")

    stack = cluster.stack
    stack.stop_operator(signal.SIGKILL)
    _forget_record(cluster, ns, "b0", b, b0["ip_address"])
    gate = tmp_path / "rebuild-b"
    offset = _log_size(stack)
    stack.start_operator({**OPERATOR_ENV, "OVNVNET_TEST_REBUILD_PAUSE": f"{b}={gate}"}, wait=False)
    try:
        wait_until(lambda: f"network {b}'s pass waits" in _log_from(stack, offset), timeout=60,
                   what=f"the rebuild paused before network {b}")
        # b's pass is in progress: a pod on b waits, even one asking for b0's address
        cluster.create_pod(ns, "b-new", [{"name": b, "interface": "net0"}])
        cluster.create_pod(ns, "b-steal", [{"name": b, "interface": "net0", "ip_address": b0["ip_address"]}])
        cluster.create_pod(ns, "a-new", [{"name": a, "interface": "net0"}])
        a_new = cluster.iface_list(ns, "a-new", timeout=30)[0]   # a is rebuilt: served now
        assert a_new["ip_address"] != a0["ip_address"]
        time.sleep(1)   # b-new and b-steal were created before a-new was served: still nothing
        for pod in ("b-new", "b-steal"):
            ann = cluster.annotations(ns, pod)
            assert "ovnIfaceList" not in ann and "ovnNetworkError" not in ann, f"{pod} served before {b} was rebuilt"
        assert "rebuild finished" not in _log_from(stack, offset)

        gate.touch()   # b's pass goes on: b0's result is restored before anything is allocated on b
        b_new = cluster.iface_list(ns, "b-new", timeout=30)[0]
        assert b_new["ip_address"] != b0["ip_address"]
        error = cluster.pod_error(ns, "b-steal", timeout=30)
        assert b0["ip_address"] in error and f"{ns}/b0" in error, error
        assert cluster.iface_list(ns, "b0")[0] == b0
        wait_until(lambda: f"{ns}_b0_net0" in cluster.nb_pod_ports(), timeout=30, what="b0's NB port re-created")
        wait_until(lambda: b0["ip_address"] in cluster.allocations(b), timeout=30, what="b0's IPBlock entry re-written")
        check_invariant(cluster, [a, b])
    finally:
        gate.touch()
        stack.stop_operator()
        stack.start_operator(OPERATOR_ENV)
    for pod in ("a0", "b0", "a-new", "b-new", "b-steal"):
        cluster.delete_pod(ns, pod, wait=False)
    wait_until(lambda: cluster.vnet(a)["status"]["usedIPs"] == 0 and cluster.vnet(b)["status"]["usedIPs"] == 0,
               timeout=60, what="all released")
    cluster.delete_vnet(a)
    cluster.delete_vnet(b)
