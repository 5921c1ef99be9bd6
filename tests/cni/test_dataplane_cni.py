"""The CNI shim + node agent + plumbing, on a real OVN data plane (packets really cross OVN).

Topology: logical switches net-a (172.16.25.0/24) and net-b (172.16.26.0/24) joined by one
logical router. "pods" are network namespaces; logical switch ports are created here with
ovn-nbctl to match hand-written ovnIfaceList annotations (the operator's job in production).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid

import pytest

from ovnvnet.cni.netlink import host_veth_name
from ovnvnet.model.names import port_name

from .conftest import Netns, run_shim, sealed

pytestmark = pytest.mark.timeout(300)

NETS = {
    "net-a": ("172.16.25", "0a:58:ac:10:19:01"),
    "net-b": ("172.16.26", "0a:58:ac:10:1a:01"),
}
NS = "default"


def entry(interface: str, network: str, host: int, *, default: bool = False,
          mtu: int | None = 1400, routes: list | None = None) -> dict:
    base, _ = NETS[network]
    third = int(base.split(".")[2])
    return {
        "interface": interface, "name": network, "ip_address": f"{base}.{host}",
        "prefix_length": 24, "mac_address": f"0a:58:ac:10:{third:02x}:{host:02x}",
        "gateway_ip": f"{base}.1", "defaultGateway": default, "mtu": mtu,
        "routes": routes or [],
    }


@pytest.fixture(scope="module")
def topology(central):
    central.nbctl("lr-add", "ovnvnet-router")
    for net, (base, mac) in NETS.items():
        central.nbctl("ls-add", net)
        central.nbctl("lrp-add", "ovnvnet-router", f"rtr-{net}", mac, f"{base}.1/24")
        central.nbctl("lsp-add", net, f"rtr-{net}-ls", "--", "lsp-set-type", f"rtr-{net}-ls",
                      "router", "--", "lsp-set-addresses", f"rtr-{net}-ls", "router",
                      "--", "lsp-set-options", f"rtr-{net}-ls", f"router-port=rtr-{net}")
    return central


class Pod:
    def __init__(self, name: str, ifaces: list[dict], netns: Netns) -> None:
        self.name = name
        self.uid = str(uuid.uuid4())
        self.ifaces = ifaces
        self.netns = netns
        self.container_id = uuid.uuid4().hex + uuid.uuid4().hex

    @property
    def args(self) -> str:
        return (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={NS};K8S_POD_NAME={self.name};"
                f"K8S_POD_INFRA_CONTAINER_ID={self.container_id};K8S_POD_UID={self.uid}")

    @property
    def annotations(self) -> dict[str, str]:
        """The request and the operator's result, sealed for this pod as the operator does."""
        return sealed(self.uid, {
            "ovnNetwork": json.dumps([{"name": i["name"], "interface": i["interface"]}
                                      for i in self.ifaces]),
            "ovnIfaceList": json.dumps(self.ifaces)})

    def cni(self, binaries, agent, command: str, **kw):
        return run_shim(binaries["shim"], agent.socket, command, container_id=self.container_id,
                        netns=self.netns.path, args=self.args, **kw)


def lsp_addresses(e: dict) -> str:
    """``MAC IPv4 [IPv6]`` (or ``MAC IPv6``): the port's addresses and port security."""
    ips = [cidr.split("/")[0] for cidr in e.get("ip_addresses", [f"{e['ip_address']}/0"])]
    return " ".join([e["mac_address"], *ips])


def create_lsps(central, pod: Pod, port_of=lambda pod, i: port_name(NS, pod.name, i)) -> None:
    for e in pod.ifaces:
        lsp, addr = port_of(pod, e["interface"]), lsp_addresses(e)
        central.nbctl("--may-exist", "lsp-add", e["name"], lsp, "--",
                      "lsp-set-addresses", lsp, addr, "--", "lsp-set-port-security", lsp, addr)


def new_pod(topology, agent, make_netns, name: str, ifaces: list[dict]) -> Pod:
    pod = Pod(name, ifaces, make_netns())
    create_lsps(topology, pod)
    agent.put_pod(NS, pod.name, pod.uid, pod.annotations)
    return pod


