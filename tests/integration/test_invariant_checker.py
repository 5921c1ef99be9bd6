"""The invariant checker (`harness.kit.invariant_now`) can fail: on one real stack, each case
corrupts exactly one thing the invariant is about (a pod annotation, an NB row, an IPBlock, a
status counter) with the operator stopped (so nothing repairs it), sees the checker fail naming
that thing, restores it, and sees the checker pass again.

The world: networks A (routed, MTU 1400, the default network for legacy pods), B (routed) and C
(`routed: false`, no pods); pod `dyn` on A and B, pod `static` with a static address and MAC on A,
and the legacy pod `old` (no `ovnNetwork`) answered in `ovn` on A."""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from harness.stack import Stack
from tests.integration.conftest import OPERATOR_ENV
from tests.integration.kit import GROUP, VERSION, Cluster, check_invariant, invariant_now, wait_until

STATIC_MAC = "0a:00:00:00:00:05"


@dataclass
class World:
    cluster: Cluster
    ns: str
    a: str
    b: str
    c: str
    prefix: str   # A's first three octets

    @property
    def nets(self) -> list[str]:
        return [self.a, self.b, self.c]

    def nbctl(self, *args: str) -> str:
        return self.cluster.stack.nbctl(*args)

    def lsp_uuid(self, name: str) -> str:
        return self.nbctl("--bare", "--columns=_uuid", "find", "Logical_Switch_Port", f"name={name}").strip()

    def set_request(self, pod: str, request: str) -> None:
        self.cluster.core.patch_namespaced_pod(pod, self.ns, {"metadata": {"annotations": {"ovnNetwork": request}}})

    def port(self, pod: str, iface: str) -> str:
        return f"{self.ns}_{pod}_{iface}"


@pytest.fixture(scope="module")
def world(stack: Stack) -> World:
    cluster = Cluster(stack)
    tag = uuid.uuid4().hex[:6]
    a, b, c = f"inv-a-{tag}", f"inv-b-{tag}", f"inv-c-{tag}"
    prefix = "10.250.1"
    ns = f"inv-{tag}"
    cluster.ensure_namespace(ns)
    cluster.create_vnet(a, f"{prefix}.0/24", mtu=1400, excludeIPs=[f"{prefix}.200..{prefix}.254"])
    cluster.create_vnet(b, "10.250.2.0/24")
    cluster.create_vnet(c, "10.250.3.0/24", routed=False)
    stack.stop_operator()
    env = {**OPERATOR_ENV, "OVNVNET_DEFAULT_NETWORK": a}
    stack.start_operator(env)
    w = World(cluster, ns, a, b, c, prefix)
    try:
        for n in w.nets:
            cluster.wait_ready(n)
        cluster.create_pod(ns, "dyn", [{"name": a, "interface": "net0"}, {"name": b, "interface": "net1"}])
        cluster.create_pod(ns, "static", [{"name": a, "interface": "net0", "ip_address": f"{prefix}.5",
                                           "mac_address": STATIC_MAC.upper()}])
        cluster.core.create_namespaced_pod(ns, {"metadata": {"name": "old"}, "spec": {
            "nodeName": "node-1", "containers": [{"name": "c", "image": "busybox"}]}})
        cluster.iface_list(ns, "dyn")
        cluster.iface_list(ns, "static")
        wait_until(lambda: "gateway_ip" in cluster.annotations(ns, "old").get("ovn", ""), what="legacy result")
        # the baseline holds, legacy port included (not counted as extra)
        counts = check_invariant(cluster, w.nets)
        assert counts == {"pods": 3, "ports": 4}, counts
        stack.stop_operator()   # nothing repairs a corruption from here on
        yield w
    finally:
        if not stack.running("operator"):
            stack.start_operator(env)
        for p in ("dyn", "static", "old", "late"):
            cluster.delete_pod(ns, p, wait=False)
        wait_until(lambda: all(not cluster.allocations(n) for n in w.nets), 30, what="released")
        stack.stop_operator()
        stack.start_operator(OPERATOR_ENV)
        for n in w.nets:
            cluster.delete_vnet(n)


