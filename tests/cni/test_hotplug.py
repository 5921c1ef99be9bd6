"""Hot-plug, the node side (issue 16): the agent converges a running pod's sandbox on its sealed
``ovnIfaceList``, on a real OVN data plane (packets really cross OVN).

The operator's side is played here: each change of a pod's result is written as the operator
writes it (the logical switch ports first, then the result with its seal, tests/cni/conftest.py).
The agent runs with its hot-plug :class:`Converger` and a :class:`MemoryReporter` (the Events and
the ``ovnvnet.io/plumbed`` annotation it would write), triggered by the pod source and a resync
every second. Topology: switches hp-c (172.16.35.0/24) and hp-d (172.16.36.0/24) on one router.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ovnvnet.cni.agent import Agent, serve
from ovnvnet.cni.hotplug import STATUS_ANNOTATION, Converger, MemoryReporter, leaks
from ovnvnet.cni.ovs import OvsPorts
from ovnvnet.cni.pods import PodInfo, StaticPodSource
from ovnvnet.model.annotation import SEAL_ANNOTATION
from ovnvnet.model.names import port_name

from .conftest import SEAL_KEY, AgentThread, run_shim, sealed

pytestmark = pytest.mark.timeout(600)

NS = "hotplug"
NETS = {"hp-c": ("172.16.35", 0x23), "hp-d": ("172.16.36", 0x24)}


def entry(interface: str, network: str, host: int, **extra) -> dict:
    base, third = NETS[network]
    return {"interface": interface, "name": network, "ip_address": f"{base}.{host}",
            "prefix_length": 24, "mac_address": f"0a:58:ac:10:{third:02x}:{host:02x}",
            "gateway_ip": f"{base}.1", "defaultGateway": False, "mtu": 1400, "routes": [],
            **extra}


@pytest.fixture(scope="module")
def topology(central):
    central.nbctl("lr-add", "hp-router")
    for net, (base, third) in NETS.items():
        mac = f"0a:58:ac:10:{third:02x}:01"
        central.nbctl("ls-add", net)
        central.nbctl("lrp-add", "hp-router", f"rtr-{net}", mac, f"{base}.1/24")
        central.nbctl("lsp-add", net, f"rtr-{net}-ls", "--", "lsp-set-type", f"rtr-{net}-ls",
                      "router", "--", "lsp-set-addresses", f"rtr-{net}-ls", "router",
                      "--", "lsp-set-options", f"rtr-{net}-ls", f"router-port=rtr-{net}")
    return central


class HotplugAgent(AgentThread):
    """The node agent with its hot-plug converge (resync every second)."""

    def __init__(self, socket: Path, dp, pods: list[PodInfo] = (), resync: float = 1.0) -> None:
        super().__init__(socket, dp)
        self.pods = StaticPodSource(list(pods))  # what the API server holds when it starts
        self.reporter = MemoryReporter()
        self.resync = resync

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        await self.pods.start()
        self.ovs = await asyncio.to_thread(OvsPorts, self.dp.ovs_remote, self.dp.bridge)
        self.agent = Agent("node1", self.pods, self.ovs, host_netns=self.dp.netns, seal_key=SEAL_KEY)
        self.converger = Converger(self.agent, self.reporter, resync=self.resync,
                                   installed_timeout=30)
        await self.converger.start()
        server = await serve(self.agent, self.socket)
        self._ready.set()
        await self._stop.wait()
        server.close()
        await server.wait_closed()
        await self.converger.stop()
        self.ovs.close()

    def all_pods(self) -> list[PodInfo]:
        return list(self.pods._pods.values())

    def status(self, pod: HPod) -> dict[str, str]:
        return json.loads(self.reporter.status.get((NS, pod.name), "{}"))

    def events(self, pod: HPod, reason: str | None = None) -> list[tuple]:
        return [e for e in self.reporter.events
                if e[0] == f"{NS}/{pod.name}" and (reason is None or e[2] == reason)]

    def passes_after(self, pod: HPod, n: int, timeout: float = 30) -> None:
        """Wait until ``n`` more converge passes over the pod have completed (resyncs included)."""
        key = (NS, pod.name)
        start = self.converger.passes.get(key, 0)
        wait_for(lambda: self.converger.passes.get(key, 0) >= start + n, timeout,
                 f"{n} converge passes over {pod.name}")


@pytest.fixture
def hp_agent(workdir, dataplane) -> Iterator[HotplugAgent]:
    a = HotplugAgent(workdir / f"hp-{uuid.uuid4().hex[:6]}.sock", dataplane).start()
    yield a
    a.stop()


def wait_for(cond: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


CREATED: list[HPod] = []


@pytest.fixture(autouse=True)
def _release_ports() -> Iterator[None]:
    """Each test's pods' logical switch ports go at its end (their addresses are reused)."""
    yield
    while CREATED:
        CREATED.pop().set_ports([])


class HPod:
    """A pod (netns) whose result the test changes as the operator would."""

    def __init__(self, central, name: str, ifaces: list[dict], netns) -> None:
        CREATED.append(self)
        self.central = central
        self.name = name
        self.uid = str(uuid.uuid4())
        self.netns = netns
        self.container_id = uuid.uuid4().hex + uuid.uuid4().hex
        self.ifaces: list[dict] = []
        self.set_ports(ifaces)

    @property
    def args(self) -> str:
        return (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={NS};K8S_POD_NAME={self.name};"
                f"K8S_POD_INFRA_CONTAINER_ID={self.container_id};K8S_POD_UID={self.uid}")

    def set_ports(self, ifaces: list[dict]) -> None:
        """The operator's NB side: ports of added or changed interfaces, removed ones deleted."""
        keep = {e["interface"] for e in ifaces}
        for e in self.ifaces:
            if e["interface"] not in keep:
                self.central.nbctl("--if-exists", "lsp-del", port_name(NS, self.name, e["interface"]))
        for e in ifaces:
            ips = [c.split("/")[0] for c in e.get("ip_addresses", [e["ip_address"]])]
            lsp, addr = port_name(NS, self.name, e["interface"]), " ".join([e["mac_address"], *ips])
            self.central.nbctl("--may-exist", "lsp-add", e["name"], lsp, "--",
                               "lsp-set-addresses", lsp, addr, "--", "lsp-set-port-security", lsp, addr)
        self.ifaces = [dict(e) for e in ifaces]

    def annotations(self) -> dict[str, str]:
        return sealed(self.uid, {
            "ovnNetwork": json.dumps([{"name": i["name"], "interface": i["interface"]}
                                      for i in self.ifaces]),
            "ovnIfaceList": json.dumps(self.ifaces)})

    def info(self, **kw) -> PodInfo:
        return PodInfo(namespace=NS, name=self.name, uid=self.uid, annotations=self.annotations(),
                       node="node1", **kw)

    def change(self, agent: HotplugAgent, ifaces: list[dict], nb: bool = True) -> float:
        """The operator serves a change: NB ports, then the sealed result; returns when written."""
        if nb:
            self.set_ports(ifaces)
        else:
            self.ifaces = [dict(e) for e in ifaces]
        t0 = time.monotonic()
        agent.pods.put(self.info())
        return t0

    def cni(self, binaries, agent, command: str):
        return run_shim(binaries["shim"], agent.socket, command, container_id=self.container_id,
                        netns=self.netns.path, args=self.args)

    def links(self) -> dict[str, dict]:
        out = self.netns.run("ip", "-j", "addr", "show", check=True).stdout
        return {link["ifname"]: link for link in json.loads(out) if link["ifname"] != "lo"}

    def v4(self, ifname: str) -> list[str]:
        link = self.links().get(ifname) or {}
        return [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                if a["family"] == "inet"]


