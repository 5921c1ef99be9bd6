"""IPv6 and dual-stack on the node side (issue 13), on a real OVN data plane.

Topology (its own router, beside test_dataplane_cni's): dual-stack logical switches ds-a
(172.16.35.0/24 + fd00:35::/64) and ds-b (172.16.36.0/24 + fd00:36::/64) and the IPv6-only
switch v6-c (fd00:37::/64), each with a router port holding its gateway of every family. The
results are written with the contract's own encoder (``encode_iface_list``, with every address
in ``ip_addresses``/``gateway_ips``) and sealed as the operator does; the logical switch ports
carry both families in ``addresses`` and ``port_security`` as the operator writes them.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from ovnvnet.cni.netlink import host_veth_name
from ovnvnet.model.annotation import (
    IfaceAddress,
    InterfaceResult,
    encode_iface_list,
    encode_legacy_result,
)
from ovnvnet.model.names import LEGACY_INTERFACE, port_name
from ovnvnet.model.network import Route

from .conftest import Netns, run_shim, sealed
from .test_dataplane_cni import NS, Pod, create_lsps, new_pod

pytestmark = pytest.mark.timeout(300)

ROUTER = "ds-router"
SWITCHES: dict[str, dict[str, str]] = {
    "ds-a": {"v4": "172.16.35", "v6": "fd00:35::"},
    "ds-b": {"v4": "172.16.36", "v6": "fd00:36::"},
    "v6-c": {"v6": "fd00:37::"},
}


def mac_for(network: str, host: int) -> str:
    """As the operator derives it: from the IPv4 address, else the IPv6 address's low 4 bytes."""
    net = SWITCHES[network]
    if "v4" in net:
        a, b, c = (int(x) for x in net["v4"].split("."))
        return f"0a:58:{a:02x}:{b:02x}:{c:02x}:{host:02x}"
    return f"0a:58:00:00:00:{host:02x}"


def v6(network: str, host: int) -> str:
    return f"{SWITCHES[network]['v6']}{host:x}"


def v4(network: str, host: int) -> str:
    return f"{SWITCHES[network]['v4']}.{host}"


def result(interface: str, network: str, host: int, *, default: bool = False,
           mtu: int | None = None, routes: tuple[Route, ...] = ()) -> InterfaceResult:
    net = SWITCHES[network]
    addrs = []
    if "v4" in net:
        addrs.append(IfaceAddress(v4(network, host), 24, v4(network, 1)))
    addrs.append(IfaceAddress(v6(network, host), 64, v6(network, 1)))
    return InterfaceResult(
        interface=interface, network=network, ip=addrs[0].ip, prefix_length=addrs[0].prefix_length,
        mac=mac_for(network, host), gateway=addrs[0].gateway, default_gateway=default, mtu=mtu,
        routes=routes, addresses=tuple(addrs),
    )


def entry(*args, **kw) -> dict:
    """The ``ovnIfaceList`` entry the operator writes for :func:`result`."""
    return json.loads(encode_iface_list([result(*args, **kw)]))[0]


@pytest.fixture(scope="module")
def ds_topology(central):
    central.nbctl("lr-add", ROUTER)
    for net, fam in SWITCHES.items():
        networks = [f"{fam['v4']}.1/24"] if "v4" in fam else []
        networks.append(f"{fam['v6']}1/64")
        central.nbctl("ls-add", net)
        central.nbctl("lrp-add", ROUTER, f"rtr-{net}", mac_for(net, 1), *networks)
        central.nbctl("lsp-add", net, f"rtr-{net}-ls", "--", "lsp-set-type", f"rtr-{net}-ls",
                      "router", "--", "lsp-set-addresses", f"rtr-{net}-ls", "router",
                      "--", "lsp-set-options", f"rtr-{net}-ls", f"router-port=rtr-{net}")
    return central


