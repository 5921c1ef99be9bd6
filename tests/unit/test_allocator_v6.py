"""IPv6 and dual-stack allocation (issue 13): the per-family allocator on a /64, /120 and /126, the
static rules with their messages, the MAC rules, and the dual-stack interface's atomicity."""
import tracemalloc

import netaddr
import pytest

from ovnvnet.ipam.allocator import (
    AddressHeld,
    AllocationError,
    Holder,
    NetworkAllocator,
    NetworkExhausted,
    SubnetAllocator,
)
from ovnvnet.model.names import mac_from_ip
from ovnvnet.model.network import parse_network_spec

NET = "six"


def v6(subnet="fd00:1::/64", cursor=None, **kw) -> SubnetAllocator:
    return SubnetAllocator(NET, parse_network_spec({"subnet": subnet, **kw}), cursor=cursor)


def net(**spec) -> NetworkAllocator:
    return NetworkAllocator(NET, parse_network_spec(spec))


def holder(n, interface="net0", mac="") -> Holder:
    return Holder(pod=f"default/pod-{n}", pod_uid=f"uid-{n}", interface=interface, mac=mac)


def ip(text) -> netaddr.IPAddress:
    return netaddr.IPAddress(text)


def raises(fn, *args, kind=AllocationError) -> str:
    with pytest.raises(kind) as exc:
        fn(*args)
    return str(exc.value)


# -- one family: IPv6 ---------------------------------------------------------------------

def test_slash64_counters_are_exact_ints():
    a = v6()
    assert a.capacity == 2**64 - 2          # hosts ::1..::ffff:ffff:ffff:ffff minus the gateway
    assert isinstance(a.available, int) and a.available == 2**64 - 2
    got = [a.allocate(holder(i)) for i in range(3)]
    assert got == [ip("fd00:1::2"), ip("fd00:1::3"), ip("fd00:1::4")]
    assert a.used == 3 and a.available == 2**64 - 5
    a.release(got[0])
    assert a.available == 2**64 - 4
    assert a.allocate(holder(9)) == ip("fd00:1::5")   # the cursor moves forward: a freed address is reused last


def test_slash126_last_address_is_a_host_and_exhausts():
    a = v6("fd00:1::/126")
    assert a.capacity == 2
    assert [a.allocate(holder(i)) for i in range(2)] == [ip("fd00:1::2"), ip("fd00:1::3")]
    assert raises(a.allocate, holder(3), kind=NetworkExhausted) == "network six (fd00:1::/126) has no free address"


def test_cursor_wraps_in_slash120():
    a = v6("fd00:1::/120", cursor=int(ip("fd00:1::fe")))
    assert a.allocate(holder(1)) == ip("fd00:1::ff")
    assert a.allocate(holder(2)) == ip("fd00:1::2")


@pytest.mark.parametrize("addr, message", [
    ("fd00:1::", "ip_address fd00:1:: is the subnet-router anycast address of six"),
    ("fd00:1::1", "ip_address fd00:1::1 is the gateway of six"),
    ("fd00:1::9", "ip_address fd00:1::9 is excluded on six"),
    ("fd00:2::9", "ip_address fd00:2::9 is outside six (fd00:1::/64)"),
    ("10.0.0.9", "ip_address 10.0.0.9 is outside six (fd00:1::/64)"),
])
def test_static_ipv6_rules(addr, message):
    a = v6(excludeIPs=["fd00:1::8..fd00:1::a"])
    assert raises(a.reserve, ip(addr), holder(1)) == message


def test_static_ipv6_held_and_last_address():
    a = v6()
    a.reserve(ip("fd00:1::ffff:ffff:ffff:ffff"), holder(1))     # the last address: a host in IPv6
    assert raises(a.check_static, "fd00:1::ffff:ffff:ffff:ffff", "uid-2", "net0", kind=AddressHeld) == (
        "ip_address fd00:1::ffff:ffff:ffff:ffff on six is held by default/pod-1")
    a.check_static("FD00:1:0::FFFF:FFFF:FFFF:FFFF", "uid-1", "net0")   # its own holder; any spelling


def test_memory_tracks_held_addresses_not_the_subnet():
    a = v6()
    for i in range(0, 2000, 2):
        a.reserve(ip(f"fd00:1::{i + 2:x}:0"), holder(i))
    assert len(a._free) <= a.used + 2
    tracemalloc.start()
    try:
        b = v6()
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(b._free) == 1
    assert size < 64 * 1024, size   # a fresh /64: one free run, no per-address state