def ovs_ports(dataplane, pod: HPod) -> dict[str, str]:
    """interface -> OVS port of the pod's sandbox, read with ovs-vsctl (not the agent's IDL)."""
    out = json.loads(dataplane.vsctl("--format=json", "--columns=name,external_ids", "find",
                                     "Interface", f"external_ids:ovnvnet.io/sandbox={pod.container_id}"))
    ports = {}
    for name, ids in out["data"]:
        ids = dict(ids[1])
        ports[ids["ovnvnet.io/interface"]] = name
    return ports


def host_links(dataplane, pod: HPod) -> list[str]:
    """Host veth ends whose alias names the pod's container (what the agent plumbed)."""
    out = subprocess.run(["ip", "-n", dataplane.netns, "-j", "link", "show"], capture_output=True,
                         text=True, check=True).stdout
    return sorted(link["ifname"] for link in json.loads(out)
                  if pod.container_id in (link.get("ifalias") or ""))


def audit(hp_agent, dataplane, pod: HPod) -> list[str]:
    """The node audit (cni/hotplug.py leaks) for this pod's sandbox, plus any temporary veth."""
    return [p for p in leaks(dataplane.netns, hp_agent.ovs)
            if pod.container_id[:12] in p or "temporary" in p]


def stray_temp_links(dataplane) -> list[str]:
    out = subprocess.run(["ip", "-n", dataplane.netns, "-j", "link", "show"], capture_output=True,
                         text=True, check=True).stdout
    return [link["ifname"] for link in json.loads(out) if re.fullmatch(r"o[tp][0-9a-f]{13}", link["ifname"])]


