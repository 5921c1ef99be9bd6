import netaddr
import pytest

from ovnvnet.model.network import NetworkSpec, Route, SpecError, parse_network_spec, spec_conflicts

BASE = "172.16.25.0/24"


def spec(**kw):
    return parse_network_spec({"subnet": BASE, **kw})


def err(raw) -> str:
    with pytest.raises(SpecError) as exc:
        parse_network_spec(raw)
    return str(exc.value)


# -- parsing ------------------------------------------------------------------------------


def test_minimal_defaults():
    s = spec()
    assert s.subnet == netaddr.IPNetwork(BASE)
    assert str(s.subnet) == BASE
    assert s.gateway == netaddr.IPAddress("172.16.25.1")
    assert s.exclude == ()
    assert s.mtu is None
    assert s.routes == ()
    assert s.prefix_length == 24


def test_full_spec():
    s = spec(
        gateway="172.16.25.254",
        excludeIPs=["172.16.25.9", "172.16.25.10..172.16.25.20", "172.16.25.30..172.16.25.31"],
        mtu=1400,
        routes=[{"dst": "10.10.0.0/16", "gw": "172.16.25.254"}],
    )
    assert str(s.gateway) == "172.16.25.254"
    first = int(netaddr.IPAddress("172.16.25.0"))
    assert s.exclude == ((first + 9, first + 20), (first + 30, first + 31))
    assert s.mtu == 1400
    assert s.routes == (Route(dst="10.10.0.0/16", gw="172.16.25.254"),)


def test_exclusions_merge_and_sort():
    s = spec(excludeIPs=["172.16.25.50..172.16.25.60", "172.16.25.5", "172.16.25.55..172.16.25.70",
                         "172.16.25.6", "172.16.25.71"])
    first = int(netaddr.IPAddress("172.16.25.0"))
    assert s.exclude == ((first + 5, first + 6), (first + 50, first + 71))


def test_is_excluded():
    s = spec(excludeIPs=["172.16.25.5", "172.16.25.10..172.16.25.20"])
    first = int(netaddr.IPAddress("172.16.25.0"))
    got = [i for i in range(256) if s.is_excluded(first + i)]
    assert got == [5] + list(range(10, 21))
    assert not s.is_excluded(0)
    assert not s.is_excluded(2**32 - 1)


def test_to_dict_round_trip():
    s = spec(
        gateway="172.16.25.254",
        excludeIPs=["172.16.25.9", "172.16.25.10..172.16.25.20", "172.16.25.100"],
        mtu=9000,
        routes=[{"dst": "10.10.0.0/16", "gw": "172.16.25.3"}, {"dst": "0.0.0.0/0", "gw": "172.16.25.4"}],
    )
    d = s.to_dict()
    assert d == {
        "subnet": BASE,
        "gateway": "172.16.25.254",
        "excludeIPs": ["172.16.25.9..172.16.25.20", "172.16.25.100"],
        "mtu": 9000,
        "routes": [{"dst": "10.10.0.0/16", "gw": "172.16.25.3"}, {"dst": "0.0.0.0/0", "gw": "172.16.25.4"}],
    }
    assert parse_network_spec(d) == s
    minimal = spec().to_dict()
    assert minimal == {"subnet": BASE, "gateway": "172.16.25.1", "excludeIPs": []}
    assert parse_network_spec(minimal) == spec()


def test_spec_is_hashable_and_comparable():
    assert spec(mtu=1500) == spec(mtu=1500)
    assert spec(mtu=1500) != spec(mtu=1400)
    assert len({spec(), spec()}) == 1
    assert isinstance(spec(), NetworkSpec)


def test_whitespace_tolerated():
    assert spec(gateway=" 172.16.25.2 ").gateway == netaddr.IPAddress("172.16.25.2")


@pytest.mark.parametrize("prefix", [8, 16, 24, 29, 30])
def test_prefixes_allowed(prefix):
    s = parse_network_spec({"subnet": f"10.0.0.0/{prefix}"})
    assert s.prefix_length == prefix


