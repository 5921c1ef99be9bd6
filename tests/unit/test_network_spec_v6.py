"""VirtualNetwork specs of IPv6 and dual-stack networks (issue 13): parsing, every refusal with its
message, the per-family excludeIPs/routes, to_dict round trips and spec_conflicts per family."""
import netaddr
import pytest

from ovnvnet.model.network import Route, SpecError, parse_network_spec, spec_conflicts, subnets_overlap

V4, V6 = "10.1.0.0/24", "fd00:1::/64"


def err(raw) -> str:
    with pytest.raises(SpecError) as exc:
        parse_network_spec(raw)
    return str(exc.value)


def test_ipv6_only_defaults():
    s = parse_network_spec({"subnet": "FD00:1::/64"})
    assert s.versions == (6,) and not s.dual_stack
    assert str(s.subnet) == V6 and s.gateway == netaddr.IPAddress("fd00:1::1")
    assert s.primary.host_first == s.first + 1 and s.primary.host_last == s.last   # no broadcast
    assert s.to_dict() == {"subnet": V6, "gateway": "fd00:1::1", "excludeIPs": []}


def test_dual_stack_full():
    s = parse_network_spec({
        "subnets": [V6, V4], "gateways": ["fd00:1::fe", "10.1.0.254"],
        "excludeIPs": ["fd00:1::5", "10.1.0.5..10.1.0.9", "fd00:1::10..fd00:1::20"],
        "routes": [{"dst": "fd10::/48", "gw": "fd00:1::fe"}, {"dst": "10.10.0.0/16", "gw": "10.1.0.254"}],
    })
    assert s.versions == (4, 6) and s.dual_stack
    v4, v6 = s.family(4), s.family(6)
    assert v4 is not None and v6 is not None
    assert str(v4.gateway) == "10.1.0.254" and str(v6.gateway) == "fd00:1::fe"
    assert s.gateway == v4.gateway and s.subnet == v4.subnet          # the primary family is IPv4
    f6 = int(netaddr.IPAddress("fd00:1::"))
    assert v6.exclude == ((f6 + 5, f6 + 5), (f6 + 0x10, f6 + 0x20))
    assert v4.routes == (Route("10.10.0.0/16", "10.1.0.254"),)
    assert v6.routes == (Route("fd10::/48", "fd00:1::fe"),)
    assert s.routes == v4.routes + v6.routes
    d = s.to_dict()
    assert d == {"subnets": [V4, V6], "gateways": ["10.1.0.254", "fd00:1::fe"],
                 "excludeIPs": ["10.1.0.5..10.1.0.9", "fd00:1::5", "fd00:1::10..fd00:1::20"],
                 "routes": [{"dst": "10.10.0.0/16", "gw": "10.1.0.254"},
                            {"dst": "fd10::/48", "gw": "fd00:1::fe"}]}
    assert parse_network_spec(d) == s


def test_dual_stack_default_gateways_and_single_gateway_of_one_family():
    s = parse_network_spec({"subnets": [V4, V6], "gateway": "fd00:1::9"})
    assert str(s.family(4).gateway) == "10.1.0.1" and str(s.family(6).gateway) == "fd00:1::9"


def test_ipv4_spec_unchanged():
    s = parse_network_spec({"subnet": V4, "gateway": "10.1.0.1"})
    assert s.to_dict() == {"subnet": V4, "gateway": "10.1.0.1", "excludeIPs": []}
    assert s.versions == (4,)


@pytest.mark.parametrize("prefix", [48, 64, 112, 120, 126])
def test_ipv6_prefixes_allowed(prefix):
    assert parse_network_spec({"subnet": f"fd00:1::/{prefix}"}).prefix_length == prefix


def test_ipv6_last_address_is_usable_but_not_the_anycast():
    s = parse_network_spec({"subnet": "fd00:1::/126", "gateway": "fd00:1::3"})
    assert str(s.gateway) == "fd00:1::3"


