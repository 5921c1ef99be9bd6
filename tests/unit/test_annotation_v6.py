"""The IPv6 / dual-stack contract (issue 13): requests of either family, the per-family result
lists (``ip_addresses``/``gateway_ips``), old-form results, IPv6 routes, and the IPv4 wire form
kept byte for byte."""
import json
import re

import netaddr
import pytest

from ovnvnet.model import names
from ovnvnet.model.annotation import (
    AnnotationError,
    IfaceAddress,
    InterfaceResult,
    decode_iface_list,
    decode_legacy_result,
    encode_iface_list,
    encode_legacy_result,
    parse_legacy_request,
    parse_ovn_network,
)
from ovnvnet.model.network import Route


def req(**kw):
    return parse_ovn_network(json.dumps([{"name": "dual", "interface": "net0", **kw}]))[0]


def err(entries) -> str:
    with pytest.raises(AnnotationError) as exc:
        parse_ovn_network(json.dumps(entries))
    return str(exc.value)


# -- requests -----------------------------------------------------------------------------

def test_ip_address_of_either_family():
    r4 = req(ip_address="10.1.0.5/24")
    assert r4.ip == netaddr.IPAddress("10.1.0.5") and r4.ips == (r4.ip,)
    r6 = req(ip_address="FD00:1::5/64")
    assert r6.ip == netaddr.IPAddress("fd00:1::5") and r6.ip.version == 6 and r6.ips == (r6.ip,)
    assert r6.static_ip(6) == r6.ip and r6.static_ip(4) is None


def test_ip_addresses_list_ipv4_first():
    r = req(ip_addresses=["fd00:1::5", "10.1.0.5"])
    assert [str(ip) for ip in r.ips] == ["10.1.0.5", "fd00:1::5"]
    assert r.ip == r.ips[0]
    assert str(r.static_ip(6)) == "fd00:1::5"
    assert req(ipAddresses=["fd00:1::7"]).ips == (netaddr.IPAddress("fd00:1::7"),)
    dyn = req()
    assert dyn.ip is None and dyn.ips == ()
    assert req(ip_addresses=[]).ips == ()


@pytest.mark.parametrize("kw, message", [
    ({"ip_address": "10.1.0.5", "ip_addresses": ["fd00::5"]},
     'ovnNetwork[0]: "ip_address" and "ip_addresses" are exclusive; list every static address in '
     '"ip_addresses"'),
    ({"ip_addresses": ["fd00::5", "fd00::6"]},
     "ovnNetwork[0]: ip_addresses lists two IPv6 addresses (fd00::5, fd00::6); at most one per "
     "family is allowed"),
    ({"ip_addresses": ["10.0.0.5", "10.0.0.6"]},
     "ovnNetwork[0]: ip_addresses lists two IPv4 addresses (10.0.0.5, 10.0.0.6); at most one per "
     "family is allowed"),
    ({"ip_addresses": ["10.0.0.5", "fd00::6", "fd00::7"]},
     'ovnNetwork[0]: "ip_addresses" lists 3 addresses; at most one per family (2) is allowed'),
    ({"ip_addresses": "fd00::5"},
     'ovnNetwork[0]: "ip_addresses" must be a list of addresses, got string'),
    ({"ip_addresses": ["fd00::g"]}, 'ip_addresses[0] "fd00::g" is not a valid IPv6 address'),
    ({"ip_addresses": ["1::2::3"]}, 'ip_addresses[0] "1::2::3" is not a valid IPv6 address'),
    ({"ip_addresses": ["::ffff:1.2.3.4"]},
     'ip_addresses[0] "::ffff:1.2.3.4" is not a valid IPv6 address'),
    ({"ip_addresses": [5]}, 'ovnNetwork[0]: "ip_addresses[0]" must be a string, got number'),
    ({"ip_addresses": [""]}, 'ovnNetwork[0]: "ip_addresses[0]" is empty'),
    ({"ip_address": "fd00::1%eth0"}, 'ip_address "fd00::1%eth0" is not a valid IPv6 address'),
])
def test_request_messages(kw, message):
    assert err([{"name": "dual", "interface": "net0", **kw}]) == message


def test_same_ipv6_twice_on_one_network():
    assert err([{"name": "d", "interface": "net0", "ip_addresses": ["10.0.0.5", "fd00::5"]},
                {"name": "d", "interface": "net1", "ip_address": "fd00:0::5"}]) == (
        "ip_address fd00::5 is requested twice on network d (net0, net1)")


