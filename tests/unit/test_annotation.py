import json
import re

import netaddr
import pytest

from ovnvnet.model import names
from ovnvnet.model.annotation import (
    LEGACY_ANNOTATION,
    MAX_ANNOTATION_BYTES,
    MAX_INTERFACES,
    OPERATOR_ANNOTATIONS,
    RESULT_ANNOTATION,
    SEAL_ANNOTATION,
    AnnotationError,
    InterfaceRequest,
    InterfaceResult,
    SealError,
    SealKeyError,
    check_seal,
    decode_iface_list,
    decode_legacy_result,
    encode_iface_list,
    encode_legacy_result,
    is_legacy_result,
    operator_written,
    parse_legacy_request,
    parse_ovn_network,
    read_seal_key,
    result_key,
    seal,
    sealed_annotations,
    sealed_result,
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
    ([{"name": "a", "interface": "net1", "ipAddress": "fd00::1%eth0"}],
     'ipAddress "fd00::1%eth0" is not a valid IPv6 address'),
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


# -- the legacy `ovn` annotation ----------------------------------------------------------


LEGACY = InterfaceResult(interface=names.LEGACY_INTERFACE, network="default-net", ip="10.66.0.5",
                         prefix_length=24, mac="0a:58:0a:42:00:05", gateway="10.66.0.1",
                         default_gateway=True, mtu=1400,
                         routes=(Route(dst="10.99.0.0/16", gw="10.66.0.1"),))


def legacy_err(raw) -> str:
    with pytest.raises(AnnotationError) as exc:
        parse_legacy_request(raw, "default-net")
    return str(exc.value)


def test_legacy_request_forms():
    dyn = parse_legacy_request(None, "default-net")
    assert dyn == InterfaceRequest(network="default-net", interface=names.LEGACY_INTERFACE, ip=None,
                                   mac=None, default_gateway=True)
    assert parse_legacy_request("", "default-net") == dyn
    assert parse_legacy_request("{}", "default-net") == dyn
    static = parse_legacy_request(json.dumps({"ip_address": "10.66.0.9/24", "mac_address": "0A-00-00-00-00-09",
                                              "unknown": [1, 2]}), "default-net")
    assert static.ip == netaddr.IPAddress("10.66.0.9") and static.mac == "0a:00:00:00:00:09"
    # a result (someone else's, or a copy) is not a request: dynamic
    assert parse_legacy_request(encode_legacy_result(LEGACY, "zeta", "victim"), "default-net") == dyn


@pytest.mark.parametrize("raw, message", [
    (json.dumps({"ip_address": "10.1.2.300"}), 'ip_address "10.1.2.300" is not a valid IPv4 address'),
    (json.dumps({"ip_address": 5}), 'ovn: "ip_address" must be a string, got number'),
    (json.dumps({"ip_address": ["10.0.0.1"]}), 'ovn: "ip_address" must be a string, got list'),
    (json.dumps({"mac_address": "01:00:00:00:00:01"}), 'mac_address "01:00:00:00:00:01" is a multicast address'),
    (json.dumps({"mac_address": {}}), 'ovn: "mac_address" must be a string, got object'),
    ("[]", "ovn must be a JSON object, got list"),
    ("nope", "ovn is not valid JSON: Expecting value at line 1 column 1"),
    ('{"ip_address": NaN}', "ovn is not valid JSON: NaN is not allowed"),
    ("[" * 2000, "ovn is not valid JSON: nested too deeply"),
    ("[" * 70000, "ovn is too large (70000 characters); at most 65536 bytes are allowed"),
])
def test_legacy_request_messages(raw, message):
    assert legacy_err(raw) == message


def test_legacy_deep_nesting_is_not_a_result():
    """Issue 9.3: 2,000 `[` stopped the operator's start (RecursionError out of the rebuild)."""
    assert is_legacy_result("[" * 2000) is False
    assert is_legacy_result("[" * 200_000) is False
    assert is_legacy_result(None) is False and is_legacy_result(b"{}") is False


def test_legacy_result_round_trip_and_wire_form():
    raw = encode_legacy_result(LEGACY, "ns1", "pod1")
    assert json.loads(raw) == {"ip_address": "10.66.0.5/24", "mac_address": "0a:58:0a:42:00:05",
                               "gateway_ip": "10.66.0.1", "name": "default-net", "port": "ns1_pod1",
                               "mtu": 1400, "routes": [{"dst": "10.99.0.0/16", "gw": "10.66.0.1"}]}
    assert is_legacy_result(raw)
    assert decode_legacy_result(raw) == LEGACY


def test_legacy_result_port_is_never_read():
    value = json.loads(encode_legacy_result(LEGACY, "alpha", "evil"))
    value["port"] = "zeta_victim_net1"
    decoded = decode_legacy_result(json.dumps(value))
    assert decoded == LEGACY   # nothing in the decoded result can name a port
    assert names.port_name("alpha", "evil", decoded.interface) == "alpha_evil"


@pytest.mark.parametrize("field, value, fragment", [
    ("ip_address", "10.66.0.5", 'ovn: ip_address "10.66.0.5" is not "address/prefix"'),
    ("mac_address", 7, "ovn: mac_address 7 is not a valid MAC address"),
    ("gateway_ip", None, "ovn: gateway_ip null is not a valid IPv4 address"),
    ("name", "", 'ovn: "name" (the network) must be a non-empty string'),
    ("mtu", True, 'ovn: "mtu" must be an integer 1..65535 or null'),
    ("mtu", 10**30, 'ovn: "mtu" must be an integer 1..65535 or null'),
    ("routes", [{"dst": "x"}], 'ovn.routes[0] needs "dst" (CIDR) and "gw" (address)'),
])
def test_legacy_result_rejects_bad_fields(field, value, fragment):
    item = json.loads(encode_legacy_result(LEGACY, "ns1", "pod1"))
    item[field] = value
    with pytest.raises(AnnotationError, match=re.escape(fragment)):
        decode_legacy_result(json.dumps(item))


# -- the seal -----------------------------------------------------------------------------

KEY = b"k" * 32
UID, OTHER_UID = "0b7cb6c6-0000-4000-8000-000000000001", "0b7cb6c6-0000-4000-8000-000000000002"


def test_seal_verifies_only_for_its_uid_name_value_and_key():
    value = encode_iface_list(RESULTS)
    sealed = seal(KEY, UID, RESULT_ANNOTATION, value)
    assert re.fullmatch(r"v1:[A-Za-z0-9_-]{43}", sealed)
    check_seal(KEY, UID, RESULT_ANNOTATION, value, sealed, "zeta/victim")
    for args in [(KEY, OTHER_UID, RESULT_ANNOTATION, value), (KEY, UID, LEGACY_ANNOTATION, value),
                 (KEY, UID, RESULT_ANNOTATION, value + " "), (b"x" * 32, UID, RESULT_ANNOTATION, value)]:
        with pytest.raises(SealError, match="the seal does not match"):
            check_seal(*args, sealed, "zeta/victim")


def test_seal_messages_name_the_mismatch():
    value = encode_iface_list(RESULTS)
    copied = seal(KEY, UID, RESULT_ANNOTATION, value)
    with pytest.raises(SealError) as exc:
        check_seal(KEY, OTHER_UID, RESULT_ANNOTATION, value, copied, "alpha/evil")
    assert str(exc.value) == (
        f"ovnIfaceList of alpha/evil is not sealed by the operator for this pod (uid {OTHER_UID}): "
        "the seal does not match (the result was copied from another pod, or edited)")
    with pytest.raises(SealError, match="it has no ovnvnet.io/seal annotation"):
        check_seal(KEY, UID, "ovn", "{}", None, "alpha/evil")
    for bad in ("v1:", "v2:" + copied[3:], copied + "A", 5, ["x"], "v1:" + "\ud800" * 43):
        with pytest.raises(SealError, match="is not a v1 seal") as exc:
            check_seal(KEY, UID, RESULT_ANNOTATION, value, bad, "alpha/evil")
        str(exc.value).encode("utf-8")
    with pytest.raises(SealError, match="the pod has no UID"):
        check_seal(KEY, "", RESULT_ANNOTATION, value, copied, "alpha/evil")
    with pytest.raises(SealError, match="larger than 65536 bytes"):
        check_seal(KEY, UID, RESULT_ANNOTATION, "x" * (MAX_ANNOTATION_BYTES + 1), copied, "a/b")


def test_sealed_result_picks_the_result_and_checks_its_seal():
    iface_list = encode_iface_list(RESULTS)
    ann = {"ovnNetwork": "[]", **sealed_annotations(KEY, UID, RESULT_ANNOTATION, iface_list)}
    got = sealed_result(ann, UID, KEY, "ns/p")
    assert got is not None and not got.legacy and got.interfaces == RESULTS
    with pytest.raises(SealError):
        sealed_result(ann, OTHER_UID, KEY, "ns/p")
    # a legacy pod: `ovn` is the result only once it has gateway_ip
    assert sealed_result({"ovn": '{"ip_address": "10.66.0.9"}'}, UID, KEY, "ns/p") is None
    assert sealed_result({}, UID, KEY, "ns/p") is None
    legacy_value = encode_legacy_result(LEGACY, "ns", "p")
    got = sealed_result(sealed_annotations(KEY, UID, LEGACY_ANNOTATION, legacy_value), UID, KEY, "ns/p")
    assert got is not None and got.legacy and got.interfaces == [LEGACY]
    # the forged legacy result: no seal, never decoded
    forged = {"ovn": json.dumps({"ip_address": "10.1.0.5/24", "mac_address": "0a:58:0a:01:00:05",
                                 "gateway_ip": "10.1.0.1", "port": "zeta_victim_net1"})}
    with pytest.raises(SealError, match="ovn of alpha/evil is not sealed by the operator"):
        sealed_result(forged, UID, KEY, "alpha/evil")
    # a seal over `ovn` does not make an `ovnIfaceList` of the same value the operator's
    swapped = {RESULT_ANNOTATION: iface_list,
               SEAL_ANNOTATION: seal(KEY, UID, LEGACY_ANNOTATION, iface_list)}
    with pytest.raises(SealError):
        sealed_result(swapped, UID, KEY, "ns/p")


def test_result_key_and_operator_written():
    assert result_key({"ovnNetwork": "[]", "ovn": encode_legacy_result(LEGACY, "a", "b")}) is None
    assert result_key({"ovnIfaceList": "[]"}) == RESULT_ANNOTATION
    assert result_key({"ovn": encode_legacy_result(LEGACY, "a", "b")}) == LEGACY_ANNOTATION
    assert result_key({"ovn": '{"ip_address": "10.0.0.1"}'}) is None
    everything = {k: "x" for k in OPERATOR_ANNOTATIONS}
    assert operator_written({**everything, "ovnNetwork": "[]", "ovn": "{}"}) == list(OPERATOR_ANNOTATIONS)
    assert operator_written({"ovn": encode_legacy_result(LEGACY, "a", "b")}) == [LEGACY_ANNOTATION]


def test_read_seal_key(tmp_path):
    with pytest.raises(SealKeyError, match="no seal key: set OVNVNET_SEAL_KEY_FILE"):
        read_seal_key(None)
    with pytest.raises(SealKeyError, match=r"cannot read the seal key OVNVNET_SEAL_KEY_FILE=.*/absent: "
                                           "No such file or directory"):
        read_seal_key(tmp_path / "absent")
    short = tmp_path / "short"
    short.write_bytes(b"123")
    with pytest.raises(SealKeyError, match="has 3 bytes; at least 16 are needed"):
        read_seal_key(short)
    good = tmp_path / "key"
    good.write_bytes(KEY)
    assert read_seal_key(good) == KEY