@pytest.fixture(scope="module")
def pods(topology, agent, binaries, module_netns):
    """The seed-like pair on both networks, plus one single-homed pod on each network."""
    p1 = new_pod(topology, agent, module_netns, "pod-ovn",
                 [entry("net0", "net-a", 2), entry("net1", "net-b", 3)])
    p2 = new_pod(topology, agent, module_netns, "pod-two",
                 [entry("net0", "net-a", 3), entry("net1", "net-b", 4)])
    # single-homed: p3 only on net-a with the default route; p4 only on net-b with a route
    p3 = new_pod(topology, agent, module_netns, "pod-a-only",
                 [entry("net0", "net-a", 10, default=True, mtu=None)])
    p4 = new_pod(topology, agent, module_netns, "pod-b-only",
                 [entry("net5", "net-b", 10, routes=[{"dst": "172.16.25.0/24",
                                                     "gw": "172.16.26.1"}])])
    all_pods = [p1, p2, p3, p4]
    results = {}
    for pod in all_pods:
        r = pod.cni(binaries, agent, "ADD")
        assert r.code == 0, (r.out, r.err)
        results[pod.name] = r.json
    yield {"p1": p1, "p2": p2, "p3": p3, "p4": p4, "results": results}
    for pod in all_pods:
        pod.cni(binaries, agent, "DEL")


def test_version(binaries, agent):
    r = run_shim(binaries["shim"], agent.socket, "VERSION")
    assert r.code == 0, r.out
    assert {"0.4.0", "1.0.0"} <= set(r.json["supportedVersions"])


def test_add_result_follows_spec(pods):
    res = pods["results"]["pod-ovn"]
    p1 = pods["p1"]
    assert res["cniVersion"] == "1.0.0"
    ifs = res["interfaces"]
    assert [i["name"] for i in ifs[1::2]] == ["net0", "net1"]
    assert all(i["sandbox"] == p1.netns.path for i in ifs[1::2])
    assert all("sandbox" not in i and len(i["name"]) <= 15 for i in ifs[0::2])
    assert ifs[1]["mac"] == "0a:58:ac:10:19:02"
    assert res["ips"] == [
        {"address": "172.16.25.2/24", "gateway": "172.16.25.1", "interface": 1},
        {"address": "172.16.26.3/24", "gateway": "172.16.26.1", "interface": 3},
    ]
    assert res["routes"] == []  # no defaultGateway, no extra routes
    assert pods["results"]["pod-a-only"]["routes"] == [{"dst": "0.0.0.0/0", "gw": "172.16.25.1"}]