# Each case corrupts one thing and returns (what the failure must say, how to restore it).
Case = Callable[[World], "tuple[str, Callable[[], None]]"]


def network_name_differs_from_request(w: World):
    raw = w.cluster.annotations(w.ns, "dyn")["ovnNetwork"]
    req = json.loads(raw)
    req[0]["name"], req[1]["name"] = req[1]["name"], req[0]["name"]
    w.set_request("dyn", json.dumps(req))
    return "dyn: result differs from the request", lambda: w.set_request("dyn", raw)


def static_ip_differs_from_request(w: World):
    raw = w.cluster.annotations(w.ns, "static")["ovnNetwork"]
    w.set_request("static", raw.replace(f"{w.prefix}.5", f"{w.prefix}.6"))
    return "static: result differs from the request", lambda: w.set_request("static", raw)


def static_mac_differs_from_request(w: World):
    raw = w.cluster.annotations(w.ns, "static")["ovnNetwork"]
    w.set_request("static", raw.replace(STATIC_MAC.upper(), "0a:00:00:00:00:06"))
    return "static: result differs from the request", lambda: w.set_request("static", raw)


def live_request_without_answer(w: World):
    w.cluster.create_pod(w.ns, "late", [{"name": w.a, "interface": "net0"}])
    return "late: a live pod with a request and neither", lambda: w.cluster.delete_pod(w.ns, "late")


def legacy_result_differs_from_port(w: World):
    raw = w.cluster.annotations(w.ns, "old")["ovn"]
    result = json.loads(raw)
    result["ip_address"] = f"{w.prefix}.150/24"

    def set_ovn(value: str) -> None:
        w.cluster.core.patch_namespaced_pod("old", w.ns, {"metadata": {"annotations": {"ovn": value}}})
    set_ovn(json.dumps(result))
    return f"port {w.ns}_old: addresses", lambda: set_ovn(raw)


def port_on_the_wrong_switch(w: World):
    port = w.port("dyn", "net0")
    u = w.lsp_uuid(port)
    w.nbctl("remove", "Logical_Switch", w.a, "ports", u, "--", "add", "Logical_Switch", w.b, "ports", u)
    return f"port {port}: held by switch", \
        lambda: w.nbctl("remove", "Logical_Switch", w.b, "ports", u, "--", "add", "Logical_Switch", w.a, "ports", u)


def pod_uid_on_the_port(w: World):
    port = w.port("static", "net0")
    uid = w.cluster.pod(w.ns, "static").metadata.uid
    w.nbctl("set", "Logical_Switch_Port", port, "external_ids:ovnvnet.io/pod-uid=00000000-dead")
    return f"port {port}: external_ids", \
        lambda: w.nbctl("set", "Logical_Switch_Port", port, f"external_ids:ovnvnet.io/pod-uid={uid}")


def second_address_on_a_port(w: World):
    port = w.port("dyn", "net1")
    extra = '"0a:00:00:00:00:99 10.250.2.99"'
    for col in ("addresses", "port_security"):   # both: the old check compared only these two
        w.nbctl("add", "Logical_Switch_Port", port, col, extra)

    def restore() -> None:
        for col in ("addresses", "port_security"):
            w.nbctl("remove", "Logical_Switch_Port", port, col, extra)
    return f"port {port}: addresses", restore


def switch_mtu(w: World):
    w.nbctl("set", "Logical_Switch", w.a, "other_config:mtu=9000")
    return f"{w.a}: switch other_config mtu", lambda: w.nbctl("set", "Logical_Switch", w.a, "other_config:mtu=1400")