@pytest.mark.parametrize("raw, message", [
    ({"subnet": V4, "subnets": [V6]},
     "spec.subnet and spec.subnets are exclusive; list every family's subnet in spec.subnets"),
    ({"subnets": [V4, "10.2.0.0/24"]},
     "spec.subnets lists two IPv4 subnets (10.1.0.0/24, 10.2.0.0/24); at most one per family is allowed"),
    ({"subnets": [V6, "fd00:2::/64"]},
     "spec.subnets lists two IPv6 subnets (fd00:1::/64, fd00:2::/64); at most one per family is allowed"),
    ({"subnets": []}, "spec.subnets has 0 entries; list one subnet per family (1 or 2)"),
    ({"subnets": [V4, V6, V6]}, "spec.subnets has 3 entries; list one subnet per family (1 or 2)"),
    ({"subnets": V4}, 'spec.subnets must be a list like ["10.1.0.0/24", "fd00:1::/64"], got string'),
    ({"subnets": [V4, 7]}, 'spec.subnets[1] must be a string like "172.16.25.0/24", got number'),
    ({"subnet": "fd00:1::/127"},
     "spec.subnet fd00:1::/127 is too small: a /127 leaves no host after the subnet-router anycast "
     "address and the gateway; use /126 or shorter"),
    ({"subnet": "fd00:1::/128"},
     "spec.subnet fd00:1::/128 is too small: a /128 leaves no host after the subnet-router anycast "
     "address and the gateway; use /126 or shorter"),
    ({"subnet": "fd00::/47"},
     "spec.subnet fd00::/47 is too large: an IPv6 network is one L2 segment, at most a /48 (use /64 "
     "for a typical one)"),
    ({"subnets": [V4, "fd00:1::1/64"]},
     'spec.subnets[1] "fd00:1::1/64" has host bits set; did you mean fd00:1::/64?'),
    ({"subnet": "fd00:1::"}, 'spec.subnet "fd00:1::" has no prefix length; write it as a CIDR like '
     '"fd00:1::/64"'),
    ({"subnet": "fd00:1::g/64"}, 'spec.subnet "fd00:1::g/64" is not a valid IPv6 CIDR'),
    ({"subnet": V4, "gateway": "fd00:1::1"},
     "spec.gateway fd00:1::1 is an IPv6 address, but subnet 10.1.0.0/24 is IPv4"),
    ({"subnet": V6, "gateway": "10.1.0.1"},
     "spec.gateway 10.1.0.1 is an IPv4 address, but subnet fd00:1::/64 is IPv6"),
    ({"subnet": V6, "gateway": "fd00:2::1"}, "spec.gateway fd00:2::1 is outside subnet fd00:1::/64"),
    ({"subnet": V6, "gateway": "fd00:1::"},
     "spec.gateway fd00:1:: is the subnet-router anycast address of subnet fd00:1::/64"),
    ({"subnets": [V4, V6], "gateways": ["10.1.0.1", "10.1.0.2"]},
     "spec.gateways lists two IPv4 gateways (10.1.0.1, 10.1.0.2); at most one per family is allowed"),
    ({"subnets": [V4, V6], "gateways": ["10.1.0.1", "fd00:2::1"]},
     "spec.gateways[1] fd00:2::1 is outside subnet fd00:1::/64"),
    ({"subnets": [V4], "gateways": ["fd00:1::1"]},
     "spec.gateways[0] fd00:1::1 is an IPv6 address, but subnet 10.1.0.0/24 is IPv4"),
    ({"subnets": [V4, V6], "gateway": "10.1.0.1", "gateways": ["10.1.0.1"]},
     "spec.gateway and spec.gateways are exclusive; list every family's gateway in spec.gateways"),
    ({"subnets": [V4, V6], "gateways": "10.1.0.1"},
     'spec.gateways must be a list like ["10.1.0.1", "fd00:1::1"], got string'),
    ({"subnet": V4, "excludeIPs": ["fd00:1::5"]},
     "spec.excludeIPs[0] fd00:1::5 is an IPv6 address, but the network has no IPv6 subnet (10.1.0.0/24)"),
    ({"subnets": [V4, V6], "excludeIPs": ["fd00:2::5"]},
     "spec.excludeIPs[0] fd00:2::5 is outside subnet fd00:1::/64"),
    ({"subnets": [V4, V6], "excludeIPs": ["10.1.0.5..fd00:1::5"]},
     'spec.excludeIPs[0] "10.1.0.5..fd00:1::5": start and end are of different families'),
    ({"subnet": V4, "routes": [{"dst": "fd10::/48", "gw": "fd00:1::1"}]},
     "spec.routes[0].dst fd10:: is an IPv6 address, but the network has no IPv6 subnet (10.1.0.0/24)"),
    ({"subnets": [V4, V6], "routes": [{"dst": "fd10::/48", "gw": "10.1.0.1"}]},
     "spec.routes[0].gw 10.1.0.1 is an IPv4 address, but subnet fd00:1::/64 is IPv6"),
    ({"subnets": [V4, V6], "routes": [{"dst": "fd10::/48"}]},
     "spec.routes[0].gw is required (an address inside fd00:1::/64)"),
    ({"subnets": [V4, V6], "routes": [{"dst": "fd10::1/48", "gw": "fd00:1::1"}]},
     'spec.routes[0].dst "fd10::1/48" has host bits set; did you mean fd10::/48?'),
])
def test_messages(raw, message):
    assert err(raw) == message


