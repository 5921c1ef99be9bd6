import json

import netaddr
import pytest

from ovnvnet.model.annotation import (
    MAX_INTERFACES,
    AnnotationError,
    InterfaceRequest,
    InterfaceResult,
    decode_iface_list,
    encode_iface_list,
    parse_ovn_network,
)
from ovnvnet.model.network import Route


def err(raw) -> str:
    with pytest.raises(AnnotationError) as exc:
        parse_ovn_network(raw if isinstance(raw, str) else json.dumps(raw))
    return str(exc.value)


def one(**kw):
    entry = {"name": "ovn-ls-25", "interface": "net0", **kw}
    return parse_ovn_network(json.dumps([entry]))[0]


# -- requests -----------------------------------------------------------------------------


def test_seed_example():
    raw = json.dumps([
        {"name": "ovn-ls-25", "interface": "net0"},
        {"name": "ovn-ls-26", "interface": "net1", "ip_address": "172.16.26.3",
         "mac_address": "0a:00:00:00:00:15"},
    ])
    assert parse_ovn_network(raw) == [
        InterfaceRequest(network="ovn-ls-25", interface="net0", ip=None, mac=None),
        InterfaceRequest(network="ovn-ls-26", interface="net1",
                         ip=netaddr.IPAddress("172.16.26.3"), mac="0a:00:00:00:00:15"),
    ]


def test_upstream_camel_case():
    r = one(ipAddress="172.16.25.9", macAddress="0A-00-00-00-00-16", defaultGateway="true",
            netType="provider")
    assert r.ip == netaddr.IPAddress("172.16.25.9")
    assert r.mac == "0a:00:00:00:00:16"
    assert r.default_gateway is True


def test_snake_case_wins_over_camel_case():
    r = one(ip_address="172.16.25.9", ipAddress="172.16.25.10")
    assert r.ip == netaddr.IPAddress("172.16.25.9")


@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), ("true", True), ("false", False), ("True", True),
    ("FALSE", False), (None, False),
])
def test_default_gateway_forms(value, expected):
    assert one(defaultGateway=value).default_gateway is expected


def test_dynamic_forms():
    assert one(ip_address="").ip is None
    assert one(ip_address=None).ip is None
    assert one(mac_address="").mac is None
    assert one().default_gateway is False


def test_ip_prefix_is_stripped():
    assert one(ip_address="172.16.25.9/24").ip == netaddr.IPAddress("172.16.25.9")
    assert one(ip_address="172.16.25.9/99").ip == netaddr.IPAddress("172.16.25.9")


@pytest.mark.parametrize("mac", ["0a:00:00:00:00:15", "0A:00:00:00:00:15", "0a-00-00-00-00-15",
                                 "0a0000000015"])
def test_mac_normalized(mac):
    assert one(mac_address=mac).mac == "0a:00:00:00:00:15"


def test_ten_interfaces_allowed_and_order_kept():
    entries = [{"name": f"n{i}", "interface": f"net{i}"} for i in range(MAX_INTERFACES)]
    reqs = parse_ovn_network(json.dumps(entries))
    assert [r.interface for r in reqs] == [f"net{i}" for i in range(10)]


def test_valid_interface_and_network_names():
    assert one(interface="eth9").interface == "eth9"
    assert one(interface="A" * 14 + "1").interface == "A" * 14 + "1"
    assert parse_ovn_network('[{"name":"a.b-c.d","interface":"x1"}]')[0].network == "a.b-c.d"
    assert parse_ovn_network(json.dumps([{"name": "a" * 253, "interface": "x1"}]))


def test_same_network_twice_is_fine():
    reqs = parse_ovn_network(json.dumps([
        {"name": "ovn-ls-25", "interface": "net0"}, {"name": "ovn-ls-25", "interface": "net1"},
    ]))
    assert len(reqs) == 2


# -- every message ------------------------------------------------------------------------