@pytest.fixture(scope="module")
def pods(ds_topology, agent, binaries, module_netns):
    """Two dual-stack pods on both dual-stack switches; single-homed pods with the default
    routes on ds-a, ds-b and the IPv6-only v6-c (reaching each other through the router)."""
    made = {
        "one": new_pod(ds_topology, agent, module_netns, "ds-one",
                       [entry("net0", "ds-a", 2), entry("net1", "ds-b", 2)]),
        "two": new_pod(ds_topology, agent, module_netns, "ds-two",
                       [entry("net0", "ds-a", 3), entry("net1", "ds-b", 3)]),
        "a": new_pod(ds_topology, agent, module_netns, "ds-a-only",
                     [entry("eth1", "ds-a", 10, default=True)]),
        "b": new_pod(ds_topology, agent, module_netns, "ds-b-only",
                     [entry("eth1", "ds-b", 10, default=True, mtu=1400)]),
        "c": new_pod(ds_topology, agent, module_netns, "v6-c-only",
                     [entry("eth1", "v6-c", 10, default=True)]),
    }
    results = {}
    for key, pod in made.items():
        r = pod.cni(binaries, agent, "ADD")
        assert r.code == 0, (key, r.out, r.err)
        results[key] = r.json
    yield {**made, "results": results}
    for pod in made.values():
        pod.cni(binaries, agent, "DEL")


def addr_info(netns: Netns, dev: str) -> dict:
    return json.loads(netns.run("ip", "-j", "addr", "show", dev, check=True).stdout)[0]


def global_v6(netns: Netns, dev: str) -> list[dict]:
    return [a for a in addr_info(netns, dev)["addr_info"]
            if a["family"] == "inet6" and a["scope"] == "global"]


def ping6(netns: Netns, dst: str, *extra: str, count: int = 2) -> bool:
    return netns.ping(dst, "-6", *extra, count=count)


def test_result_lists_both_families(pods):
    res = pods["results"]["one"]
    assert res["ips"] == [
        {"address": "172.16.35.2/24", "gateway": "172.16.35.1", "interface": 1},
        {"address": "fd00:35::2/64", "gateway": "fd00:35::1", "interface": 1},
        {"address": "172.16.36.2/24", "gateway": "172.16.36.1", "interface": 3},
        {"address": "fd00:36::2/64", "gateway": "fd00:36::1", "interface": 3},
    ]
    assert res["routes"] == []
    assert pods["results"]["a"]["routes"] == [
        {"dst": "0.0.0.0/0", "gw": "172.16.35.1"}, {"dst": "::/0", "gw": "fd00:35::1"}]
    c = pods["results"]["c"]
    assert c["ips"] == [{"address": "fd00:37::a/64", "gateway": "fd00:37::1", "interface": 1}]
    assert c["interfaces"][1]["mac"] == "0a:58:00:00:00:0a"
    assert c["routes"] == [{"dst": "::/0", "gw": "fd00:37::1"}]


def test_result_versions_before_1_0_name_the_family(ds_topology, agent, binaries, make_netns):
    pod = new_pod(ds_topology, agent, make_netns, "ds-v04", [entry("net0", "ds-a", 20)])
    conf = {"cniVersion": "0.4.0", "name": "ovn", "type": "ovn-k8s-cni-overlay"}
    try:
        r = pod.cni(binaries, agent, "ADD", config=conf)
        assert r.code == 0, r.out
        assert [(ip["version"], ip["address"]) for ip in r.json["ips"]] == [
            ("4", "172.16.35.20/24"), ("6", "fd00:35::14/64")]
        assert pod.cni(binaries, agent, "CHECK", config=conf).code == 0
    finally:
        pod.cni(binaries, agent, "DEL", config=conf)


def test_ipv6_configured_without_dad(pods):
    one = pods["one"]
    for dev, net in (("net0", "ds-a"), ("net1", "ds-b")):
        addrs = global_v6(one.netns, dev)
        assert [(a["local"], a["prefixlen"]) for a in addrs] == [(v6(net, 2), 64)]
        # IFA_F_NODAD: usable at once, never tentative
        assert addrs[0].get("nodad") is True and not addrs[0].get("tentative"), addrs
        sysctl = one.netns.run("sysctl", "-n", f"net.ipv6.conf.{dev}.accept_dad",
                               f"net.ipv6.conf.{dev}.accept_ra").stdout.split()
        assert sysctl == ["0", "0"]
        # the kernel's link-local address stays, and did not probe either
        local = [a for a in addr_info(one.netns, dev)["addr_info"] if a.get("scope") == "link"]
        assert local and not any(a.get("tentative") for a in local)
    v4s = [(a["local"], a["prefixlen"]) for a in addr_info(one.netns, "net0")["addr_info"]
           if a["family"] == "inet"]
    assert v4s == [("172.16.35.2", 24)]
    assert "default" not in one.netns.run("ip", "-6", "route").stdout  # no defaultGateway
    b = pods["b"].netns
    assert "default via fd00:36::1 dev eth1" in b.run("ip", "-6", "route").stdout
    assert "default via 172.16.36.1 dev eth1" in b.run("ip", "route").stdout
    assert addr_info(b, "eth1")["mtu"] == 1400


