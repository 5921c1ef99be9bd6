"""Backward compatibility (seed): a pod without `ovnNetwork` gets one interface on the operator's
default network, honouring a static address from the legacy `ovn` annotation, answered in `ovn`."""
from __future__ import annotations

import json
import signal

from tests.integration.conftest import OPERATOR_ENV
from tests.integration.kit import Cluster, wait_until


def _legacy_pod(cluster: Cluster, ns: str, name: str, ovn: dict | None = None, host_network: bool = False):
    body = {"metadata": {"name": name, "annotations": {"ovn": json.dumps(ovn)} if ovn else {}},
            "spec": {"nodeName": "node-1", "hostNetwork": host_network,
                     "containers": [{"name": "c", "image": "busybox"}]}}
    return cluster.core.create_namespaced_pod(ns, body)


def _result(cluster: Cluster, ns: str, name: str) -> dict:
    raw = wait_until(lambda: (a := cluster.annotations(ns, name).get("ovn")) and "gateway_ip" in a and a,
                     what=f"ovn result on {ns}/{name}")
    return json.loads(raw)


def test_legacy_single_interface_on_the_default_network(cluster: Cluster, ns: str, subnet, net_name) -> None:
    default = net_name("default")
    sn = subnet()
    prefix = sn.rsplit(".", 1)[0]
    cluster.create_vnet(default, sn)
    cluster.wait_ready(default)
    stack = cluster.stack
    stack.stop_operator()
    stack.start_operator({**OPERATOR_ENV, "OVNVNET_DEFAULT_NETWORK": default})
    try:
        _legacy_pod(cluster, ns, "plain")
        _legacy_pod(cluster, ns, "static", {"ip_address": f"{prefix}.9", "mac_address": "0a:00:00:00:01:09"})
        _legacy_pod(cluster, ns, "bad", {"ip_address": "10.1.2.300"})
        _legacy_pod(cluster, ns, "host", host_network=True)
        plain = _result(cluster, ns, "plain")
        assert plain["name"] == default and plain["gateway_ip"] == f"{prefix}.1"
        assert plain["ip_address"].endswith("/24") and plain["port"] == f"{ns}_plain"
        static = _result(cluster, ns, "static")
        assert static["ip_address"] == f"{prefix}.9/24" and static["mac_address"] == "0a:00:00:00:01:09"
        assert cluster.pod_error(ns, "bad") == 'ip_address "10.1.2.300" is not a valid IPv4 address'
        ports = cluster.nb_pod_ports()
        assert ports[f"{ns}_plain"]["addresses"] == [f"{plain['mac_address']} {plain['ip_address'].split('/')[0]}"]
        assert f"{ns}_static" in ports and not any(p.startswith(f"{ns}_host") for p in ports)
        assert "ovn" not in cluster.annotations(ns, "host")
        allocs = wait_until(lambda: len(a := cluster.allocations(default)) == 2 and a,
                            what="two legacy allocations in status")
        assert allocs[f"{prefix}.9"]["pod"] == f"{ns}/static"

        # a restart keeps the legacy addresses (rebuilt from the `ovn` results)
        stack.stop_operator(signal.SIGKILL)
        stack.start_operator({**OPERATOR_ENV, "OVNVNET_DEFAULT_NETWORK": default})
        _legacy_pod(cluster, ns, "later")
        later = _result(cluster, ns, "later")
        assert later["ip_address"] not in (plain["ip_address"], static["ip_address"])
        assert _result(cluster, ns, "plain") == plain
        cluster.delete_pod(ns, "static")
        wait_until(lambda: f"{ns}_static" not in cluster.nb_pod_ports(), what="legacy port released")
        wait_until(lambda: f"{prefix}.9" not in (cluster.allocations(default)),
                   what="legacy allocation released")
    finally:
        for p in ("plain", "static", "bad", "host", "later"):
            cluster.delete_pod(ns, p, wait=False)
        wait_until(lambda: not (cluster.allocations(default)), timeout=30,
                   what="all legacy pods released")
        stack.stop_operator()
        stack.start_operator(OPERATOR_ENV)
        cluster.delete_vnet(default)