def test_pod_side_configuration(pods):
    p1 = pods["p1"]
    link = json.loads(p1.netns.run("ip", "-j", "addr", "show", "net0", check=True).stdout)[0]
    assert link["address"] == "0a:58:ac:10:19:02"
    assert link["mtu"] == 1400
    assert "UP" in link["flags"]
    assert [(a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"] \
        == [("172.16.25.2", 24)]
    # no default route unless an interface is marked defaultGateway
    assert "default" not in p1.netns.run("ip", "route", check=True).stdout
    assert "default via 172.16.25.1 dev net0" in pods["p3"].netns.run("ip", "route").stdout
    assert "172.16.25.0/24 via 172.16.26.1 dev net5" in pods["p4"].netns.run("ip", "route").stdout


def test_ovs_binding(pods, dataplane):
    p1 = pods["p1"]
    host = host_veth_name(p1.container_id, "net0")
    ids = json.loads(dataplane.vsctl("--format=json", "--columns=external_ids", "list",
                                     "Interface", host))["data"][0][0][1]
    ids = dict(ids)
    assert ids["iface-id"] == port_name(NS, "pod-ovn", "net0")
    assert ids["ovn-installed"] == "true"
    assert ids["attached-mac"] == "0a:58:ac:10:19:02"
    assert ids["ovnvnet.io/pod-uid"] == p1.uid
    assert ids["ovnvnet.io/sandbox"] == p1.container_id


def test_ping_across_each_switch(pods):
    p1, p2 = pods["p1"], pods["p2"]
    assert p1.netns.ping("172.16.25.3")  # net-a
    assert p1.netns.ping("172.16.26.4")  # net-b
    assert p2.netns.ping("172.16.25.2")
    assert p2.netns.ping("172.16.26.3")


def test_ping_gateways_and_through_router(pods):
    p1, p3, p4 = pods["p1"], pods["p3"], pods["p4"]
    assert p1.netns.ping("172.16.25.1")
    assert p1.netns.ping("172.16.26.1")
    # single-homed pods on different switches reach each other only through the router
    assert p3.netns.ping("172.16.26.10")
    assert p4.netns.ping("172.16.25.10")
    assert p3.netns.ping("172.16.26.1")  # the router's far-side port


def test_port_security_drops_spoofed_source(pods):
    p1 = pods["p1"]
    p1.netns.run("ip", "addr", "add", "172.16.25.99/24", "dev", "net0", check=True)
    try:
        assert not p1.netns.ping("172.16.25.3", "-I", "172.16.25.99", count=3)
        assert p1.netns.ping("172.16.25.3", "-I", "172.16.25.2")  # the owned address works
    finally:
        p1.netns.run("ip", "addr", "del", "172.16.25.99/24", "dev", "net0")


def test_check_passes_then_fails_after_address_removed(pods, binaries, agent):
    p2 = pods["p2"]
    r = p2.cni(binaries, agent, "CHECK")
    assert r.code == 0, r.out
    p2.netns.run("ip", "addr", "del", "172.16.26.4/24", "dev", "net1", check=True)
    r = p2.cni(binaries, agent, "CHECK")
    assert r.code == 1
    assert "lacks address 172.16.26.4/24" in r.json["details"]
    # a repeated ADD converges: the address comes back, CHECK passes again
    r = p2.cni(binaries, agent, "ADD")
    assert r.code == 0, r.out
    assert p2.cni(binaries, agent, "CHECK").code == 0
    assert p2.netns.ping("172.16.26.3")


def test_check_fails_after_interface_deleted(topology, agent, binaries, make_netns, dataplane):
    pod = new_pod(topology, agent, make_netns, "pod-check",
                  [entry("net0", "net-a", 40), entry("net1", "net-b", 40)])
    assert pod.cni(binaries, agent, "ADD").code == 0
    assert pod.cni(binaries, agent, "CHECK").code == 0
    pod.netns.run("ip", "link", "del", "net1", check=True)
    r = pod.cni(binaries, agent, "CHECK")
    assert r.code == 1 and "net1 is missing" in r.json["details"], r.out
    # ADD twice converges and recreates the interface
    assert pod.cni(binaries, agent, "ADD").code == 0, "re-ADD"
    assert pod.cni(binaries, agent, "ADD").code == 0, "third ADD"
    assert pod.cni(binaries, agent, "CHECK").code == 0
    assert pod.netns.ping("172.16.26.1")
    assert pod.cni(binaries, agent, "DEL").code == 0


def _host_links(dp) -> str:
    return subprocess.run(["ip", "-n", dp.netns, "-o", "link"], capture_output=True,
                          text=True).stdout


def test_del_removes_everything_and_is_idempotent(topology, agent, binaries, make_netns,
                                                  dataplane):
    pod = new_pod(topology, agent, make_netns, "pod-del",
                  [entry("net0", "net-a", 50), entry("net1", "net-b", 50)])
    assert pod.cni(binaries, agent, "ADD").code == 0
    hosts = [host_veth_name(pod.container_id, n) for n in ("net0", "net1")]
    assert all(h in _host_links(dataplane) for h in hosts)
    r = pod.cni(binaries, agent, "DEL")
    assert r.code == 0, r.out
    assert not any(h in _host_links(dataplane) for h in hosts)
    ports = dataplane.vsctl("list-ports", dataplane.bridge).split()
    assert not set(hosts) & set(ports)
    assert "net0" not in pod.netns.run("ip", "link").stdout
    # again, then with the pod object and the netns gone too
    assert pod.cni(binaries, agent, "DEL").code == 0
    agent.pods.delete(NS, pod.name)
    pod.netns.delete()
    assert pod.cni(binaries, agent, "DEL").code == 0


def test_operator_error_fails_fast(agent, binaries, make_netns):
    pod = Pod("pod-bad", [], make_netns())
    agent.put_pod(NS, pod.name, pod.uid,
                  {"ovnNetwork": "[]", "ovnNetworkError": "ovnNetwork lists no interfaces"})
    started = time.monotonic()
    r = pod.cni(binaries, agent, "ADD")
    assert time.monotonic() - started < 1.0, "an operator's refusal fails ADD in well under a second"
    assert r.code == 1
    assert "ovnNetwork lists no interfaces" in r.json["msg"]


def test_timeout_says_what_it_waited_for(agent, binaries, make_netns):
    pod = Pod("pod-slow", [], make_netns())
    agent.put_pod(NS, pod.name, pod.uid, {"ovnNetwork": '[{"name": "net-z", "interface": "net0"}]'})
    conf = {"cniVersion": "0.4.0", "name": "ovn", "type": "ovn-k8s-cni-overlay",
            "annotationTimeout": 1}
    r = pod.cni(binaries, agent, "ADD", config=conf)
    assert r.code == 1
    err = r.json
    assert err["cniVersion"] == "0.4.0"
    assert "ovnIfaceList" in err["msg"] and "default/pod-slow" in err["msg"]
    assert "net-z" in err["details"]


def test_uid_mismatch_is_refused(agent, binaries, make_netns):
    pod = Pod("pod-uid", [entry("net0", "net-a", 60)], make_netns())
    agent.put_pod(NS, pod.name, str(uuid.uuid4()), pod.annotations)
    r = pod.cni(binaries, agent, "ADD", config={"cniVersion": "1.0.0", "name": "ovn",
                                                "type": "x", "annotationTimeout": 1})
    assert r.code == 1 and "uid" in r.json["msg"], r.out


def test_late_annotation_still_succeeds(topology, agent, binaries, make_netns):
    ifaces = [entry("net0", "net-a", 70)]
    pod = Pod("pod-late", ifaces, make_netns())
    create_lsps(topology, pod)
    agent.put_pod(NS, pod.name, pod.uid, {"ovnNetwork": pod.annotations["ovnNetwork"]})
    timer = threading.Timer(1.5, agent.put_pod, (NS, pod.name, pod.uid, pod.annotations))
    timer.start()
    try:
        r = pod.cni(binaries, agent, "ADD")
        assert r.code == 0, r.out
        assert pod.netns.ping("172.16.25.1")
    finally:
        timer.cancel()
        pod.cni(binaries, agent, "DEL")


def test_libcni_runtime_with_tuning_chained(topology, agent, binaries, make_netns, workdir):
    pod = new_pod(topology, agent, make_netns, "pod-libcni",
                  [entry("net0", "net-a", 80), entry("net1", "net-b", 80)])
    conflist = workdir / "ovn.conflist"
    conflist.write_text(json.dumps({
        "cniVersion": "1.0.0", "name": "ovn-network",
        "plugins": [
            {"type": "ovn-k8s-cni-overlay", "agentSocket": str(agent.socket),
             "annotationTimeout": 10},
            {"type": "tuning", "sysctl": {"net.ipv4.conf.net0.arp_notify": "1"}},
        ],
    }))
    plugin_dirs = f"{binaries['shim'].parent}:/usr/lib/cni"
    cache = workdir / "cni-cache"

    def runtime(action: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "OVNVNET_AGENT_SOCKET"}
        return subprocess.run(
            [str(binaries["runtime"]), action, str(conflist), pod.container_id, pod.netns.path,
             "net0", pod.args, plugin_dirs, str(cache)],
            capture_output=True, text=True, timeout=120, env=env)

    r = runtime("add")
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout)
    assert [ip["address"] for ip in result["ips"]] == ["172.16.25.80/24", "172.16.26.80/24"]
    # tuning ran inside the pod's netns on the interface we created
    sysctl = pod.netns.run("sysctl", "-n", "net.ipv4.conf.net0.arp_notify").stdout.strip()
    assert sysctl == "1"
    assert pod.netns.ping("172.16.26.1")
    r = runtime("check")
    assert r.returncode == 0, r.stdout + r.stderr
    r = runtime("del")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "net0" not in pod.netns.run("ip", "link").stdout
    assert runtime("del").returncode == 0


# the shim's trust check (the connected peer must be root) is in test_shim.py


def test_agent_socket_is_root_only(agent):
    assert (agent.socket.stat().st_mode & 0o777) == 0o600


def test_shim_without_agent_says_try_again(binaries, workdir):
    r = run_shim(binaries["shim"], workdir / "nobody-here.sock", "ADD", container_id="x",
                 netns="/nonexistent", config={"cniVersion": "0.4.0", "name": "n", "type": "t"})
    assert r.code == 1
    err = r.json
    assert err["code"] == 11 and err["cniVersion"] == "0.4.0"
    assert "nobody-here.sock" in err["details"]


def test_agent_command_line_entry_point(topology, dataplane, binaries, make_netns, workdir, seal_key_file):
    """`python -m ovnvnet.cni.agent` as deployed (static pods file instead of an API server)."""
    import signal
    import sys

    pod = Pod("pod-cli", [entry("net0", "net-a", 90)], make_netns())
    create_lsps(topology, pod)
    pods_file = workdir / "pods.json"
    pods_file.write_text(json.dumps([{"namespace": NS, "name": pod.name, "uid": pod.uid,
                                      "annotations": pod.annotations}]))
    sock = workdir / "cli-agent.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ovnvnet.cni.agent", "--node", "node1", "--socket", str(sock),
         "--static-pods", str(pods_file), "--ovs-db", dataplane.ovs_remote,
         "--host-netns", dataplane.netns],
        stdout=(workdir / "cli-agent.log").open("w"), stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "OVNVNET_SEAL_KEY_FILE": str(seal_key_file)})
    try:
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (sock.stat().st_mode & 0o777) == 0o600
        r = run_shim(binaries["shim"], sock, "ADD", container_id=pod.container_id,
                     netns=pod.netns.path, args=pod.args)
        assert r.code == 0, r.out + (workdir / "cli-agent.log").read_text()
        assert pod.netns.ping("172.16.25.1")
        r = run_shim(binaries["shim"], sock, "DEL", container_id=pod.container_id,
                     netns=pod.netns.path, args=pod.args)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode == 0, (workdir / "cli-agent.log").read_text()
    assert not sock.exists()