# -- every message ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, message",
    [
        ({}, 'spec.subnet is required, e.g. "172.16.25.0/24"'),
        ({"subnet": 5}, 'spec.subnet must be a string like "172.16.25.0/24", got number'),
        ({"subnet": ["a"]}, 'spec.subnet must be a string like "172.16.25.0/24", got list'),
        ({"subnet": "172.16.25.1/24"},
         'spec.subnet "172.16.25.1/24" has host bits set; did you mean 172.16.25.0/24?'),
        ({"subnet": "172.16.25.0"},
         'spec.subnet "172.16.25.0" has no prefix length; write it as a CIDR like "172.16.25.0/24"'),
        ({"subnet": "172.16.2526.0/24"}, 'spec.subnet "172.16.2526.0/24" is not a valid IPv4 CIDR'),
        ({"subnet": "10.0.0.0/33"}, 'spec.subnet "10.0.0.0/33" is not a valid IPv4 CIDR'),
        ({"subnet": "010.0.0.0/8"}, 'spec.subnet "010.0.0.0/8" is not a valid IPv4 CIDR'),
        ({"subnet": "fd00::/129"}, 'spec.subnet "fd00::/129" is not a valid IPv6 CIDR'),
        ({"subnet": "10.0.0.0/31"},
         "spec.subnet 10.0.0.0/31 is too small: a /31 leaves fewer than 2 usable addresses; "
         "use /30 or shorter"),
        ({"subnet": "10.0.0.0/32"},
         "spec.subnet 10.0.0.0/32 is too small: a /32 leaves fewer than 2 usable addresses; "
         "use /30 or shorter"),
        ({"subnet": BASE, "gateway": "10.0.0.1"},
         "spec.gateway 10.0.0.1 is outside subnet 172.16.25.0/24"),
        ({"subnet": BASE, "gateway": "172.16.25.0"},
         "spec.gateway 172.16.25.0 is the network address of subnet 172.16.25.0/24"),
        ({"subnet": BASE, "gateway": "172.16.25.255"},
         "spec.gateway 172.16.25.255 is the broadcast address of subnet 172.16.25.0/24"),
        ({"subnet": BASE, "gateway": "x"}, 'spec.gateway "x" is not a valid IPv4 address'),
        ({"subnet": BASE, "gateway": 7},
         'spec.gateway must be a string like "172.16.25.1", got number'),
        ({"subnet": BASE, "excludeIPs": "172.16.25.5"},
         "spec.excludeIPs must be a list of addresses, got string"),
        ({"subnet": BASE, "excludeIPs": [5]},
         'spec.excludeIPs[0] must be a string like "172.16.25.9" or '
         '"172.16.25.10..172.16.25.20", got number'),
        ({"subnet": BASE, "excludeIPs": ["172.16.25.5", "nope"]},
         'spec.excludeIPs[1] "nope" is not an address or an "a..b" range'),
        ({"subnet": BASE, "excludeIPs": ["172.16.25.5..172.16.25.6..172.16.25.7"]},
         'spec.excludeIPs[0] "172.16.25.5..172.16.25.6..172.16.25.7" is not an address or an '
         '"a..b" range'),
        ({"subnet": BASE, "excludeIPs": ["172.16.25.9..172.16.25.3"]},
         'spec.excludeIPs[0] "172.16.25.9..172.16.25.3": start 172.16.25.9 is after end 172.16.25.3'),
        ({"subnet": BASE, "excludeIPs": ["10.0.0.1"]},
         "spec.excludeIPs[0] 10.0.0.1 is outside subnet 172.16.25.0/24"),
        ({"subnet": BASE, "excludeIPs": ["172.16.25.250..172.16.26.3"]},
         "spec.excludeIPs[0] 172.16.26.3 is outside subnet 172.16.25.0/24"),
        ({"subnet": BASE, "mtu": "1500"}, 'spec.mtu must be an integer, got string "1500"'),
        ({"subnet": BASE, "mtu": True}, "spec.mtu must be an integer, got boolean true"),
        ({"subnet": BASE, "mtu": 1500.0}, "spec.mtu must be an integer, got number 1500.0"),
        ({"subnet": BASE, "mtu": 100}, "spec.mtu 100 is out of range 576..9216"),
        ({"subnet": BASE, "mtu": 9217}, "spec.mtu 9217 is out of range 576..9216"),
        ({"subnet": BASE, "routes": {"dst": "x"}},
         'spec.routes must be a list of {"dst": CIDR, "gw": address}, got object'),
        ({"subnet": BASE, "routes": ["10.0.0.0/8"]},
         'spec.routes[0] must be an object {"dst": CIDR, "gw": address}, got string'),
        ({"subnet": BASE, "routes": [{"gw": "172.16.25.1"}]},
         'spec.routes[0].dst is required, e.g. "10.10.0.0/16"'),
        ({"subnet": BASE, "routes": [{"dst": 10, "gw": "172.16.25.1"}]},
         'spec.routes[0].dst must be a string like "10.10.0.0/16", got number'),
        ({"subnet": BASE, "routes": [{"dst": "10.0.0.0", "gw": "172.16.25.1"}]},
         'spec.routes[0].dst "10.0.0.0" is not a valid IPv4 CIDR'),
        ({"subnet": BASE, "routes": [{"dst": "10.0.0.1/8", "gw": "172.16.25.1"}]},
         'spec.routes[0].dst "10.0.0.1/8" has host bits set; did you mean 10.0.0.0/8?'),
        ({"subnet": BASE, "routes": [{"dst": "10.0.0.0/8"}]},
         "spec.routes[0].gw is required (an address inside 172.16.25.0/24)"),
        ({"subnet": BASE, "routes": [{"dst": "10.0.0.0/8", "gw": "10.0.0.1"}]},
         "spec.routes[0].gw 10.0.0.1 is outside subnet 172.16.25.0/24"),
        ({"subnet": BASE, "routes": [{"dst": "10.0.0.0/8", "gw": "172.16.25.1"},
                                     {"dst": "10.0.0.0/8", "gw": "172.16.25.2"}]},
         "spec.routes[1].dst 10.0.0.0/8 is listed more than once"),
        ("not a dict", "spec must be an object, got string"),
        (None, "spec must be an object, got null"),
    ],
)
def test_messages(raw, message):
    assert err(raw) == message


