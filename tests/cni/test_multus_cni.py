"""Issue 14, node side: one interface per CNI call, exactly as Multus calls a delegate (once per
network-selection element, through libcni, with the element's CNI_IFNAME and the published
NetworkAttachmentDefinition's configuration, whose `name` is the network). Each call plumbs and
returns only its interface; `runtimeConfig` ips/mac are checked against the sealed result; DEL of
one attachment removes only its interface. On a real OVS + OVN data plane.

What Multus writes in the pod's network-status from each result is computed by
tests/cni/networkstatus (Multus 4.0.x's and 4.1+'s rules, on libcni's own result types) and
compared, entry by entry, with the pod's ovnIfaceList: per-network NADs give one exact entry per
call under both; the seed's single attachment gives one true entry under 4.0.x (its shipped
configuration's ``"resultInterfaces": "ifname"``) and one exact entry per interface under 4.1+
(``"all"``)."""
from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from ovnvnet.model.names import port_name

from .conftest import REPO, run_shim, sealed

pytestmark = pytest.mark.timeout(300)
NS = "default"
NETS = {"mnet-a": "172.16.35", "mnet-b": "172.16.36"}


def entry(interface: str, network: str, host: int) -> dict:
    base = NETS[network]
    third = int(base.split(".")[2])
    return {"interface": interface, "name": network, "ip_address": f"{base}.{host}", "prefix_length": 24,
            "mac_address": f"0a:58:ac:10:{third:02x}:{host:02x}", "gateway_ip": f"{base}.1",
            "defaultGateway": False, "routes": []}


@pytest.fixture(scope="module")
def topology(central):
    central.nbctl("--may-exist", "lr-add", "ovnvnet-router")
    for net, base in NETS.items():
        third = int(base.split(".")[2])
        central.nbctl("--may-exist", "ls-add", net)
        central.nbctl("--may-exist", "lrp-add", "ovnvnet-router", f"rtr-{net}", f"0a:58:ac:10:{third:02x}:01",
                      f"{base}.1/24")
        central.nbctl("--may-exist", "lsp-add", net, f"rtr-{net}-ls", "--", "lsp-set-type", f"rtr-{net}-ls",
                      "router", "--", "lsp-set-addresses", f"rtr-{net}-ls", "router",
                      "--", "lsp-set-options", f"rtr-{net}-ls", f"router-port=rtr-{net}")
    return central


@pytest.fixture(scope="module")
def network_status(binaries, workdir):
    """result (dict), network name -> {"4.0": [entries], "4.1": [entries]}: what Multus 4.0.x and
    4.1+ write in network-status for that delegate result."""
    src = Path(__file__).parent / "networkstatus" / "main.go"
    gopath = workdir / "gopath-networkstatus"
    pkg = gopath / "src" / "networkstatus"
    pkg.mkdir(parents=True)
    (pkg / "main.go").write_text(src.read_text())
    exe = workdir / "networkstatus"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": f"{gopath}:/usr/share/gocode", "GOPROXY": "off",
           "GOCACHE": str(binaries["runtime"].parent / ".gocache"), "CGO_ENABLED": "0"}
    subprocess.run(["go", "build", "-o", str(exe), "."], cwd=pkg, env=env, check=True, capture_output=True)

    def run(result: dict, network: str) -> dict:
        out = subprocess.run([str(exe), network], input=json.dumps(result), capture_output=True, text=True,
                             check=True)
        return json.loads(out.stdout)
    return run


def status_of(iface: dict, network: str) -> dict:
    """The network-status entry that tells the truth about one ovnIfaceList entry."""
    return {"name": network, "interface": iface["interface"], "mac": iface["mac_address"],
            "ips": [iface["ip_address"]]}


class MultusPod:
    def __init__(self, topology, agent, netns, name: str, ifaces: list[dict], seed: bool = False) -> None:
        self.name, self.uid, self.netns, self.ifaces = name, str(uuid.uuid4()), netns, ifaces
        self.container_id = uuid.uuid4().hex + uuid.uuid4().hex
        for i in ifaces:
            lsp = port_name(NS, name, i["interface"])
            addr = f"{i['mac_address']} {i['ip_address']}"
            topology.nbctl("--may-exist", "lsp-add", i["name"], lsp, "--", "lsp-set-addresses", lsp, addr,
                           "--", "lsp-set-port-security", lsp, addr)
        if seed:  # the seed's way: Multus's default/ovn-network attachment, the networks in ovnNetwork
            request = {"k8s.v1.cni.cncf.io/networks": "default/ovn-network",
                       "ovnNetwork": json.dumps([{"name": i["name"], "interface": i["interface"]} for i in ifaces])}
        else:
            networks = [{"name": i["name"], "namespace": "ovnvnet-system", "interface": i["interface"]}
                        for i in ifaces]
            request = {"k8s.v1.cni.cncf.io/networks": json.dumps(networks)}
        agent.put_pod(NS, name, self.uid, sealed(self.uid, {**request, "ovnIfaceList": json.dumps(ifaces)}))

    @property
    def args(self) -> str:
        return (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={NS};K8S_POD_NAME={self.name};"
                f"K8S_POD_INFRA_CONTAINER_ID={self.container_id};K8S_POD_UID={self.uid}")

    def links(self) -> str:
        return self.netns.run("ip", "-o", "link").stdout