def start(hp_agent, binaries, pod: HPod) -> None:
    hp_agent.pods.put(pod.info())
    r = pod.cni(binaries, hp_agent, "ADD")
    assert r.code == 0, (r.out, r.err)
    wait_for(lambda: hp_agent.status(pod) == {e["interface"]: "plumbed" for e in pod.ifaces}, 30,
             f"the status annotation of {pod.name} after ADD")


def plumbed(hp_agent, pod: HPod, names: list[str], timeout: float = 60) -> float:
    """Wait until the status says exactly ``names`` plumbed; returns when it did."""
    want = dict.fromkeys(names, "plumbed")
    wait_for(lambda: hp_agent.status(pod) == want, timeout,
             f"{pod.name} status {want} (now {hp_agent.status(pod)})")
    return time.monotonic()


class Pinger:
    """``ping -i 0.05`` in a pod throughout a change; counts what was sent and received."""

    def __init__(self, pod: HPod, dst: str, seconds: float = 8) -> None:
        count = int(seconds / 0.05)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", pod.netns.name, "ping", "-n", "-i", "0.05", "-W", "1",
             "-c", str(count), dst], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def result(self) -> tuple[int, int]:
        out, _ = self.proc.communicate(timeout=60)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        assert m, out
        return int(m.group(1)), int(m.group(2))


@pytest.fixture
def pair(topology, hp_agent, binaries, make_netns):
    """a: net0 on hp-c; b: net0 on hp-c and net1 on hp-d (the peer a reaches over each network)."""
    a = HPod(topology, f"a-{uuid.uuid4().hex[:5]}", [entry("net0", "hp-c", 10)], make_netns())
    b = HPod(topology, f"b-{uuid.uuid4().hex[:5]}",
             [entry("net0", "hp-c", 20), entry("net1", "hp-d", 20)], make_netns())
    for pod in (a, b):
        start(hp_agent, binaries, pod)
    yield a, b
    for pod in (a, b):
        pod.cni(binaries, hp_agent, "DEL")


def test_add_interface_to_running_pod(pair, hp_agent, binaries, dataplane):
    """net1 added to a running pod: plumbed, ovn-installed, pinging over hp-d; a ping over net0
    running throughout loses nothing; CHECK passes with the new set; an Event says it."""
    a, b = pair
    assert a.netns.ping("172.16.35.20")
    net0_index = a.links()["net0"]["ifindex"]
    pinger = Pinger(a, "172.16.35.20", seconds=6)
    time.sleep(1)
    t0 = a.change(hp_agent, [entry("net0", "hp-c", 10), entry("net1", "hp-d", 10)])
    t1 = plumbed(hp_agent, a, ["net0", "net1"])
    deadline = time.monotonic() + 10
    while not a.netns.ping("172.16.36.20", count=1):
        assert time.monotonic() < deadline, "no ping over the hot-plugged net1"
    t2 = time.monotonic()
    print(f"\nhot-plug: annotation to plumbed+ovn-installed {1000 * (t1 - t0):.0f} ms, "
          f"to the first ping answered {1000 * (t2 - t0):.0f} ms")
    sent, received = pinger.result()
    assert sent > 50 and received == sent, f"the ping over net0 lost {sent - received} of {sent}"
    assert a.v4("net1") == ["172.16.36.10/24"]
    assert a.links()["net1"]["address"] == "0a:58:ac:10:24:0a"
    assert a.links()["net0"]["ifindex"] == net0_index  # the other interface untouched
    assert set(ovs_ports(dataplane, a)) == {"net0", "net1"}
    added = hp_agent.events(a, "InterfaceAdded")
    assert len(added) == 1 and "net1 on network hp-d (172.16.36.10/24" in added[0][3], added
    r = a.cni(binaries, hp_agent, "CHECK")
    assert r.code == 0, (r.out, r.err)