def test_legacy_single_interface_from_ovn_annotation(topology, agent, binaries, make_netns):
    """A pod without ovnNetwork: one interface named CNI_IFNAME from the operator's result in
    the legacy `ovn` annotation, bound to the port `<namespace>_<pod>` (derived, never read from
    the annotation), with the default route via gateway_ip."""
    pod = Pod("pod-legacy", [], make_netns())
    lsp = f"{NS}_pod-legacy"
    addr = "0a:58:ac:10:19:64 172.16.25.100"
    topology.nbctl("lsp-add", "net-a", lsp, "--", "lsp-set-addresses", lsp, addr,
                   "--", "lsp-set-port-security", lsp, addr)
    result = {"ip_address": "172.16.25.100/24", "mac_address": "0a:58:ac:10:19:64",
              "gateway_ip": "172.16.25.1", "name": "net-a", "port": lsp, "mtu": None,
              "routes": [{"dst": "10.99.0.0/16", "gw": "172.16.25.1"}]}
    # the static request alone (no gateway_ip) is not a result: ADD waits for the operator
    agent.put_pod(NS, pod.name, pod.uid, {"ovn": json.dumps({"ip_address": "172.16.25.100"})})
    timer = threading.Timer(1.0, agent.put_pod, (NS, pod.name, pod.uid,
                                                  sealed(pod.uid, {"ovn": json.dumps(result)})))
    timer.start()
    try:
        r = pod.cni(binaries, agent, "ADD", ifname="eth0")
        assert r.code == 0, r.out
        res = r.json
        assert [i["name"] for i in res["interfaces"]] == [host_veth_name(pod.container_id, "eth0"), "eth0"]
        assert res["ips"] == [{"address": "172.16.25.100/24", "gateway": "172.16.25.1", "interface": 1}]
        routes = pod.netns.run("ip", "route").stdout
        assert "default via 172.16.25.1 dev eth0" in routes
        assert "10.99.0.0/16 via 172.16.25.1 dev eth0" in routes
        assert pod.netns.ping("172.16.25.1")
        assert pod.netns.ping("172.16.26.1")  # through the router, by the default route
        assert pod.cni(binaries, agent, "CHECK", ifname="eth0").code == 0
        assert pod.cni(binaries, agent, "DEL", ifname="eth0").code == 0
        assert "eth0" not in pod.netns.run("ip", "link").stdout
    finally:
        timer.cancel()
        topology.nbctl("--if-exists", "lsp-del", lsp)


