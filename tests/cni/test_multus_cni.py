"""Issue 14, node side: one interface per CNI call, exactly as Multus calls a delegate (once per
network-selection element, through libcni, with the element's CNI_IFNAME and the published
NetworkAttachmentDefinition's configuration, whose `name` is the network). Each call plumbs and
returns only its interface; `runtimeConfig` ips/mac are checked against the sealed result; DEL of
one attachment removes only its interface. On a real OVS + OVN data plane."""
from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from ovnvnet.model.names import port_name

from .conftest import run_shim, sealed

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


class MultusPod:
    def __init__(self, topology, agent, netns, name: str, ifaces: list[dict]) -> None:
        self.name, self.uid, self.netns, self.ifaces = name, str(uuid.uuid4()), netns, ifaces
        self.container_id = uuid.uuid4().hex + uuid.uuid4().hex
        for i in ifaces:
            lsp = port_name(NS, name, i["interface"])
            addr = f"{i['mac_address']} {i['ip_address']}"
            topology.nbctl("--may-exist", "lsp-add", i["name"], lsp, "--", "lsp-set-addresses", lsp, addr,
                           "--", "lsp-set-port-security", lsp, addr)
        networks = [{"name": i["name"], "namespace": "ovnvnet-system", "interface": i["interface"]} for i in ifaces]
        agent.put_pod(NS, name, self.uid, sealed(self.uid, {
            "k8s.v1.cni.cncf.io/networks": json.dumps(networks), "ovnIfaceList": json.dumps(ifaces)}))

    @property
    def args(self) -> str:
        return (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={NS};K8S_POD_NAME={self.name};"
                f"K8S_POD_INFRA_CONTAINER_ID={self.container_id};K8S_POD_UID={self.uid}")

    def links(self) -> str:
        return self.netns.run("ip", "-o", "link").stdout


def libcni(binaries, agent, workdir, pod: MultusPod, action: str, network: str, ifname: str):
    """One attachment as Multus delegates it: the NAD's configuration (as the operator publishes
    it) as a conflist, CNI_IFNAME the element's interface, libcni's cache per attachment."""
    conflist = workdir / f"{network}.conflist"
    conflist.write_text(json.dumps({"cniVersion": "0.4.0", "name": network, "plugins": [
        {"type": "ovn-k8s-cni-overlay", "agentSocket": str(agent.socket), "annotationTimeout": 10}]}))
    env = {k: v for k, v in os.environ.items() if k != "OVNVNET_AGENT_SOCKET"}
    return subprocess.run(
        [str(binaries["runtime"]), action, str(conflist), pod.container_id, pod.netns.path, ifname, pod.args,
         f"{binaries['shim'].parent}:/usr/lib/cni", str(workdir / "cni-cache-multus")],
        capture_output=True, text=True, timeout=120, env=env)


def test_one_interface_per_call_and_del_per_attachment(topology, agent, binaries, make_netns, workdir,
                                                       dataplane):
    pod = MultusPod(topology, agent, make_netns(), "pod-multus",
                    [entry("net1", "mnet-a", 5), entry("net2", "mnet-b", 6)])
    r = libcni(binaries, agent, workdir, pod, "add", "mnet-a", "net1")
    assert r.returncode == 0, r.stdout + r.stderr
    first = json.loads(r.stdout)
    # exactly this interface: what Multus turns into this network's network-status entry
    assert [i["name"] for i in first["interfaces"] if i.get("sandbox")] == ["net1"]
    assert [ip["address"] for ip in first["ips"]] == ["172.16.35.5/24"]
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