def test_ping_each_other_and_gateways_over_both_families(pods):
    one, two = pods["one"].netns, pods["two"].netns
    for net in ("ds-a", "ds-b"):
        assert ping6(one, v6(net, 3)), net
        assert ping6(two, v6(net, 2)), net
        assert one.ping(v4(net, 3)), net
        assert ping6(one, v6(net, 1)), net     # the gateway (router port) over IPv6
        assert one.ping(v4(net, 1)), net
    assert ping6(pods["c"].netns, v6("v6-c", 1))


def test_across_the_router_over_ipv6(pods):
    a, b, c = pods["a"].netns, pods["b"].netns, pods["c"].netns
    assert ping6(a, v6("ds-b", 10))
    assert ping6(b, v6("ds-a", 10))
    assert ping6(a, v6("v6-c", 10))    # dual-stack -> IPv6-only network
    assert ping6(c, v6("ds-b", 10))
    assert a.ping(v4("ds-b", 10))      # and IPv4 as before
    assert ping6(a, v6("ds-b", 1))     # the router's far-side port
    r = a.run("ping", "-6", "-n", "-c", "1", "-W", "2", "-t", "64", v6("ds-b", 10))
    assert "ttl=63" in r.stdout, r.stdout   # one routed hop


def test_neighbour_discovery_through_ovn(pods):
    """The pods' neighbour tables fill by neighbour discovery (OVN answers or forwards the
    solicitations): nothing static, the peer's and the router's MACs learnt."""
    one = pods["one"].netns
    one.run("ip", "-6", "neigh", "flush", "dev", "net0", check=True)
    one.run("ip", "-4", "neigh", "flush", "dev", "net0", check=True)
    assert ping6(one, v6("ds-a", 3)) and ping6(one, v6("ds-a", 1))
    assert one.ping(v4("ds-a", 3))
    neigh = json.loads(one.run("ip", "-j", "neigh", "show", "dev", "net0", check=True).stdout)
    learnt = {n["dst"]: n.get("lladdr") for n in neigh if "PERMANENT" not in n.get("state", [])}
    assert learnt.get(v6("ds-a", 3)) == mac_for("ds-a", 3), neigh
    assert learnt.get(v6("ds-a", 1)) == mac_for("ds-a", 1), neigh
    assert learnt.get(v4("ds-a", 3)) == mac_for("ds-a", 3), neigh
    assert not [n for n in neigh if "PERMANENT" in n.get("state", [])], neigh


def test_port_security_drops_spoofed_ipv6_source_and_mac(pods):
    one, peer = pods["one"].netns, v6("ds-a", 3)
    spoof = v6("ds-a", 0x99)
    one.run("ip", "-6", "addr", "add", f"{spoof}/64", "dev", "net0", "nodad", check=True)
    try:
        assert not ping6(one, peer, "-I", spoof, count=3)
        assert ping6(one, peer, "-I", v6("ds-a", 2))   # the owned address works
    finally:
        one.run("ip", "-6", "addr", "del", f"{spoof}/64", "dev", "net0")
    # a spoofed MAC on the owned addresses gets nothing through, over either family
    one.run("ip", "link", "set", "net0", "address", "0a:00:00:00:00:99", check=True)
    try:
        one.run("ip", "neigh", "flush", "all")
        assert not ping6(one, peer, count=3)
        assert not one.ping(v4("ds-a", 3), count=2)
    finally:
        one.run("ip", "link", "set", "net0", "address", mac_for("ds-a", 2), check=True)
    assert ping6(one, peer)