def test_legacy_pod_without_result_says_default_network_needed(agent, binaries, make_netns):
    pod = Pod("pod-legacy-wait", [], make_netns())
    agent.put_pod(NS, pod.name, pod.uid, {"ovn": json.dumps({"ip_address": "172.16.25.101"})})
    conf = {"cniVersion": "1.0.0", "name": "ovn", "type": "ovn-k8s-cni-overlay", "annotationTimeout": 1}
    r = pod.cni(binaries, agent, "ADD", ifname="eth0", config=conf)
    assert r.code == 1
    err = r.json
    assert "no ovnNetwork annotation and no ovn result" in err["msg"], err
    assert "172.16.25.101" in err["msg"]
    assert "OVNVNET_DEFAULT_NETWORK" in err["details"]


def test_retrying_operator_error_keeps_add_waiting(topology, agent, binaries, make_netns):
    """ovnNetworkError with ovnNetworkErrorRetry=true (network not created yet, no free address):
    ADD waits for the result instead of failing, and says the operator's message on timeout."""
    ifaces = [entry("net0", "net-a", 75)]
    pod = Pod("pod-retry", ifaces, make_netns())
    create_lsps(topology, pod)
    waiting = {"ovnNetwork": pod.annotations["ovnNetwork"],
               "ovnNetworkError": "network net-a is not ready yet", "ovnNetworkErrorRetry": "true"}
    agent.put_pod(NS, pod.name, pod.uid, waiting)
    conf = {"cniVersion": "1.0.0", "name": "ovn", "type": "ovn-k8s-cni-overlay", "annotationTimeout": 1}
    r = pod.cni(binaries, agent, "ADD", config=conf)
    assert r.code == 1 and "network net-a is not ready yet" in r.json["msg"], r.out
    assert "timed out after 1s" in r.json["msg"]
    timer = threading.Timer(1.0, agent.put_pod, (NS, pod.name, pod.uid, pod.annotations))
    timer.start()
    try:
        r = pod.cni(binaries, agent, "ADD")
        assert r.code == 0, r.out
        assert pod.netns.ping("172.16.25.1")
    finally:
        timer.cancel()
        pod.cni(binaries, agent, "DEL")


