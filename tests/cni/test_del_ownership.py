"""DEL removes only what that container created, on the real data plane (OVS + ovn-controller).

Every host veth end records its container id in its alias and every OVS Interface in
``external_ids:ovnvnet.io/sandbox``; DEL matches those, never a name prefix. Host names carry 52
bits of a hash of (container id, interface) and fall back to further candidates when a link that
is not ours holds the name.

Pods here sit on their own logical switch ``net-own`` (172.16.27.0/24, no router), so this module
shares nothing with test_dataplane_cni.py but the node and the agent.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import uuid

import pytest

from ovnvnet.cni.netlink import NAME_ATTEMPTS, host_veth_name, link_alias
from ovnvnet.model.names import port_name

from .conftest import Netns, run_shim, sealed

pytestmark = pytest.mark.timeout(300)

NS = "owners"
NET = "net-own"


@pytest.fixture(scope="module")
def switch(central):
    central.nbctl("--may-exist", "ls-add", NET)
    yield central
    central.nbctl("--if-exists", "ls-del", NET)


class Pod:
    def __init__(self, name: str, host: int, netns: Netns, container_id: str) -> None:
        self.name = name
        self.uid = str(uuid.uuid4())
        self.netns = netns
        self.container_id = container_id
        self.ip = f"172.16.27.{host}"
        self.iface = {"interface": "net0", "name": NET, "ip_address": self.ip,
                      "prefix_length": 24, "mac_address": f"0a:58:ac:10:1b:{host:02x}",
                      "gateway_ip": "172.16.27.1", "defaultGateway": False, "mtu": 1400,
                      "routes": []}

    @property
    def args(self) -> str:
        return (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={NS};K8S_POD_NAME={self.name};"
                f"K8S_POD_UID={self.uid}")

    def cni(self, binaries, agent, command: str):
        return run_shim(binaries["shim"], agent.socket, command, container_id=self.container_id,
                        netns=self.netns.path, args=self.args)


def make_pod(switch, agent, make_netns, name: str, host: int, container_id: str = "") -> Pod:
    pod = Pod(name, host, make_netns(), container_id or secrets.token_hex(32))
    lsp = port_name(NS, name, "net0")
    addr = f"{pod.iface['mac_address']} {pod.ip}"
    switch.nbctl("--may-exist", "lsp-add", NET, lsp, "--", "lsp-set-addresses", lsp, addr,
                 "--", "lsp-set-port-security", lsp, addr)
    agent.put_pod(NS, name, pod.uid, sealed(pod.uid, {
        "ovnNetwork": json.dumps([{"name": NET, "interface": "net0"}]),
        "ovnIfaceList": json.dumps([pod.iface]),
    }))
    return pod


def old_prefix(container_id: str) -> str:
    """The 32 bits of the container id's hash the old names shared per container."""
    return hashlib.sha256(container_id.encode()).hexdigest()[:8]


def colliding_container_ids() -> tuple[str, str]:
    """Two 64-hex container ids whose old name prefixes collide (birthday: ~2^16 tries)."""
    seen: dict[str, str] = {}
    while True:
        cid = secrets.token_hex(32)
        prefix = old_prefix(cid)
        if prefix in seen:
            return seen[prefix], cid
        seen[prefix] = cid


def host_links(dp) -> dict[str, dict]:
    out = subprocess.run(["ip", "-n", dp.netns, "-j", "link"], capture_output=True, text=True,
                         check=True).stdout
    return {link["ifname"]: link for link in json.loads(out)}


def ovs_sandbox(dp, name: str) -> str | None:
    """external_ids:ovnvnet.io/sandbox of the OVS Interface `name`; None when there is none."""
    out = dp.vsctl("--if-exists", "get", "Interface", name, "external_ids:ovnvnet.io/sandbox",
                   check=False).strip()
    return json.loads(out) if out.startswith('"') else (out or None)


def host_of(result: dict) -> str:
    return result["interfaces"][0]["name"]


def test_old_prefix_collision_add_and_del_touch_only_their_own(switch, agent, binaries,
                                                               make_netns, dataplane):
    cid_a, cid_b = colliding_container_ids()
    assert old_prefix(cid_a) == old_prefix(cid_b) and cid_a != cid_b
    a = make_pod(switch, agent, make_netns, "pod-a", 2, cid_a)
    b = make_pod(switch, agent, make_netns, "pod-b", 3, cid_b)
    watcher = make_pod(switch, agent, make_netns, "pod-w", 4)
    pods = (a, b, watcher)
    try:
        hosts = {}
        for pod in pods:
            r = pod.cni(binaries, agent, "ADD")
            assert r.code == 0, r.out
            hosts[pod.name] = host_of(r.json)
        ha, hb = hosts["pod-a"], hosts["pod-b"]
        assert ha != hb
        # B's ADD left A's host end, its alias and its OVS binding alone
        links = host_links(dataplane)
        assert links[ha].get("ifalias") == link_alias(cid_a, "net0")
        assert links[hb].get("ifalias") == link_alias(cid_b, "net0")
        assert ovs_sandbox(dataplane, ha) == cid_a and ovs_sandbox(dataplane, hb) == cid_b
        assert a.cni(binaries, agent, "CHECK").code == 0
        assert watcher.netns.ping(a.ip) and watcher.netns.ping(b.ip)

        r = a.cni(binaries, agent, "DEL")
        assert r.code == 0, r.out
        links = host_links(dataplane)
        assert ha not in links and ovs_sandbox(dataplane, ha) is None
        assert "net0" not in a.netns.run("ip", "link").stdout
        # B keeps its veth, its OVS port and its traffic
        assert hb in links and ovs_sandbox(dataplane, hb) == cid_b
        assert hb in dataplane.vsctl("list-ports", dataplane.bridge).split()
        assert b.cni(binaries, agent, "CHECK").code == 0
        assert watcher.netns.ping(b.ip)

        assert b.cni(binaries, agent, "DEL").code == 0
        assert hb not in host_links(dataplane) and ovs_sandbox(dataplane, hb) is None
    finally:
        for pod in pods:
            pod.cni(binaries, agent, "DEL")