def test_check_fails_when_an_ipv6_address_or_route_is_removed(pods, binaries, agent):
    two, b = pods["two"], pods["b"]
    assert two.cni(binaries, agent, "CHECK").code == 0
    two.netns.run("ip", "-6", "addr", "del", f"{v6('ds-b', 3)}/64", "dev", "net1", check=True)
    r = two.cni(binaries, agent, "CHECK")
    assert r.code == 1 and "net1 lacks address fd00:36::3/64" in r.json["details"], r.out
    assert two.cni(binaries, agent, "ADD").code == 0     # a repeated ADD converges
    assert two.cni(binaries, agent, "CHECK").code == 0
    assert ping6(two.netns, v6("ds-b", 2))

    assert b.cni(binaries, agent, "CHECK").code == 0
    b.netns.run("ip", "-6", "route", "del", "default", "dev", "eth1", check=True)
    r = b.cni(binaries, agent, "CHECK")
    assert r.code == 1 and r.json["details"] == "eth1 lacks route ::/0 via fd00:36::1", r.out
    assert b.cni(binaries, agent, "ADD").code == 0
    assert b.cni(binaries, agent, "CHECK").code == 0
    assert ping6(b.netns, v6("v6-c", 10))


def test_add_converges_to_the_annotation_addresses(ds_topology, agent, binaries, make_netns):
    """A stray global IPv6 address is removed by a repeated ADD; a wanted one that someone
    re-added with DAD (tentative) is replaced by one without."""
    pod = new_pod(ds_topology, agent, make_netns, "ds-conv", [entry("net0", "ds-a", 30)])
    try:
        assert pod.cni(binaries, agent, "ADD").code == 0
        pod.netns.run("ip", "-6", "addr", "add", "fd00:35::77/64", "dev", "net0", "nodad",
                      check=True)
        assert pod.cni(binaries, agent, "ADD").code == 0
        assert [a["local"] for a in global_v6(pod.netns, "net0")] == ["fd00:35::1e"]
        assert ping6(pod.netns, v6("ds-a", 1))
    finally:
        pod.cni(binaries, agent, "DEL")


def _host_links(dp) -> str:
    return subprocess.run(["ip", "-n", dp.netns, "-o", "link"], capture_output=True,
                          text=True).stdout


def test_del_leaves_nothing(ds_topology, agent, binaries, make_netns, dataplane):
    pod = new_pod(ds_topology, agent, make_netns, "ds-del",
                  [entry("net0", "ds-a", 50), entry("net1", "v6-c", 50)])
    assert pod.cni(binaries, agent, "ADD").code == 0
    assert ping6(pod.netns, v6("v6-c", 1))
    hosts = [host_veth_name(pod.container_id, n) for n in ("net0", "net1")]
    assert all(h in _host_links(dataplane) for h in hosts)
    assert pod.cni(binaries, agent, "DEL").code == 0
    assert not any(h in _host_links(dataplane) for h in hosts)
    assert not set(hosts) & set(dataplane.vsctl("list-ports", dataplane.bridge).split())
    links = json.loads(pod.netns.run("ip", "-j", "link", check=True).stdout)
    assert [link["ifname"] for link in links] == ["lo"]
    assert pod.netns.run("ip", "-6", "route").stdout.strip() == ""   # no route left behind
    assert pod.cni(binaries, agent, "DEL").code == 0      # idempotent