def test_sealed_result_beside_a_refused_change_is_plumbed(topology, agent, binaries, make_netns):
    """A refused hot-plug change (issue 16): the operator keeps the pod's sealed result and writes
    ovnNetworkError (no retry) beside it; an ADD (a sandbox recreated by the runtime) plumbs the
    result instead of failing."""
    pod = Pod("pod-kept", [entry("net0", "net-a", 76)], make_netns())
    create_lsps(topology, pod)
    agent.put_pod(NS, pod.name, pod.uid, {**pod.annotations, "ovnNetworkError":
                  "network nope does not exist (change refused, UnknownNetwork: the pod keeps its interfaces net0)"})
    try:
        r = pod.cni(binaries, agent, "ADD")
        assert r.code == 0, r.out
        assert pod.netns.ping("172.16.25.1")
    finally:
        pod.cni(binaries, agent, "DEL")


# --- the operator's records are the truth (issue 9): forged and copied results ---------------


def _bound_to(dataplane, lsp: str) -> list[str]:
    """OVS interfaces whose iface-id is the logical switch port `lsp`."""
    out = dataplane.vsctl("--bare", "--columns=name", "find", "Interface", f"external_ids:iface-id={lsp}")
    return out.split()


SHORT_WAIT = {"cniVersion": "1.0.0", "name": "ovn", "type": "ovn-k8s-cni-overlay", "annotationTimeout": 1}