def test_remove_interface_leaves_the_others(pair, hp_agent, binaries, dataplane):
    a, b = pair  # b has net0 and net1: remove net1
    assert b.netns.ping("172.16.35.10")
    net0 = b.links()["net0"]
    ports = ovs_ports(dataplane, b)
    b.change(hp_agent, [entry("net0", "hp-c", 20)])
    plumbed(hp_agent, b, ["net0"])
    assert set(b.links()) == {"net0"}, b.links()
    assert set(ovs_ports(dataplane, b)) == {"net0"}
    assert ports["net1"] not in dataplane.vsctl("list-ports", "br-int").split()
    assert host_links(dataplane, b) == [ports["net0"]]
    assert b.links()["net0"]["ifindex"] == net0["ifindex"]
    assert b.v4("net0") == ["172.16.35.20/24"]
    assert b.netns.ping("172.16.35.10")  # the other interface still carries traffic
    removed = hp_agent.events(b, "InterfaceRemoved")
    assert len(removed) == 1 and "net1" in removed[0][3], removed
    assert b.cni(binaries, hp_agent, "CHECK").code == 0


def test_changed_address_is_replumbed(pair, hp_agent, binaries, dataplane):
    a, b = pair
    a.change(hp_agent, [entry("net0", "hp-c", 10), entry("net1", "hp-d", 10)])
    plumbed(hp_agent, a, ["net0", "net1"])
    old_port = ovs_ports(dataplane, a)["net1"]
    moved = entry("net1", "hp-d", 11)
    a.change(hp_agent, [entry("net0", "hp-c", 10), moved])
    wait_for(lambda: len(hp_agent.events(a, "InterfaceAdded")) == 2, 30, "net1 added again")
    plumbed(hp_agent, a, ["net0", "net1"])
    assert a.v4("net1") == ["172.16.36.11/24"]
    assert a.links()["net1"]["address"] == "0a:58:ac:10:24:0b"
    assert ovs_ports(dataplane, a)["net1"] == old_port  # same (container, interface) name
    wait_for(lambda: a.netns.ping("172.16.36.20", count=1), 10, "a ping from the new address")
    assert [e[2] for e in hp_agent.events(a) if "net1" in e[3]][-2:] == \
        ["InterfaceRemoved", "InterfaceAdded"]
    assert a.cni(binaries, hp_agent, "CHECK").code == 0


def test_check_and_del_after_hotplug(pair, hp_agent, binaries, dataplane):
    """CHECK fails while the sandbox lags the result and passes once converged; DEL removes the
    hot-plugged interface with the rest (links, ports); the sandbox is then forgotten."""
    a, b = pair
    a.change(hp_agent, [entry("net0", "hp-c", 10), entry("net1", "hp-d", 10)])
    plumbed(hp_agent, a, ["net0", "net1"])
    assert a.cni(binaries, hp_agent, "CHECK").code == 0
    assert len(host_links(dataplane, a)) == 2
    r = a.cni(binaries, hp_agent, "DEL")
    assert r.code == 0, (r.out, r.err)
    assert ovs_ports(dataplane, a) == {}
    assert host_links(dataplane, a) == []
    assert set(a.links()) == set()
    # forgotten: a later change of the result plugs nothing into the old netns
    before = hp_agent.converger.passes.get((NS, a.name), 0)
    a.change(hp_agent, [entry("net0", "hp-c", 10), entry("net1", "hp-d", 11)])
    wait_for(lambda: hp_agent.converger.passes.get((NS, a.name), 0) > before, 30,
             "the watch's pass (the resync no longer sees the sandbox)")
    time.sleep(1.5)
    assert ovs_ports(dataplane, a) == {} and set(a.links()) == set()