def test_overlap_per_family():
    a = parse_network_spec({"subnets": [V4, V6]})
    b = parse_network_spec({"subnet": "fd00:1::/48"})
    c = parse_network_spec({"subnets": ["10.2.0.0/24", "fd00:2::/64"]})
    assert subnets_overlap(a, b) == (netaddr.IPNetwork(V6), netaddr.IPNetwork("fd00:1::/48"))
    assert subnets_overlap(a, c) is None
    assert subnets_overlap(b, parse_network_spec({"subnet": V4})) is None


def test_conflicts_per_family():
    old = parse_network_spec({"subnets": [V4, V6]})
    held = {"10.1.0.2": "ns/a", "fd00:1::2": "ns/a", "fd00:1::3": "ns/b", "10.1.0.3": "ns/b"}
    assert spec_conflicts(old, held, old) == []
    moved = parse_network_spec({"subnets": [V4, "fd00:9::/64"]})
    assert spec_conflicts(moved, held, old) == [
        "subnet change fd00:1::/64 -> fd00:9::/64 would strand 2 allocations (ns/a, ns/b)"]
    excl = parse_network_spec({"subnets": [V4, V6], "excludeIPs": ["fd00:1::3"], "gateways": ["10.1.0.1", "fd00:1::2"]})
    assert spec_conflicts(excl, held, old) == ["gateway fd00:1::2 is held by ns/a",
                                              "excludeIPs covers fd00:1::3 held by ns/b"]
    only4 = parse_network_spec({"subnet": V4})
    assert spec_conflicts(only4, held, old) == [
        "removing the IPv6 subnet would strand 2 allocations (ns/a, ns/b)"]
    assert spec_conflicts(old, {"10.1.0.2": "ns/a"}, only4) == [
        "adding IPv6 subnet fd00:1::/64 while 1 pod holds addresses would leave their interfaces "
        "without IPv6 (ns/a); delete them first"]
    assert spec_conflicts(old, {}, only4) == []


@pytest.mark.parametrize("spec, ok", [
    ({"subnet": "fd00:1::/64", "mtu": 1279}, False),
    ({"subnets": ["10.1.0.0/24", "fd00:1::/64"], "mtu": 1200}, False),
    ({"subnet": "fd00:1::/64", "mtu": 1280}, True),
    ({"subnet": "10.1.0.0/24", "mtu": 1200}, True),     # IPv4 alone keeps its own lower bound
])
def test_ipv6_network_mtu_is_at_least_1280(spec, ok):
    """IPv6 needs links of at least 1280 bytes (RFC 8200): the agent refuses such an interface at
    ADD, so the network is refused first, where its author looks."""
    if ok:
        assert parse_network_spec(spec).mtu == spec["mtu"]
    else:
        with pytest.raises(SpecError, match=r"spec.mtu \d+ is below 1280.*IPv6"):
            parse_network_spec(spec)