def test_forged_legacy_result_cannot_hijack_another_pods_port(topology, agent, dataplane, binaries,
                                                               make_netns):
    """Issue 9.1: a pod annotated with a legacy `ovn` "result" naming the victim's port, MAC and
    address. The agent used to bind the victim's port to the attacker's veth."""
    victim = new_pod(topology, agent, make_netns, "victim", [entry("net1", "net-b", 41)])
    peer = new_pod(topology, agent, make_netns, "victim-peer", [entry("net1", "net-b", 42)])
    victim_port = port_name(NS, "victim", "net1")
    try:
        for p in (victim, peer):
            assert p.cni(binaries, agent, "ADD").code == 0
        evil = Pod("evil", [], make_netns())
        forged = {"ip_address": "172.16.26.41/24", "mac_address": "0a:58:ac:10:1a:29",
                  "gateway_ip": "172.16.26.1", "name": "net-b", "port": victim_port}
        agent.put_pod(NS, evil.name, evil.uid, {"ovn": json.dumps(forged)})
        r = evil.cni(binaries, agent, "ADD", ifname="eth0", config=SHORT_WAIT)
        assert r.code == 1, r.out
        assert r.json["msg"].startswith(
            f"ovn of {NS}/evil is not sealed by the operator for this pod (uid {evil.uid}): it has no "
            "ovnvnet.io/seal annotation"), r.out
        assert _bound_to(dataplane, victim_port) == [host_veth_name(victim.container_id, "net1")]
        assert host_veth_name(evil.container_id, "eth0") not in _host_links(dataplane)
        assert "eth0" not in evil.netns.run("ip", "link").stdout
        assert victim.netns.ping("172.16.26.42") and victim.netns.ping("172.16.26.1")
    finally:
        for p in (victim, peer):
            p.cni(binaries, agent, "DEL")


def test_copied_or_edited_iface_list_is_refused(topology, agent, dataplane, binaries, make_netns):
    """A pod carrying another pod's ovnIfaceList with its seal (a clone), or its own sealed result
    edited to another address: ADD fails naming the mismatch; nothing is plumbed."""
    victim = new_pod(topology, agent, make_netns, "victim2", [entry("net0", "net-a", 43)])
    victim_port = port_name(NS, "victim2", "net0")
    try:
        assert victim.cni(binaries, agent, "ADD").code == 0
        clone = Pod("clone", victim.ifaces, make_netns())
        agent.put_pod(NS, clone.name, clone.uid, victim.annotations)   # the victim's seal, copied
        r = clone.cni(binaries, agent, "ADD", config=SHORT_WAIT)
        assert r.code == 1, r.out
        assert r.json["msg"] == (
            f"ovnIfaceList of {NS}/clone is not sealed by the operator for this pod (uid {clone.uid}): "
            "the seal does not match (the result was copied from another pod, or edited)"), r.out

        edited = Pod("edited", [entry("net0", "net-a", 44)], make_netns())
        ann = edited.annotations                                        # sealed for edited.uid ...
        ann["ovnIfaceList"] = json.dumps([entry("net0", "net-a", 43)])  # ... then pointed at the victim
        agent.put_pod(NS, edited.name, edited.uid, ann)
        r = edited.cni(binaries, agent, "ADD", config=SHORT_WAIT)
        assert r.code == 1 and "the seal does not match" in r.json["msg"], r.out

        for p in (clone, edited):
            assert host_veth_name(p.container_id, "net0") not in _host_links(dataplane)
        assert _bound_to(dataplane, victim_port) == [host_veth_name(victim.container_id, "net0")]
        assert victim.netns.ping("172.16.25.1")
    finally:
        victim.cni(binaries, agent, "DEL")


def test_agent_without_a_seal_key_refuses_to_start(workdir):
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OVNVNET_SEAL_KEY_FILE"}
    out = subprocess.run([sys.executable, "-m", "ovnvnet.cni.agent", "--node", "node1",
                          "--socket", str(workdir / "never.sock"), "--static-pods", "/dev/null"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2
    assert "ovnvnet node agent: no seal key: set --seal-key-file/OVNVNET_SEAL_KEY_FILE" in out.stderr
    assert not (workdir / "never.sock").exists()