def switch_missing(w: World):
    w.nbctl("ls-del", w.c)

    def restore() -> None:
        w.nbctl("ls-add", w.c, "--", "set", "Logical_Switch", w.c, "external_ids:ovnvnet.io/owner=ovnvnet",
                f"external_ids:ovnvnet.io/network={w.c}")
    return f"{w.c}: no owned logical switch", restore


def router_port_address(w: World):
    lrp = f"rtr-{w.b}"
    w.nbctl("set", "Logical_Router_Port", lrp, "networks=10.250.2.254/24")
    return f"{w.b}: router port networks", \
        lambda: w.nbctl("set", "Logical_Router_Port", lrp, "networks=10.250.2.1/24")


def router_port_mac(w: World):
    lrp = f"rtr-{w.b}"
    mac = w.nbctl("get", "Logical_Router_Port", lrp, "mac").strip()
    w.nbctl("set", "Logical_Router_Port", lrp, 'mac="0a:00:00:00:00:77"')
    return f"{w.b}: router port mac", lambda: w.nbctl("set", "Logical_Router_Port", lrp, f"mac={mac}")


def switch_router_port_peer(w: World):
    lsp = f"rtr-{w.b}-ls"
    w.nbctl("set", "Logical_Switch_Port", lsp, "options:router-port=rtr-elsewhere")
    return f"{w.b}: switch port {lsp} is not a router port", \
        lambda: w.nbctl("set", "Logical_Switch_Port", lsp, f"options:router-port=rtr-{w.b}")


def isolated_network_gets_a_router_port(w: World):
    lrp = f"rtr-{w.c}"
    w.nbctl("lrp-add", "ovnvnet-router", lrp, "0a:58:0a:fa:03:01", "10.250.3.1/24")
    return f"{w.c}: routed: false but has a router port", lambda: w.nbctl("lrp-del", lrp)


def same_address_in_two_blocks(w: World):
    block = w.cluster.ipblocks(w.a)[0]
    dup = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "IPBlock",
           "metadata": {"name": block["metadata"]["name"] + "-dup", "labels": block["metadata"]["labels"]},
           "spec": block["spec"], "allocations": {f"{w.prefix}.5": block["allocations"][f"{w.prefix}.5"]}}
    w.cluster.custom.create_cluster_custom_object(GROUP, VERSION, "ipblocks", dup)
    return f"{w.a}: {w.prefix}.5 recorded in two IPBlocks", \
        lambda: w.cluster.custom.delete_cluster_custom_object(GROUP, VERSION, "ipblocks", dup["metadata"]["name"])


def available_ips(w: World):
    st = w.cluster.vnet(w.a)["status"]

    def patch(n: int) -> None:
        w.cluster.custom.patch_cluster_custom_object_status(GROUP, VERSION, "virtualnetworks", w.a,
                                                            {"status": {"availableIPs": n}})
    patch(st["availableIPs"] + 1)
    return f"{w.a}: availableIPs", lambda: patch(st["availableIPs"])


CASES: list[Case] = [
    network_name_differs_from_request, static_ip_differs_from_request, static_mac_differs_from_request,
    live_request_without_answer, legacy_result_differs_from_port, port_on_the_wrong_switch,
    pod_uid_on_the_port, second_address_on_a_port, switch_mtu, switch_missing, router_port_address,
    router_port_mac, switch_router_port_peer, isolated_network_gets_a_router_port,
    same_address_in_two_blocks, available_ips,
]


@pytest.mark.parametrize("corrupt", CASES, ids=[c.__name__ for c in CASES])
def test_checker_fails_on_one_corruption(world: World, corrupt: Case) -> None:
    invariant_now(world.cluster, world.nets)   # sound before
    match, restore = corrupt(world)
    try:
        with pytest.raises(AssertionError) as exc:
            invariant_now(world.cluster, world.nets)
        assert match in str(exc.value), f"the checker failed for another reason: {exc.value}"
    finally:
        restore()
    invariant_now(world.cluster, world.nets)   # sound again: the case changed only what it restored