def test_recreated_sandbox_gets_the_current_set(pair, hp_agent, binaries, dataplane, make_netns):
    a, b = pair
    a.change(hp_agent, [entry("net0", "hp-c", 10), entry("net1", "hp-d", 10)])
    plumbed(hp_agent, a, ["net0", "net1"])
    assert a.cni(binaries, hp_agent, "DEL").code == 0
    a.netns, a.container_id = make_netns(), uuid.uuid4().hex * 2  # the runtime's new sandbox
    r = a.cni(binaries, hp_agent, "ADD")
    assert r.code == 0, (r.out, r.err)
    assert set(a.links()) == {"net0", "net1"}
    assert a.netns.ping("172.16.36.20")


def test_agent_down_while_the_result_changes(topology, workdir, dataplane, binaries, make_netns):
    """The agent stopped; net1 added and then net0 changed meanwhile; a new agent process (same
    OVS, an empty memory) converges the sandbox from its OVS record at start."""
    first = HotplugAgent(workdir / "hp-down1.sock", dataplane).start()
    a = HPod(topology, f"down-{uuid.uuid4().hex[:5]}", [entry("net0", "hp-c", 30)], make_netns())
    try:
        start(first, binaries, a)
    finally:
        first.stop()
    a.set_ports([entry("net0", "hp-c", 31), entry("net1", "hp-d", 30)])
    second = HotplugAgent(workdir / "hp-down2.sock", dataplane, pods=[a.info()]).start()
    try:
        plumbed(second, a, ["net0", "net1"])
        assert a.v4("net0") == ["172.16.35.31/24"] and a.v4("net1") == ["172.16.36.30/24"]
        wait_for(lambda: a.netns.ping("172.16.36.1", count=1), 10, "a ping over net1")
        assert a.cni(binaries, second, "CHECK").code == 0
    finally:
        a.cni(binaries, second, "DEL")
        second.stop()
    assert ovs_ports(dataplane, a) == {} and host_links(dataplane, a) == []


def test_fast_flapping_ends_right_and_leaks_nothing(topology, hp_agent, binaries, dataplane,
                                                    make_netns):
    """net1 added and removed 50 times, a change every 20 ms (faster than a plug): the sandbox
    ends with exactly the last result, and nothing is left behind in the netns or OVS."""
    a = HPod(topology, f"flap-{uuid.uuid4().hex[:5]}", [entry("net0", "hp-c", 40)], make_netns())
    start(hp_agent, binaries, a)
    one, two = [entry("net0", "hp-c", 40)], [entry("net0", "hp-c", 40), entry("net1", "hp-d", 40)]
    a.set_ports(two)  # the NB side once (the operator's ports are not what is tested here)
    try:
        for i in range(50):
            a.change(hp_agent, two, nb=False)
            time.sleep(0.01)
            a.change(hp_agent, one, nb=False)
            time.sleep(0.01)
            if i == 49:
                a.change(hp_agent, two, nb=False)
        plumbed(hp_agent, a, ["net0", "net1"])
        hp_agent.passes_after(a, 2)
        assert set(a.links()) == {"net0", "net1"}
        assert set(ovs_ports(dataplane, a)) == {"net0", "net1"}
        assert len(host_links(dataplane, a)) == 2
        assert stray_temp_links(dataplane) == []
        assert audit(hp_agent, dataplane, a) == []
        assert a.cni(binaries, hp_agent, "CHECK").code == 0
        wait_for(lambda: a.netns.ping("172.16.36.1", count=1), 10, "a ping over net1")
        a.change(hp_agent, one, nb=False)
        plumbed(hp_agent, a, ["net0"])
        assert set(a.links()) == {"net0"} and set(ovs_ports(dataplane, a)) == {"net0"}
        assert len(host_links(dataplane, a)) == 1
        assert audit(hp_agent, dataplane, a) == []
    finally:
        a.cni(binaries, hp_agent, "DEL")