@pytest.mark.parametrize("raw, message", [
    ("[", "ovnNetwork is not valid JSON: Expecting value at line 1 column 2"),
    ("", "ovnNetwork is not valid JSON: Expecting value at line 1 column 1"),
    ('[{"name": "a",}]',
     "ovnNetwork is not valid JSON: Expecting property name enclosed in double quotes at line 1 "
     "column 15"),
    ("[NaN]", "ovnNetwork is not valid JSON: NaN is not allowed"),
    ("[" * 50000, "ovnNetwork is not valid JSON: nested too deeply"),
    ('{"name": "a"}', "ovnNetwork must be a JSON list of interfaces, got object"),
    ('"x"', "ovnNetwork must be a JSON list of interfaces, got string"),
    ("3", "ovnNetwork must be a JSON list of interfaces, got number"),
    ("null", "ovnNetwork must be a JSON list of interfaces, got null"),
    ("true", "ovnNetwork must be a JSON list of interfaces, got boolean"),
    ("[]", "ovnNetwork lists no interfaces"),
    ([{"name": "a", "interface": "n0"}, {"name": "b", "interface": "n1"}, 3],
     "ovnNetwork[2] must be an object"),
    ([[]], "ovnNetwork[0] must be an object"),
    ([{"interface": "net0"}], 'ovnNetwork[0]: "name" (the network) is required'),
    ([{"name": "", "interface": "net0"}], 'ovnNetwork[0]: "name" (the network) is required'),
    ([{"name": 5, "interface": "net0"}], 'ovnNetwork[0]: "name" must be a string, got number'),
    ([{"name": "a"}], 'ovnNetwork[0]: "interface" is required'),
    ([{"name": "a", "interface": ["x"]}], 'ovnNetwork[0]: "interface" must be a string, got list'),
    ([{"name": "a", "interface": "eth"}], 'interface "eth": name must end with a digit 0-9'),
    ([{"name": "a", "interface": "et-h1"}], 'interface "et-h1": name must be alphanumeric'),
    ([{"name": "a", "interface": "n\u00e91"}], 'interface "n\u00e91": name must be alphanumeric'),
    ([{"name": "a", "interface": "net\u0661"}],
     'interface "net\u0661": name must be alphanumeric'),
    ([{"name": "a", "interface": "abcdefghijklmnop1"}],
     'interface "abcdefghijklmnop1": name is longer than 15 characters'),
    ([{"name": "a", "interface": "net1"}, {"name": "b", "interface": "eth1"}],
     'interface "net1" and "eth1" end with the same digit 1; each interface needs its own digit'),
    ([{"name": "a", "interface": "net1"}, {"name": "b", "interface": "net1"}],
     'interface "net1" is listed more than once'),
    ([{"name": f"n{i}", "interface": f"net{i % 10}"} for i in range(11)],
     "ovnNetwork lists 11 interfaces; at most 10 are supported"),
    ([{"name": "a", "interface": "net1", "ip_address": "172.16.2526.3"}],
     'ip_address "172.16.2526.3" is not a valid IPv4 address'),
    ([{"name": "a", "interface": "net1", "ipAddress": "fd00::1"}],
     'ipAddress "fd00::1" is not a valid IPv4 address'),
    ([{"name": "a", "interface": "net1", "ip_address": 17}],
     'ovnNetwork[0]: "ip_address" must be a string, got number'),
    ([{"name": "a", "interface": "net1", "mac_address": "zz"}],
     'mac_address "zz" is not a valid MAC address'),
    ([{"name": "a", "interface": "net1", "mac_address": "0a:00:00:00:00:1524"}],
     'mac_address "0a:00:00:00:00:1524" is not a valid MAC address'),
    ([{"name": "a", "interface": "net1", "macAddress": "0a:00-00:00:00:15"}],
     'macAddress "0a:00-00:00:00:15" is not a valid MAC address'),
    ([{"name": "a", "interface": "net1", "mac_address": "01:00:00:00:00:01"}],
     'mac_address "01:00:00:00:00:01" is a multicast address'),
    ([{"name": "a", "interface": "net1", "mac_address": "ff:ff:ff:ff:ff:ff"}],
     'mac_address "ff:ff:ff:ff:ff:ff" is a multicast address'),
    ([{"name": "a", "interface": "net1", "mac_address": "00:00:00:00:00:00"}],
     'mac_address "00:00:00:00:00:00" is not a valid MAC address (all zeros)'),
    ([{"name": "a", "interface": "net1", "mac_address": False}],
     'ovnNetwork[0]: "mac_address" must be a string, got boolean'),
    ([{"name": "a", "interface": "net0", "defaultGateway": True},
      {"name": "b", "interface": "net1", "defaultGateway": "true"}],
     "more than one interface sets defaultGateway (net0, net1)"),
    ([{"name": "a", "interface": "net0", "defaultGateway": "yes"}],
     'ovnNetwork[0]: "defaultGateway" must be true or false, got "yes"'),
    ([{"name": "a", "interface": "net0", "defaultGateway": 1}],
     'ovnNetwork[0]: "defaultGateway" must be true or false, got 1'),
    ([{"name": "Foo_", "interface": "eth1"}], 'network name "Foo_" is not a valid VirtualNetwork name'),
    ([{"name": "-a", "interface": "eth1"}], 'network name "-a" is not a valid VirtualNetwork name'),
    ([{"name": "a..b", "interface": "eth1"}], 'network name "a..b" is not a valid VirtualNetwork name'),
    ([{"name": "a" * 254, "interface": "eth1"}],
     'network name "' + "a" * 64 + '..." is not a valid VirtualNetwork name'),
    ([{"name": "a", "interface": "net0", "ip_address": "10.0.0.5"},
      {"name": "a", "interface": "net1", "ip_address": "10.0.0.5/24"}],
     "ip_address 10.0.0.5 is requested twice on network a (net0, net1)"),
    ([{"name": "a", "interface": "net0", "mac_address": "0a:00:00:00:00:01"},
      {"name": "a", "interface": "net1", "mac_address": "0A:00:00:00:00:01"}],
     "mac_address 0a:00:00:00:00:01 is requested twice on network a (net0, net1)"),
])
def test_messages(raw, message):
    assert err(raw) == message