def test_legacy_single_interface_gets_both_families(ds_topology, agent, binaries, make_netns):
    """A pod without ovnNetwork on a dual-stack default network: `ovn` holds both families
    (ip_addresses/gateway_ips beside the IPv4 fields) and eth0 gets both, each with its
    default route."""
    pod = Pod("ds-legacy", [], make_netns())
    lsp = port_name(NS, pod.name, LEGACY_INTERFACE)   # `<namespace>_<pod>`
    iface = result("eth0", "ds-a", 100, default=True,
                   routes=(Route("fd00:99::/64", "fd00:35::1"),))
    addr = f"{iface.mac} {v4('ds-a', 100)} {v6('ds-a', 100)}"
    ds_topology.nbctl("lsp-add", "ds-a", lsp, "--", "lsp-set-addresses", lsp, addr,
                      "--", "lsp-set-port-security", lsp, addr)
    legacy = encode_legacy_result(iface, NS, pod.name)
    assert json.loads(legacy)["ip_addresses"] == ["172.16.35.100/24", "fd00:35::64/64"]
    agent.put_pod(NS, pod.name, pod.uid, sealed(pod.uid, {"ovn": legacy}))
    try:
        r = pod.cni(binaries, agent, "ADD", ifname="eth0")
        assert r.code == 0, r.out
        assert r.json["ips"] == [
            {"address": "172.16.35.100/24", "gateway": "172.16.35.1", "interface": 1},
            {"address": "fd00:35::64/64", "gateway": "fd00:35::1", "interface": 1}]
        routes6 = pod.netns.run("ip", "-6", "route").stdout
        assert "default via fd00:35::1 dev eth0" in routes6
        assert "fd00:99::/64 via fd00:35::1 dev eth0" in routes6
        assert "default via 172.16.35.1 dev eth0" in pod.netns.run("ip", "route").stdout
        assert ping6(pod.netns, v6("ds-a", 1)) and pod.netns.ping(v4("ds-a", 1))
        assert ping6(pod.netns, v6("v6-c", 1))   # through the router by the IPv6 default route
        assert pod.cni(binaries, agent, "CHECK", ifname="eth0").code == 0
        assert pod.cni(binaries, agent, "DEL", ifname="eth0").code == 0
        assert "eth0" not in pod.netns.run("ip", "link").stdout
    finally:
        ds_topology.nbctl("--if-exists", "lsp-del", lsp)


def test_mtu_below_ipv6_minimum_is_refused_by_name(ds_topology, agent, binaries, make_netns,
                                                   dataplane):
    pod = new_pod(ds_topology, agent, make_netns, "ds-mtu",
                  [entry("net0", "ds-a", 60, mtu=1200)])
    r = pod.cni(binaries, agent, "ADD")
    assert r.code == 1, r.out
    assert r.json["msg"] == ("cannot plumb interface net0: interface net0 has MTU 1200, below "
                             "IPv6's minimum 1280: the kernel disables IPv6 on it, so its IPv6 "
                             "address cannot be set"), r.out
    # refused before anything is created
    assert host_veth_name(pod.container_id, "net0") not in _host_links(dataplane)
    assert "net0" not in pod.netns.run("ip", "link").stdout
    assert pod.cni(binaries, agent, "DEL").code == 0


def test_ipv6_disabled_by_the_runtime_is_turned_back_on(ds_topology, agent, binaries,
                                                        make_netns):
    """Runtimes may set net.ipv6.conf.all/default.disable_ipv6=1 in the pod's netns: the agent
    enables IPv6 on its own interface (as the reference CNI plugins do) and plumbs it."""
    netns = make_netns()
    for scope in ("all", "default"):
        netns.run("sysctl", "-w", f"net.ipv6.conf.{scope}.disable_ipv6=1", check=True)
    pod = Pod("ds-disabled", [entry("net0", "ds-a", 70)], netns)
    create_lsps(ds_topology, pod)
    agent.put_pod(NS, pod.name, pod.uid, pod.annotations)
    try:
        r = pod.cni(binaries, agent, "ADD")
        assert r.code == 0, r.out
        assert [a["local"] for a in global_v6(netns, "net0")] == ["fd00:35::46"]
        assert ping6(netns, v6("ds-a", 1))
    finally:
        pod.cni(binaries, agent, "DEL")


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_libcni_parses_and_chains_the_dual_stack_result(ds_topology, agent, binaries, make_netns,
                                                        workdir, version):
    """libcni (as containerd/CRI-O/Multus use it) accepts the result of both families, caches it
    and hands it to a chained plugin (tuning, setting an IPv6 sysctl); CHECK and DEL follow."""
    host = 80 if version == "0.4.0" else 81
    pod = new_pod(ds_topology, agent, make_netns, f"ds-libcni-{host}", [entry("net0", "ds-a", host)])
    conflist = workdir / f"ds-{version}.conflist"
    conflist.write_text(json.dumps({
        "cniVersion": version, "name": "ovn-ds",
        "plugins": [
            {"type": "ovn-k8s-cni-overlay", "agentSocket": str(agent.socket),
             "annotationTimeout": 10},
            {"type": "tuning", "sysctl": {"net.ipv6.conf.net0.ndisc_notify": "1"}},
        ],
    }))
    plugin_dirs = f"{binaries['shim'].parent}:/usr/lib/cni"

    def runtime(action: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(binaries["runtime"]), action, str(conflist), pod.container_id, pod.netns.path,
             "net0", pod.args, plugin_dirs, str(workdir / "cni-cache")],
            capture_output=True, text=True, timeout=120)

    r = runtime("add")
    assert r.returncode == 0, r.stdout + r.stderr
    ips = json.loads(r.stdout)["ips"]
    assert [ip["address"] for ip in ips] == [f"172.16.35.{host}/24", f"fd00:35::{host:x}/64"]
    assert [ip["gateway"] for ip in ips] == ["172.16.35.1", "fd00:35::1"]
    if version == "0.4.0":
        assert [ip["version"] for ip in ips] == ["4", "6"]
    sysctl = pod.netns.run("sysctl", "-n", "net.ipv6.conf.net0.ndisc_notify").stdout.strip()
    assert sysctl == "1"
    assert ping6(pod.netns, v6("ds-a", 1))
    assert runtime("check").returncode == 0
    r = runtime("del")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "net0" not in pod.netns.run("ip", "link").stdout