def test_legacy_request_ipv6():
    r = parse_legacy_request(json.dumps({"ip_address": "fd00:66::5/64"}), "default-net")
    assert r.ip == netaddr.IPAddress("fd00:66::5") and r.ips == (r.ip,)


# -- results ------------------------------------------------------------------------------

V4 = InterfaceResult(interface="net0", network="ovn-ls-25", ip="172.16.25.3", prefix_length=24,
                     mac="0a:58:ac:10:19:03", gateway="172.16.25.1", default_gateway=False,
                     mtu=None, routes=(Route(dst="10.10.0.0/16", gw="172.16.25.254"),))
DUAL = InterfaceResult(
    interface="net1", network="dual", ip="10.1.0.5", prefix_length=24, mac="0a:58:0a:01:00:05",
    gateway="10.1.0.1", default_gateway=True, mtu=1400,
    routes=(Route(dst="10.10.0.0/16", gw="10.1.0.254"), Route(dst="fd10::/48", gw="fd00:1::fe")),
    addresses=(IfaceAddress("10.1.0.5", 24, "10.1.0.1"), IfaceAddress("fd00:1::5", 64, "fd00:1::1")),
)
V6 = InterfaceResult(
    interface="net2", network="six", ip="fd00:2::a", prefix_length=120, mac="0a:58:00:00:00:0a",
    gateway="fd00:2::1", default_gateway=False, mtu=None, routes=(Route(dst="::/0", gw="fd00:2::1"),),
    addresses=(IfaceAddress("fd00:2::a", 120, "fd00:2::1"),),
)

# The exact bytes an IPv4 result had before IPv6 existed (copied from main's encoder output).
V4_WIRE_BEFORE = (
    '[{"interface":"net0","name":"ovn-ls-25","ip_address":"172.16.25.3","prefix_length":24,'
    '"mac_address":"0a:58:ac:10:19:03","gateway_ip":"172.16.25.1","defaultGateway":false,'
    '"routes":[{"dst":"10.10.0.0/16","gw":"172.16.25.254"}]}]'
)


def test_ipv4_wire_form_unchanged_byte_for_byte():
    assert encode_iface_list([V4]) == V4_WIRE_BEFORE
    assert V4.addresses == (IfaceAddress("172.16.25.3", 24, "172.16.25.1"),)
    assert V4.addresses[0].family == 4 and V4.ipv4_only


def test_dual_stack_wire_form():
    (item,) = json.loads(encode_iface_list([DUAL]))
    assert item == {
        "interface": "net1", "name": "dual", "ip_address": "10.1.0.5", "prefix_length": 24,
        "mac_address": "0a:58:0a:01:00:05", "gateway_ip": "10.1.0.1", "defaultGateway": True,
        "mtu": 1400, "routes": [{"dst": "10.10.0.0/16", "gw": "10.1.0.254"},
                                {"dst": "fd10::/48", "gw": "fd00:1::fe"}],
        "ip_addresses": ["10.1.0.5/24", "fd00:1::5/64"], "gateway_ips": ["10.1.0.1", "fd00:1::1"],
    }


def test_ipv6_only_wire_form_primary_is_ipv6():
    (item,) = json.loads(encode_iface_list([V6]))
    assert item["ip_address"] == "fd00:2::a" and item["prefix_length"] == 120
    assert item["gateway_ip"] == "fd00:2::1"
    assert item["ip_addresses"] == ["fd00:2::a/120"] and item["gateway_ips"] == ["fd00:2::1"]
    assert V6.addresses[0].family == 6 and not V6.ipv4_only


def test_round_trip_all_families():
    results = [V4, DUAL, V6]
    decoded = decode_iface_list(encode_iface_list(results))
    assert decoded == results
    assert [a.family for a in decoded[1].addresses] == [4, 6]
    assert decoded[1].address(6) == IfaceAddress("fd00:1::5", 64, "fd00:1::1")
    assert decoded[0].address(6) is None