def test_same_static_ip_on_different_networks_is_fine():
    reqs = parse_ovn_network(json.dumps([
        {"name": "a", "interface": "net0", "ip_address": "10.0.0.5"},
        {"name": "b", "interface": "net1", "ip_address": "10.0.0.5"},
    ]))
    assert len(reqs) == 2


def test_size_limit_up_front():
    msg = err("[" + " " * 70000 + "]")
    assert msg == "ovnNetwork is too large (70002 characters); at most 65536 bytes are allowed"
    # multi-byte characters count as bytes
    assert "too large" in err('["' + "\u00e9" * 40000 + '"]')


def test_not_a_string():
    with pytest.raises(AnnotationError, match="ovnNetwork must be a string, got bytes"):
        parse_ovn_network(b"[]")  # type: ignore[arg-type]
    with pytest.raises(AnnotationError, match="got NoneType"):
        parse_ovn_network(None)  # type: ignore[arg-type]


def test_lone_surrogate_message_is_encodable():
    msg = err('[{"name": "a", "interface": "\\ud800"}]')
    msg.encode("utf-8")
    assert msg.startswith('interface "')


def test_huge_int_in_json():
    assert "not valid JSON" in err("[" + "1" * 5000 + "]")


# -- results ------------------------------------------------------------------------------


RESULTS = [
    InterfaceResult(interface="net0", network="ovn-ls-25", ip="172.16.25.3", prefix_length=24,
                    mac="0a:58:ac:10:19:03", gateway="172.16.25.1", default_gateway=False,
                    mtu=None, routes=()),
    InterfaceResult(interface="net1", network="ovn-ls-26", ip="172.16.26.3", prefix_length=24,
                    mac="0a:00:00:00:00:15", gateway="172.16.26.1", default_gateway=True,
                    mtu=1400, routes=(Route(dst="10.10.0.0/16", gw="172.16.26.254"),)),
]


def test_encode_wire_format():
    wire = json.loads(encode_iface_list(RESULTS))
    assert wire == [
        {"interface": "net0", "name": "ovn-ls-25", "ip_address": "172.16.25.3",
         "prefix_length": 24, "mac_address": "0a:58:ac:10:19:03", "gateway_ip": "172.16.25.1",
         "defaultGateway": False, "routes": []},
        {"interface": "net1", "name": "ovn-ls-26", "ip_address": "172.16.26.3",
         "prefix_length": 24, "mac_address": "0a:00:00:00:00:15", "gateway_ip": "172.16.26.1",
         "defaultGateway": True, "mtu": 1400,
         "routes": [{"dst": "10.10.0.0/16", "gw": "172.16.26.254"}]},
    ]


def test_round_trip():
    assert decode_iface_list(encode_iface_list(RESULTS)) == RESULTS
    assert decode_iface_list(encode_iface_list([])) == []


def test_decode_accepts_null_mtu_and_missing_routes():
    raw = json.dumps([{"interface": "net0", "name": "a", "ip_address": "10.0.0.2",
                       "prefix_length": 24, "mac_address": "0A:58:0A:00:00:02",
                       "gateway_ip": "10.0.0.1", "defaultGateway": "false", "mtu": None}])
    (r,) = decode_iface_list(raw)
    assert r.mtu is None and r.routes == () and r.mac == "0a:58:0a:00:00:02"


@pytest.mark.parametrize("raw, fragment", [
    ("nope", "ovnIfaceList is not valid JSON"),
    ("{}", "ovnIfaceList must be a JSON list, got object"),
    ("[1]", "ovnIfaceList[0] must be an object"),
    ('[{"interface": "net0"}]', 'ovnIfaceList[0]: "name" must be a non-empty string'),
    ("[" * 100000, "too large"),
    ("[" * 60000, "nested too deeply"),
])
def test_decode_garbage(raw, fragment):
    with pytest.raises(AnnotationError, match=fragment.replace("[", r"\[")):
        decode_iface_list(raw)


@pytest.mark.parametrize("field, value", [
    ("ip_address", "1.2.3"), ("prefix_length", "24"), ("prefix_length", 33),
    ("prefix_length", True), ("mac_address", "x"), ("gateway_ip", 5), ("mtu", "1500"),
    ("routes", {}), ("routes", [1]), ("routes", [{"dst": "1.2.3.0/24"}]),
    ("defaultGateway", "maybe"), ("interface", "eth"),
])
def test_decode_rejects_bad_fields(field, value):
    item = json.loads(encode_iface_list(RESULTS[:1]))[0]
    item[field] = value
    with pytest.raises(AnnotationError):
        decode_iface_list(json.dumps([item]))