def test_too_many_entries():
    assert err({"subnet": BASE, "excludeIPs": ["172.16.25.5"] * 5000}).startswith(
        "spec.excludeIPs has 5000 entries; at most 4096"
    )
    assert err({"subnet": BASE, "routes": [{}] * 300}).startswith(
        "spec.routes has 300 entries; at most 256"
    )


def test_huge_and_weird_values_are_bounded():
    msg = err({"subnet": "1" * 10_000_000})
    assert len(msg) < 200 and msg.startswith('spec.subnet "111')
    msg = err({"subnet": "\ud800/24"})  # lone surrogate must not break the message
    msg.encode("utf-8")
    assert err({"subnet": BASE, "mtu": 10**5000}) == "spec.mtu (huge number) is out of range 576..9216"


def test_unhashable_or_odd_mapping_gives_spec_error():
    class Boom(dict):
        def get(self, *a, **k):
            raise KeyError("boom")

    assert err(Boom(subnet=BASE)) == "spec is malformed: KeyError"


# -- spec_conflicts -----------------------------------------------------------------------


def test_no_conflicts_when_nothing_held():
    assert spec_conflicts(spec(gateway="172.16.25.5"), {}, spec()) == []
    new = parse_network_spec({"subnet": "10.1.0.0/24"})
    assert spec_conflicts(new, {}, spec()) == []


def test_no_conflict_for_compatible_change():
    held = {"172.16.25.3": "default/a", "172.16.25.4": "default/b"}
    new = spec(mtu=1400, excludeIPs=["172.16.25.100..172.16.25.200"])
    assert spec_conflicts(new, held, spec()) == []


def test_subnet_change_strands():
    held = {"172.16.25.5": "default/b", "172.16.25.3": "default/a", "172.16.25.4": "default/c"}
    new = parse_network_spec({"subnet": "10.1.0.0/24"})
    assert spec_conflicts(new, held, spec()) == [
        "subnet change 172.16.25.0/24 -> 10.1.0.0/24 would strand 3 allocations "
        "(default/a, default/b, default/c)"
    ]


def test_subnet_change_many_holders_and_singular():
    held = {f"172.16.25.{i}": f"default/p{i:02d}" for i in range(2, 12)}
    new = parse_network_spec({"subnet": "10.1.0.0/24"})
    (msg,) = spec_conflicts(new, held, spec())
    assert msg == (
        "subnet change 172.16.25.0/24 -> 10.1.0.0/24 would strand 10 allocations "
        "(default/p02, default/p03, default/p04, default/p05, default/p06, ...)"
    )
    (msg,) = spec_conflicts(new, {"172.16.25.3": "default/a"}, spec())
    assert "would strand 1 allocation (default/a)" in msg


def test_outside_new_subnet_without_old():
    held = {"172.16.25.3": "default/a"}
    new = parse_network_spec({"subnet": "10.1.0.0/24"})
    assert spec_conflicts(new, held, None) == [
        "172.16.25.3 held by default/a is outside subnet 10.1.0.0/24"
    ]


def test_gateway_conflict():
    held = {"172.16.25.5": "default/pod-a"}
    assert spec_conflicts(spec(gateway="172.16.25.5"), held, spec()) == [
        "gateway 172.16.25.5 is held by default/pod-a"
    ]


def test_exclusion_conflict():
    held = {"172.16.25.7": "default/pod-b", "172.16.25.8": "default/pod-c"}
    new = spec(excludeIPs=["172.16.25.7"])
    assert spec_conflicts(new, held, spec()) == ["excludeIPs covers 172.16.25.7 held by default/pod-b"]


def test_several_kinds_at_once_and_capped():
    held = {f"172.16.25.{i}": f"default/p{i}" for i in range(2, 30)}
    new = spec(gateway="172.16.25.2", excludeIPs=["172.16.25.3..172.16.25.29"])
    msgs = spec_conflicts(new, held, spec())
    assert msgs[0] == "gateway 172.16.25.2 is held by default/p2"
    assert msgs[1] == "excludeIPs covers 172.16.25.3 held by default/p3"
    assert len(msgs) == 1 + 10 + 1
    assert msgs[-1] == "... and 17 more"


def test_conflicts_ignore_garbage_keys():
    assert spec_conflicts(spec(), {"not-an-ip": "x/y"}, spec()) == []
