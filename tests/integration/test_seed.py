"""The seed's scenario on the real stack, checked in the NB rows, the pod annotation and the CR status."""
from __future__ import annotations

from ovnvnet.model import names
from tests.integration.kit import Cluster, check_invariant, wait_until


def test_seed_scenario_and_cleanup(cluster: Cluster, ns: str) -> None:
    # the seed's exact networks; other tests use fresh subnets, so these never overlap
    cluster.create_vnet("ovn-ls-25", "172.16.25.0/24")
    cluster.create_vnet("ovn-ls-26", "172.16.26.0/24", excludeIPs=["172.16.26.200..172.16.26.254"], mtu=1400)
    try:
        cluster.wait_ready("ovn-ls-25")
        cluster.wait_ready("ovn-ls-26")
        # OVN: switch named as the network, owned; router port with the gateway
        switches = cluster.nb_switches()
        assert switches["ovn-ls-25"]["external_ids"][names.OWNER_KEY] == "ovnvnet"
        assert switches["ovn-ls-26"]["other_config"].get("mtu") == "1400"
        lrps = {r["name"]: r for r in cluster.nb_rows("Logical_Router_Port")}
        assert lrps["rtr-ovn-ls-25"]["networks"] == ["172.16.25.1/24"]
        assert lrps["rtr-ovn-ls-25"]["mac"] == "0a:58:ac:10:19:01"
        router_sp = {r["name"]: r for r in cluster.nb_rows("Logical_Switch_Port")}["rtr-ovn-ls-25-ls"]
        assert router_sp["type"] == "router" and router_sp["options"] == {"router-port": "rtr-ovn-ls-25"}
        routers = {r["name"]: r for r in cluster.nb_rows("Logical_Router")}
        assert "ovnvnet-router" in routers

        cluster.create_pod(ns, "pod-ovn", [
            {"name": "ovn-ls-25", "interface": "net0"},
            {"name": "ovn-ls-26", "interface": "net1", "ip_address": "172.16.26.3", "mac_address": "0a:00:00:00:00:15"},
        ])
        ifaces = cluster.iface_list(ns, "pod-ovn")
        assert [i["interface"] for i in ifaces] == ["net0", "net1"]
        net0, net1 = ifaces
        assert net0["name"] == "ovn-ls-25" and net0["ip_address"] == "172.16.25.2"   # first free after the gateway
        assert net0["mac_address"] == "0a:58:ac:10:19:02"                           # 0a:58 + IPv4 bytes
        assert net0["gateway_ip"] == "172.16.25.1" and net0["prefix_length"] == 24
        assert net0["defaultGateway"] is False
        assert net1 == {**net1, "name": "ovn-ls-26", "ip_address": "172.16.26.3", "mac_address": "0a:00:00:00:00:15",
                        "gateway_ip": "172.16.26.1", "mtu": 1400}

        pod = cluster.pod(ns, "pod-ovn")
        ports = cluster.nb_pod_ports()
        p0 = ports[f"{ns}_pod-ovn_net0"]
        assert p0["addresses"] == ["0a:58:ac:10:19:02 172.16.25.2"]
        assert p0["port_security"] == ["0a:58:ac:10:19:02 172.16.25.2"]
        p1 = ports[f"{ns}_pod-ovn_net1"]
        ids = p1["external_ids"]
        assert ids[names.POD_UID_KEY] == pod.metadata.uid and ids[names.INTERFACE_KEY] == "net1"
        assert ids[names.NETWORK_KEY] == "ovn-ls-26" and ids[names.POD_NAMESPACE_KEY] == ns

        allocs = wait_until(lambda: cluster.allocations("ovn-ls-26"), what="allocation record")
        blocks = cluster.ipblocks("ovn-ls-26")
        assert [b["metadata"]["name"] for b in blocks] == ["ovn-ls-26.172.16.26.0"]
        assert blocks[0]["spec"] == {"network": "ovn-ls-26", "cidr": "172.16.26.0/24"}
        assert blocks[0]["metadata"]["ownerReferences"][0]["kind"] == "VirtualNetwork"
        st = wait_until(lambda: (s := cluster.vnet("ovn-ls-26")["status"]).get("usedIPs") == 1 and s,
                        what="status counters")
        assert allocs == {"172.16.26.3": {"pod": f"{ns}/pod-ovn", "podUID": pod.metadata.uid,
                                                     "interface": "net1", "mac": "0a:00:00:00:00:15"}}
        assert st["usedIPs"] == 1
        # 254 hosts - gateway - 55 excluded - 1 used
        assert st["availableIPs"] == 254 - 1 - 55 - 1
        check_invariant(cluster, ["ovn-ls-25", "ovn-ls-26"])

        # deleting the pod removes everything
        cluster.delete_pod(ns, "pod-ovn")
        wait_until(lambda: not any(p.startswith(f"{ns}_pod-ovn") for p in cluster.nb_pod_ports()),
                   what="ports removed")
        wait_until(lambda: not cluster.allocations("ovn-ls-26")
                   and cluster.vnet("ovn-ls-25")["status"].get("usedIPs") == 0, what="status emptied")
        check_invariant(cluster, ["ovn-ls-25", "ovn-ls-26"])
    finally:
        cluster.delete_pod(ns, "pod-ovn")
        cluster.delete_vnet("ovn-ls-25")
        cluster.delete_vnet("ovn-ls-26")
        wait_until(lambda: not cluster.vnet_exists("ovn-ls-25") and not cluster.vnet_exists("ovn-ls-26"),
                   what="networks deleted")
    switches = cluster.nb_switches()
    assert "ovn-ls-25" not in switches and "ovn-ls-26" not in switches
    assert "rtr-ovn-ls-25" not in {r["name"] for r in cluster.nb_rows("Logical_Router_Port")}


def test_fifty_pods_at_once_get_distinct_addresses(cluster: Cluster, ns: str, subnet, net_name) -> None:
    a, b = net_name("a"), net_name("b")
    cluster.create_vnet(a, subnet())
    cluster.create_vnet(b, subnet())
    cluster.wait_ready(a)
    cluster.wait_ready(b)
    for i in range(50):
        cluster.create_pod(ns, f"p{i}", [{"name": a, "interface": "net0"}, {"name": b, "interface": "net1"}])
    lists = [cluster.iface_list(ns, f"p{i}", timeout=60) for i in range(50)]
    ips_a = [iface_list[0]["ip_address"] for iface_list in lists]
    ips_b = [iface_list[1]["ip_address"] for iface_list in lists]
    macs = [iface_list[0]["mac_address"] for iface_list in lists]
    assert len(set(ips_a)) == 50 and len(set(ips_b)) == 50 and len(set(macs)) == 50
    wait_until(lambda: cluster.vnet(a)["status"].get("usedIPs") == 50, what="usedIPs 50")
    check_invariant(cluster, [a, b])
    for i in range(50):
        cluster.delete_pod(ns, f"p{i}", wait=False)
    wait_until(lambda: cluster.vnet(a)["status"].get("usedIPs") == 0
               and cluster.vnet(b)["status"].get("usedIPs") == 0, timeout=60, what="all released")
    check_invariant(cluster, [a, b])