def test_forged_change_is_not_acted_on(pair, hp_agent, dataplane):
    """A result changed without the operator's seal (a user's edit, or a copy) plugs nothing,
    and says why in a Warning; the pod keeps its interfaces."""
    a, b = pair
    before = set(a.links())
    a.ifaces = [entry("net0", "hp-c", 10), entry("net1", "hp-d", 20)]  # b's address on hp-d
    forged = a.info()
    good = a.annotations()
    a.ifaces = [entry("net0", "hp-c", 10)]
    seal_of_old = sealed(a.uid, {"ovnNetwork": "[]", "ovnIfaceList": json.dumps(a.ifaces)})
    annotations = {**forged.annotations, SEAL_ANNOTATION: seal_of_old[SEAL_ANNOTATION]}
    assert annotations != good
    hp_agent.pods.put(PodInfo(namespace=NS, name=a.name, uid=a.uid, annotations=annotations,
                              node="node1"))
    hp_agent.passes_after(a, 3)
    assert set(a.links()) == before and set(ovs_ports(dataplane, a)) == {"net0"}
    refused = hp_agent.events(a, "HotplugRefused")
    assert refused and "not sealed by the operator" in refused[0][3], hp_agent.events(a)
    assert len(refused) == 1  # said once per value, not at every resync
    other = {**annotations, "ovnIfaceList": json.dumps([entry("net0", "hp-c", 10), entry("net2", "hp-d", 21)])}
    hp_agent.pods.put(PodInfo(namespace=NS, name=a.name, uid=a.uid, annotations=other, node="node1"))
    hp_agent.passes_after(a, 2)
    assert len(hp_agent.events(a, "HotplugRefused")) == 2  # another forged value: said again
    assert set(a.links()) == before and set(ovs_ports(dataplane, a)) == {"net0"}
    assert b.netns.ping("172.16.36.1")  # the victim's address is still b's alone


def test_terminating_pod_is_not_plugged(pair, hp_agent, dataplane):
    a, _ = pair
    a.set_ports([entry("net0", "hp-c", 10), entry("net1", "hp-d", 10)])
    hp_agent.pods.put(a.info(deleting=True))
    hp_agent.passes_after(a, 3)
    assert set(a.links()) == {"net0"} and set(ovs_ports(dataplane, a)) == {"net0"}
    assert not hp_agent.events(a, "InterfaceAdded")


def test_status_annotation_key():
    assert STATUS_ANNOTATION == "ovnvnet.io/plumbed"


def test_converge_is_serialised_with_cni_calls(pair, hp_agent, binaries, dataplane):
    """CHECK and DEL racing the converge of a change: each sees a whole state (CHECK passes
    with one of the two sets, or fails naming the missing net1, never an error), DEL leaves
    nothing."""
    a, _ = pair
    answers: list[tuple[int, str]] = []

    def checks() -> None:
        for _ in range(5):
            r = a.cni(binaries, hp_agent, "CHECK")
            answers.append((r.code, r.out))

    t = threading.Thread(target=checks)
    t.start()
    a.change(hp_agent, [entry("net0", "hp-c", 10), entry("net1", "hp-d", 10)])
    t.join(60)
    assert len(answers) == 5
    for code, out in answers:
        assert code == 0 or "net1" in json.loads(out)["details"], out
    plumbed(hp_agent, a, ["net0", "net1"])
    assert a.cni(binaries, hp_agent, "CHECK").code == 0
    a.change(hp_agent, [entry("net0", "hp-c", 10)])
    assert a.cni(binaries, hp_agent, "DEL").code == 0
    time.sleep(2)  # the watch's pass (behind DEL's lock) and a resync
    assert ovs_ports(dataplane, a) == {} and host_links(dataplane, a) == []