def test_old_form_results_decode_with_addresses_filled():
    old = json.dumps([{"interface": "net0", "name": "a", "ip_address": "10.0.0.2",
                       "prefix_length": 24, "mac_address": "0a:58:0a:00:00:02",
                       "gateway_ip": "10.0.0.1", "defaultGateway": False, "routes": []}])
    (r,) = decode_iface_list(old)
    assert r.addresses == (IfaceAddress("10.0.0.2", 24, "10.0.0.1"),)
    # an IPv6 primary without the lists (e.g. hand-made): filled the same way
    old6 = json.dumps([{"interface": "net0", "name": "a", "ip_address": "fd00::2",
                        "prefix_length": 64, "mac_address": "0a:58:00:00:00:02",
                        "gateway_ip": "fd00::1"}])
    (r6,) = decode_iface_list(old6)
    assert r6.addresses == (IfaceAddress("fd00::2", 64, "fd00::1"),) and r6.addresses[0].family == 6


def test_decode_canonicalises_ipv6_text():
    (item,) = json.loads(encode_iface_list([DUAL]))
    item["ip_addresses"][1] = "FD00:1:0::5/64"
    (r,) = decode_iface_list(json.dumps([item]))
    assert r.addresses[1].ip == "fd00:1::5"


@pytest.mark.parametrize("change, fragment", [
    ({"ip_addresses": ["10.1.0.5/24"]}, '"ip_addresses" and "gateway_ips" must be lists'),
    ({"ip_addresses": "10.1.0.5/24"}, '"ip_addresses" and "gateway_ips" must be lists'),
    ({"gateway_ips": None}, '"ip_addresses" and "gateway_ips" must be lists'),
    ({"ip_addresses": ["fd00:1::5/64", "10.1.0.5/24"], "gateway_ips": ["fd00:1::1", "10.1.0.1"]},
     '"ip_addresses" must hold one address per family, IPv4 first'),
    ({"ip_addresses": ["10.1.0.5/24", "fd00:1::5/129"]}, 'ip_addresses[1] "fd00:1::5/129" is not'),
    ({"ip_addresses": ["10.1.0.5/24", "10.1.0.6/24"], "gateway_ips": ["10.1.0.1", "10.1.0.1"]},
     '"ip_addresses" must hold one address per family, IPv4 first'),
    ({"gateway_ips": ["10.1.0.1", "10.1.0.1"]}, "gateway_ips[1] 10.1.0.1 is not of the family"),
    ({"ip_addresses": ["10.1.0.6/24", "fd00:1::5/64"]}, "ip_addresses[0] 10.1.0.6/24"),
    ({"gateway_ip": "fd00:1::1"}, "gateway_ip fd00:1::1 is not of the family of ip_address"),
    ({"prefix_length": 64}, '"prefix_length" must be an integer 0..32'),
    ({"routes": [{"dst": "fd10::/48", "gw": "10.1.0.1"}]}, "are of different families"),
    ({"routes": [{"dst": "fd10::/200", "gw": "fd00:1::1"}]}, 'needs "dst" (CIDR) and "gw"'),
])
def test_decode_rejects_inconsistent_lists(change, fragment):
    (item,) = json.loads(encode_iface_list([DUAL]))
    item.update(change)
    with pytest.raises(AnnotationError, match=re.escape(fragment)):
        decode_iface_list(json.dumps([item]))


def test_ipv6_prefix_up_to_128():
    (item,) = json.loads(encode_iface_list([V6]))
    item["prefix_length"] = 129
    with pytest.raises(AnnotationError, match=re.escape('"prefix_length" must be an integer 0..128')):
        decode_iface_list(json.dumps([item]))


def test_legacy_result_dual_stack():
    legacy = InterfaceResult(
        interface=names.LEGACY_INTERFACE, network="default-net", ip="10.66.0.5", prefix_length=24,
        mac="0a:58:0a:42:00:05", gateway="10.66.0.1", default_gateway=True, mtu=None, routes=(),
        addresses=(IfaceAddress("10.66.0.5", 24, "10.66.0.1"),
                   IfaceAddress("fd00:66::5", 64, "fd00:66::1")),
    )
    raw = encode_legacy_result(legacy, "ns1", "pod1")
    data = json.loads(raw)
    assert data["ip_address"] == "10.66.0.5/24" and data["gateway_ip"] == "10.66.0.1"
    assert data["ip_addresses"] == ["10.66.0.5/24", "fd00:66::5/64"]
    assert data["gateway_ips"] == ["10.66.0.1", "fd00:66::1"]
    assert decode_legacy_result(raw) == legacy
