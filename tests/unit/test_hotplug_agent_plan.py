"""The hot-plug plan (cni/hotplug.py): what turns the plumbed interfaces into the sealed result."""

from __future__ import annotations

from ovnvnet.cni.hotplug import plan, sandboxes
from ovnvnet.cni.ovs import ENTRY_KEY, SANDBOX_KEY, entry_digest
from ovnvnet.model.annotation import InterfaceResult


def iface(name: str, ip: str = "10.0.0.5", network: str = "blue") -> InterfaceResult:
    return InterfaceResult(interface=name, network=network, ip=ip, prefix_length=24,
                           mac="0a:58:0a:00:00:05", gateway="10.0.0.1", default_gateway=False,
                           mtu=1400, routes=())


def ids(i: InterfaceResult) -> dict[str, str]:
    return {ENTRY_KEY: entry_digest(i)}


def test_unchanged_is_left_alone():
    p = plan([iface("net0")], {"net0": ids(iface("net0"))})
    assert p.empty and not p.replaced


def test_added_removed_and_changed():
    p = plan([iface("net0"), iface("net1", "10.0.0.6"), iface("net2")],
             {"net0": ids(iface("net0")), "net1": ids(iface("net1")), "net9": ids(iface("net9"))})
    assert p.remove == ("net9", "net1")  # removed first, then the changed ones
    assert [i.interface for i in p.add] == ["net1", "net2"]
    assert p.replaced == frozenset({"net1"})


def test_any_value_change_changes_the_digest():
    base = iface("net0")
    for other in (iface("net0", "10.0.0.7"), iface("net0", network="red"),
                  InterfaceResult(**{**base.__dict__, "mtu": 1500}),
                  InterfaceResult(**{**base.__dict__, "default_gateway": True})):
        assert entry_digest(other) != entry_digest(base)


def test_port_without_digest_counts_as_matching():
    assert plan([iface("net0")], {"net0": {}}).empty


def test_sandboxes_group_ports_by_container():
    rows = [("p1", {SANDBOX_KEY: "b", "ovnvnet.io/interface": "net0", "ovnvnet.io/netns": "/n/b"}),
            ("p2", {SANDBOX_KEY: "a", "ovnvnet.io/interface": "net0"}),
            ("p3", {SANDBOX_KEY: "b", "ovnvnet.io/interface": "net1"})]
    got = sandboxes(rows)
    assert [s.container_id for s in got] == ["a", "b"]
    assert set(got[1].ports) == {"net0", "net1"} and got[1].netns == "/n/b"