def test_ipv6_derived_mac_from_low_four_bytes_and_collision_skips():
    a = v6()
    first = a.allocate(holder(1))
    assert a.holder_of(first).mac == "0a:58:00:00:00:02" == mac_from_ip(first)
    # another interface took, as its static MAC, the one derived from the next address
    a.reserve(ip("fd00:1::1:0:0:9"), holder(2, mac="0a:58:00:00:00:03"))
    got = a.allocate(holder(3))
    assert got == ip("fd00:1::4") and a.holder_of(got).mac == "0a:58:00:00:00:04"


def test_static_ipv6_whose_derived_mac_is_held_is_refused_as_held():
    a = v6()
    a.reserve(ip("fd00:1::5"), holder(1))
    message = raises(a.reserve_derived, ip("fd00:1::1:0:0:5"), holder(2), kind=AddressHeld)
    assert message == ("mac_address 0a:58:00:00:00:05 (derived from ip_address fd00:1::1:0:0:5) on six is "
                       "held by default/pod-1; set mac_address to use another")
    a.reserve(ip("fd00:1::1:0:0:5"), holder(2, mac="0a:00:00:00:00:05"))   # with its own MAC it is fine


# -- dual-stack -----------------------------------------------------------------------------

DUAL = {"subnets": ["10.1.0.0/24", "fd00:1::/64"]}


def test_dual_stack_interface_gets_both_families_with_one_mac():
    a = net(**DUAL)
    ips = a.attach(holder(1))
    assert ips == (ip("10.1.0.2"), ip("fd00:1::2"))
    h4, h6 = a.holder_of(ips[0]), a.holder_of(ips[1])
    assert h4 == h6 and h4.mac == "0a:58:0a:01:00:02"   # derived from the IPv4 address
    assert a.find_all("uid-1", "net0") == ips and a.find("uid-1", "net0") == ips[0]
    assert a.attach(holder(1)) == ips                    # idempotent
    assert a.used == 1 and a.available == 253 - 1
    assert set(a.holders()) == {"10.1.0.2", "fd00:1::2"}
    assert a.release_interface("uid-1", "net0") == ips and a.holders() == {}


def test_dual_stack_static_for_one_family_dynamic_for_the_other():
    a = net(**DUAL)
    assert a.attach(holder(1), [ip("fd00:1::77")]) == (ip("10.1.0.2"), ip("fd00:1::77"))
    assert a.attach(holder(2), [ip("10.1.0.50"), ip("fd00:1::78")]) == (ip("10.1.0.50"), ip("fd00:1::78"))
    assert a.holder_of("fd00:1::78").mac == "0a:58:0a:01:00:32"


def test_dual_stack_is_atomic_both_or_neither():
    a = net(**DUAL)
    a.attach(holder(1), [ip("fd00:1::5")])
    before = a.holders()
    message = raises(a.attach, holder(2), [ip("fd00:1::5")], kind=AddressHeld)
    assert message == "ip_address fd00:1::5 on six is held by default/pod-1"
    assert a.holders() == before and a.find_all("uid-2", "net0") == ()   # the IPv4 address was given back
    assert a.family(4).available == 252 and a.family(4).cursor == int(ip("10.1.0.3"))
    # the IPv6 family exhausted: the IPv4 address taken first is released too
    small = net(subnets=["10.2.0.0/24", "fd00:2::/126"])
    small.attach(holder(1))
    small.attach(holder(2))
    with pytest.raises(NetworkExhausted):
        small.attach(holder(3))
    assert small.find_all("uid-3", "net0") == () and small.used == 2


def test_static_of_a_family_the_network_lacks():
    a = net(subnet="10.1.0.0/24")
    assert raises(a.attach, holder(1), [ip("fd00:1::5")]) == (
        "ip_address fd00:1::5 is an IPv6 address, but network six has no IPv6 subnet (10.1.0.0/24)")
    assert raises(a.check_static, ip("fd00:1::5"), "uid-1", "net0").startswith("ip_address fd00:1::5 is an IPv6")
    assert a.holders() == {}


def test_ipv6_only_network_allocator():
    a = net(subnet="fd00:3::/64")
    (got,) = a.attach(holder(1))
    assert got == ip("fd00:3::2") and a.holder_of(got).mac == "0a:58:00:00:00:02"
    assert a.used == 1 and a.available == 2**64 - 3


def test_with_spec_keeps_both_families():
    a = net(**DUAL)
    ips = a.attach(holder(1))
    b = a.with_spec(parse_network_spec({**DUAL, "mtu": 1400}))
    assert b.find_all("uid-1", "net0") == ips and b.family(6).cursor == a.family(6).cursor