def test_agent_with_read_only_proc_sys(ds_topology, dataplane, binaries, make_netns, workdir,
                                       seal_key_file):
    """The shipped DaemonSet is not privileged, so the runtime mounts /proc/sys read-only in the
    agent's container. The agent then cannot set accept_dad/accept_ra: IPv6 still works at once
    (IFA_F_NODAD), and IPv6 disabled in the pod's netns is refused by name, leaving nothing."""
    import signal
    import sys
    import time

    ok = Pod("ds-ro", [entry("net0", "ds-a", 90)], make_netns())
    off_ns = make_netns()
    off_ns.run("sysctl", "-w", "net.ipv6.conf.default.disable_ipv6=1", check=True)
    off = Pod("ds-ro-off", [entry("net0", "ds-a", 91)], off_ns)
    for pod in (ok, off):
        create_lsps(ds_topology, pod)
    pods_file = workdir / "ro-pods.json"
    pods_file.write_text(json.dumps([{"namespace": NS, "name": p.name, "uid": p.uid,
                                      "annotations": p.annotations} for p in (ok, off)]))
    sock, logfile = workdir / "ro-agent.sock", workdir / "ro-agent.log"
    agent_cmd = [sys.executable, "-m", "ovnvnet.cni.agent", "--node", "node1", "--socket",
                 str(sock), "--static-pods", str(pods_file), "--ovs-db", dataplane.ovs_remote,
                 "--host-netns", dataplane.netns]
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "slave", "sh", "-ec",
         'mount -o bind,ro /proc/sys /proc/sys && exec "$@"', "sh", *agent_cmd],
        stdout=logfile.open("w"), stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "OVNVNET_SEAL_KEY_FILE": str(seal_key_file)})
    try:
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.1)

        def shim(pod: Pod, command: str):
            return run_shim(binaries["shim"], sock, command, container_id=pod.container_id,
                            netns=pod.netns.path, args=pod.args)

        r = shim(ok, "ADD")
        assert r.code == 0, r.out + logfile.read_text()
        addrs = global_v6(ok.netns, "net0")
        assert addrs[0]["local"] == v6("ds-a", 90) and addrs[0].get("nodad") is True
        assert not addrs[0].get("tentative")
        assert ok.netns.run("sysctl", "-n", "net.ipv6.conf.net0.accept_dad").stdout.strip() == "1"
        assert ping6(ok.netns, v6("ds-a", 1))
        assert shim(ok, "CHECK").code == 0
        assert "cannot write /proc/sys/net/ipv6/conf/net0/accept_dad" in logfile.read_text()

        r = shim(off, "ADD")
        assert r.code == 1, r.out
        assert r.json["msg"].startswith(
            "cannot plumb interface net0: IPv6 is disabled on net0 in "
            f"{off_ns.path} (net.ipv6.conf.net0.disable_ipv6=1, from the namespace's default) "
            "and the agent cannot enable it: Read-only file system"), r.out
        assert host_veth_name(off.container_id, "net0") not in _host_links(dataplane)
        assert "net0" not in off_ns.run("ip", "link").stdout
        for pod in (ok, off):
            assert shim(pod, "DEL").code == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