def test_name_held_by_foreign_links_falls_back_and_del_spares_them(switch, agent, binaries,
                                                                   make_netns, dataplane):
    """Candidate 0 is held by another container's veth (its alias and OVS port say so), candidate
    1 by a link nobody recorded: ADD takes candidate 2, CHECK and a repeated ADD find it there,
    and DEL removes it and nothing else."""
    pod = make_pod(switch, agent, make_netns, "pod-fallback", 10)
    watcher = make_pod(switch, agent, make_netns, "pod-fallback-w", 11)
    cid = pod.container_id
    names = [host_veth_name(cid, "net0", n) for n in range(NAME_ATTEMPTS)]
    other = secrets.token_hex(32)
    ip = ["ip", "-n", dataplane.netns, "link"]
    subprocess.run([*ip, "add", names[0], "type", "veth", "peer", "name", "fx" + other[:8]],
                   check=True)
    subprocess.run([*ip, "set", names[0], "alias", link_alias(other, "net0")], check=True)
    dataplane.vsctl("add-port", dataplane.bridge, names[0], "--", "set", "Interface", names[0],
                    f"external_ids:ovnvnet.io/sandbox={other}")
    subprocess.run([*ip, "add", names[1], "type", "veth", "peer", "name", "fy" + other[:8]],
                   check=True)
    before = host_links(dataplane)
    try:
        assert watcher.cni(binaries, agent, "ADD").code == 0
        r = pod.cni(binaries, agent, "ADD")
        assert r.code == 0, r.out
        assert host_of(r.json) == names[2]
        assert watcher.netns.ping(pod.ip)
        assert pod.cni(binaries, agent, "CHECK").code == 0, "CHECK finds the fallback name"
        index = host_links(dataplane)[names[2]]["ifindex"]
        r = pod.cni(binaries, agent, "ADD")
        assert r.code == 0 and host_of(r.json) == names[2], r.out
        assert host_links(dataplane)[names[2]]["ifindex"] == index, "a repeated ADD converges"

        assert pod.cni(binaries, agent, "DEL").code == 0
        after = host_links(dataplane)
        assert names[2] not in after
        for foreign in (names[0], "fx" + other[:8], names[1], "fy" + other[:8]):
            assert after[foreign]["ifindex"] == before[foreign]["ifindex"], foreign
        assert after[names[0]].get("ifalias") == link_alias(other, "net0")
        assert ovs_sandbox(dataplane, names[0]) == other
    finally:
        pod.cni(binaries, agent, "DEL")
        watcher.cni(binaries, agent, "DEL")
        dataplane.vsctl("--if-exists", "del-port", dataplane.bridge, names[0])
        for name in names[:2]:
            subprocess.run([*ip, "del", name], capture_output=True)


def test_del_of_links_plumbed_before_aliases_goes_by_the_ovs_record(agent, binaries, dataplane):
    """A link from before aliases (no alias) is the container's only when OVS recorded it for
    that full container id; an unrecorded link with the same old-style name prefix is spared."""
    cid = secrets.token_hex(32)
    mine = "ov" + old_prefix(cid) + "aaaaa"
    lookalike = "ov" + old_prefix(cid) + "bbbbb"
    ip = ["ip", "-n", dataplane.netns, "link"]
    for name in (mine, lookalike):
        subprocess.run([*ip, "add", name, "type", "veth", "peer", "name", "op" + name[2:]],
                       check=True)
    dataplane.vsctl("add-port", dataplane.bridge, mine, "--", "set", "Interface", mine,
                    f"external_ids:ovnvnet.io/sandbox={cid}")
    try:
        r = run_shim(binaries["shim"], agent.socket, "DEL", container_id=cid,
                     args=f"K8S_POD_NAMESPACE={NS};K8S_POD_NAME=gone")
        assert r.code == 0, r.out
        links = host_links(dataplane)
        assert mine not in links and ovs_sandbox(dataplane, mine) is None
        assert lookalike in links
    finally:
        dataplane.vsctl("--if-exists", "del-port", dataplane.bridge, mine)
        for name in (mine, lookalike):
            subprocess.run([*ip, "del", name], capture_output=True)