def libcni(binaries, agent, workdir, pod: MultusPod, action: str, network: str, ifname: str,
           config: dict | None = None):
    """One attachment as Multus delegates it: the NAD's configuration (as the operator publishes
    it, or ``config``) as a conflist, CNI_IFNAME the element's interface, libcni's cache per
    attachment."""
    conf = config or {"cniVersion": "0.4.0", "name": network, "type": "ovn-k8s-cni-overlay"}
    plugin = {k: v for k, v in conf.items() if k not in ("cniVersion", "name")}
    conflist = workdir / f"{conf['name']}-{pod.name}.conflist"
    conflist.write_text(json.dumps({"cniVersion": conf.get("cniVersion", "0.4.0"), "name": conf["name"], "plugins": [
        {**plugin, "agentSocket": str(agent.socket), "annotationTimeout": 10}]}))
    env = {k: v for k, v in os.environ.items() if k != "OVNVNET_AGENT_SOCKET"}
    return subprocess.run(
        [str(binaries["runtime"]), action, str(conflist), pod.container_id, pod.netns.path, ifname, pod.args,
         f"{binaries['shim'].parent}:/usr/lib/cni", str(workdir / "cni-cache-multus")],
        capture_output=True, text=True, timeout=120, env=env)


def test_one_interface_per_call_and_del_per_attachment(topology, agent, binaries, make_netns, workdir,
                                                       dataplane, network_status):
    ifaces = [entry("net1", "mnet-a", 5), entry("net2", "mnet-b", 6)]
    pod = MultusPod(topology, agent, make_netns(), "pod-multus", ifaces)
    r = libcni(binaries, agent, workdir, pod, "add", "mnet-a", "net1")
    assert r.returncode == 0, r.stdout + r.stderr
    first = json.loads(r.stdout)
    # exactly this interface: what Multus turns into this network's network-status entry
    assert [i["name"] for i in first["interfaces"] if i.get("sandbox")] == ["net1"]
    assert [ip["address"] for ip in first["ips"]] == ["172.16.35.5/24"]
    want = status_of(ifaces[0], "ovnvnet-system/mnet-a")
    assert network_status(first, "ovnvnet-system/mnet-a") == {"4.0": [want], "4.1": [want]}
    assert " net1@" in pod.links() and " net2@" not in pod.links()

    # the second element, its NAD configuration without cniVersion (as users write them),
    # runtimeConfig as Multus passes an element's ips/mac when the configuration declares them
    conf = {"name": "mnet-b", "type": "ovn-k8s-cni-overlay",
            "runtimeConfig": {"ips": ["172.16.36.6/24"], "mac": "0A:58:AC:10:24:06"}}
    r2 = run_shim(binaries["shim"], agent.socket, "ADD", container_id=pod.container_id, netns=pod.netns.path,
                  ifname="net2", args=pod.args, config=conf)
    assert r2.code == 0, (r2.out, r2.err)
    second = r2.json
    assert [i["name"] for i in second["interfaces"] if i.get("sandbox")] == ["net2"]
    assert [ip["address"] for ip in second["ips"]] == ["172.16.36.6/24"]
    want = status_of(ifaces[1], "ovnvnet-system/mnet-b")
    assert network_status(second, "ovnvnet-system/mnet-b") == {"4.0": [want], "4.1": [want]}
    assert pod.netns.ping("172.16.35.1") and pod.netns.ping("172.16.36.1")

    # DEL of the first attachment: only net1 goes (its OVS port too); net2 keeps working
    r = libcni(binaries, agent, workdir, pod, "del", "mnet-a", "net1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert " net1@" not in pod.links() and " net2@" in pod.links()
    ports = dataplane.vsctl("--bare", "--columns=external_ids", "find", "Interface",
                            f"external_ids:ovnvnet.io/sandbox={pod.container_id}")
    assert "net2" in ports and "ovnvnet.io/interface=net1" not in ports.replace('"', "")
    assert pod.netns.ping("172.16.36.1")
    assert libcni(binaries, agent, workdir, pod, "del", "mnet-a", "net1").returncode == 0   # idempotent
    assert " net2@" in pod.links()
    r2 = run_shim(binaries["shim"], agent.socket, "DEL", container_id=pod.container_id, netns=pod.netns.path,
                  ifname="net2", args=pod.args, config=conf)
    assert r2.code == 0, (r2.out, r2.err)
    assert " net2@" not in pod.links()


@pytest.mark.parametrize("host, runtime, message", [
    (20, {"ips": ["172.16.36.9/24"]}, 'runtimeConfig.ips "172.16.36.9/24" is not an address of net2 on mnet-b: '
                                      "the operator allocated 172.16.36.20/24"),
    (21, {"ips": ["172.16.36.21/16"]}, "the operator allocated 172.16.36.21/24"),
    (22, {"mac": "0a:00:00:00:00:01"}, 'runtimeConfig.mac "0a:00:00:00:00:01" is not the MAC of net2 on mnet-b'),
])
def test_runtime_config_mismatch_is_refused(topology, agent, binaries, make_netns, host, runtime, message):
    pod = MultusPod(topology, agent, make_netns(), f"pod-rc-{host}", [entry("net2", "mnet-b", host)])
    conf = {"cniVersion": "0.4.0", "name": "mnet-b", "type": "ovn-k8s-cni-overlay", "runtimeConfig": runtime}
    r = run_shim(binaries["shim"], agent.socket, "ADD", container_id=pod.container_id, netns=pod.netns.path,
                 ifname="net2", args=pod.args, config=conf)
    assert r.code != 0 and message in r.json["msg"], r.out
    assert " net2@" not in pod.links()


def test_unknown_interface_on_the_network_is_refused(topology, agent, binaries, make_netns):
    pod = MultusPod(topology, agent, make_netns(), "pod-wrong-if", [entry("net1", "mnet-a", 8)])
    conf = {"cniVersion": "0.4.0", "name": "mnet-a", "type": "ovn-k8s-cni-overlay"}
    r = run_shim(binaries["shim"], agent.socket, "ADD", container_id=pod.container_id, netns=pod.netns.path,
                 ifname="net7", args=pod.args, config=conf)
    assert r.code != 0 and "has no interface net7 on network mnet-a in its ovnIfaceList (on mnet-a: net1)" \
        in r.json["msg"], r.out


def seed_nad_config() -> dict:
    """The seed attachment's configuration exactly as the project ships it (manifests/base)."""
    docs = yaml.safe_load_all((REPO / "manifests" / "base" / "multus.yaml").read_text())
    nad = next(d for d in docs if d and d["kind"] == "NetworkAttachmentDefinition"
               and d["metadata"]["name"] == "ovn-network")
    return json.loads(nad["spec"]["config"])


@pytest.mark.parametrize("mode", ["shipped", "all"])
def test_seed_attachment_network_status(topology, agent, binaries, make_netns, workdir, network_status, mode):
    """The seed's single attachment: one call (CNI_IFNAME net1, Multus's name for the pod's first
    element default/ovn-network) plumbs both ovnNetwork interfaces. As shipped
    ("resultInterfaces": "ifname") the result holds net1 only, so Multus 4.0.x's one entry is
    net1's name, MAC and addresses (true; net0 is not in it: 4.0.x writes one entry per call) and
    4.1+ writes the same. With "all" every interface is in the result and Multus 4.1+ writes one
    exact entry per interface, while 4.0.x would merge them (the issue's false entry)."""
    config = seed_nad_config()
    assert config["resultInterfaces"] == "ifname"
    if mode == "all":
        config = {**config, "resultInterfaces": "all"}
    ifaces = [entry("net0", "mnet-a", 40 + len(mode)), entry("net1", "mnet-b", 40 + len(mode))]
    ifaces[1]["mac_address"] = f"0a:00:00:00:00:{len(mode):02x}"  # static: not derivable from the address
    pod = MultusPod(topology, agent, make_netns(), f"pod-seed-{mode}", ifaces, seed=True)
    r = libcni(binaries, agent, workdir, pod, "add", "", "net1", config=config)
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        assert " net0@" in pod.links() and " net1@" in pod.links()   # one call plumbed both
        got = network_status(json.loads(r.stdout), "default/ovn-network")
        exact = [status_of(i, "default/ovn-network") for i in ifaces]
        if mode == "shipped":
            assert got == {"4.0": [exact[1]], "4.1": [exact[1]]}
        else:
            assert got["4.1"] == exact
            merged = {**exact[1], "ips": [i["ip_address"] for i in ifaces]}
            assert got["4.0"] == [merged]   # why the seed attachment ships "ifname"
        assert pod.netns.ping("172.16.35.1") and pod.netns.ping("172.16.36.1")
    finally:
        r = libcni(binaries, agent, workdir, pod, "del", "", "net1", config=config)
        assert r.returncode == 0, r.stdout + r.stderr
    assert " net0@" not in pod.links() and " net1@" not in pod.links()


def test_bad_result_interfaces_is_refused(topology, agent, binaries, make_netns):
    pod = MultusPod(topology, agent, make_netns(), "pod-badmode", [entry("net0", "mnet-a", 50)], seed=True)
    conf = {"cniVersion": "0.4.0", "name": "ovn-kubernetes", "type": "ovn-k8s-cni-overlay",
            "resultInterfaces": "first"}
    r = run_shim(binaries["shim"], agent.socket, "ADD", container_id=pod.container_id, netns=pod.netns.path,
                 ifname="net1", args=pod.args, config=conf)
    assert r.code != 0 and r.json["msg"] == 'network configuration "resultInterfaces" must be "all" or "ifname"', r.out
    assert "'first'" in r.json["details"] and " net0@" not in pod.links()