def test_failed_plug_is_reported_undone_and_retried(pair, hp_agent, dataplane):
    """net1 cannot be plugged (the netns holds a foreign net1): a Warning naming why (once, not
    at every resync), status failed, nothing half-plumbed; once the obstacle is gone the resync
    plugs it without any new trigger."""
    a, _ = pair
    a.netns.run("ip", "link", "add", "net1", "type", "veth", "peer", "name", "foreign1", check=True)
    a.change(hp_agent, [entry("net0", "hp-c", 10), entry("net1", "hp-d", 10)])
    wait_for(lambda: hp_agent.status(a) == {"net0": "plumbed", "net1": "failed"}, 30,
             f"net1 reported failed (now {hp_agent.status(a)})")
    hp_agent.passes_after(a, 3)
    failed = hp_agent.events(a, "InterfacePlugFailed")
    assert len(failed) == 1, failed
    assert "net1 already exists" in failed[0][3] and "not an ovnvnet veth" in failed[0][3]
    assert set(ovs_ports(dataplane, a)) == {"net0"} and len(host_links(dataplane, a)) == 1
    assert stray_temp_links(dataplane) == [] and audit(hp_agent, dataplane, a) == []
    a.netns.run("ip", "link", "del", "net1", check=True)
    plumbed(hp_agent, a, ["net0", "net1"])  # the resync's doing: the pod did not change
    assert a.v4("net1") == ["172.16.36.10/24"]


def test_audit_names_what_is_inconsistent(pair, hp_agent, dataplane):
    """The audit sees a host veth whose OVS port went (and the reverse), naming the container."""
    a, _ = pair
    assert audit(hp_agent, dataplane, a) == []
    port = ovs_ports(dataplane, a)["net0"]
    dataplane.vsctl("del-port", "br-int", port)
    want = [f"host veth {port} (container {a.container_id[:12]}, interface net0) has no OVS port"]
    wait_for(lambda: audit(hp_agent, dataplane, a) == want, 10, f"{want} (the agent's OVSDB replica)")
    subprocess.run(["ip", "-n", dataplane.netns, "link", "del", port], check=True)
    dataplane.vsctl("add-port", "br-int", port, "--", "set", "Interface", port,
                    "external_ids:ovnvnet.io/owner=ovnvnet", f"external_ids:ovnvnet.io/sandbox={a.container_id}",
                    "external_ids:ovnvnet.io/interface=net0")
    want = [f"OVS port {port} (container {a.container_id[:12]}, interface net0) has no host veth recorded for it"]
    wait_for(lambda: audit(hp_agent, dataplane, a) == want, 10, f"{want} (the agent's OVSDB replica)")
    dataplane.vsctl("del-port", "br-int", port)


def dual(interface: str, host: int) -> dict:
    """An interface on hp-d with IPv4 and IPv6 (the wire form of a dual-stack result)."""
    e = entry(interface, "hp-d", host)
    return {**e, "ip_addresses": [f"172.16.36.{host}/24", f"fd00:36::{host:x}/64"],
            "gateway_ips": ["172.16.36.1", "fd00:36::1"]}


def test_dual_stack_interface_hotplugged(topology, hp_agent, binaries, make_netns):
    """A dual-stack interface plugged into a running pod: both families at once (IPv6 without
    DAD, never tentative), ping -6 to a peer on the same switch."""
    a = HPod(topology, f"v6a-{uuid.uuid4().hex[:5]}", [entry("net0", "hp-c", 50)], make_netns())
    b = HPod(topology, f"v6b-{uuid.uuid4().hex[:5]}", [entry("net0", "hp-c", 51), dual("net1", 0x51)],
             make_netns())
    try:
        for pod in (a, b):
            start(hp_agent, binaries, pod)
        a.change(hp_agent, [entry("net0", "hp-c", 50), dual("net1", 0x50)])
        plumbed(hp_agent, a, ["net0", "net1"])
        link = a.links()["net1"]
        globals_v6 = [x for x in link["addr_info"] if x["family"] == "inet6" and x.get("scope") == "global"]
        assert [x["local"] for x in globals_v6] == ["fd00:36::50"]
        assert not any(x.get("tentative") for x in globals_v6)
        assert a.v4("net1") == ["172.16.36.80/24"]
        wait_for(lambda: a.netns.ping("fd00:36::51", "-6", count=1), 10, "ping -6 over the plugged net1")
        assert a.cni(binaries, hp_agent, "CHECK").code == 0
    finally:
        for pod in (a, b):
            pod.cni(binaries, hp_agent, "DEL")
