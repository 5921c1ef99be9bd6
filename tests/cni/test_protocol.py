"""Pure CNI protocol pieces: request validation, result shapes per spec version, names."""

from __future__ import annotations

import json

import pytest

from ovnvnet.cni import protocol as p
from ovnvnet.cni.netlink import NAME_ATTEMPTS, host_veth_name, link_alias

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc", "CNI_NETNS": "/var/run/netns/x",
       "CNI_IFNAME": "eth0", "CNI_ARGS": "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod;X=a=b"}


def conf(**kw) -> str:
    return json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "ovn-k8s-cni-overlay", **kw})


def test_parse_request_reads_args_and_timeouts():
    req = p.parse_request(ENV, conf(annotationTimeout=5))
    assert (req.pod_namespace, req.pod_name, req.pod_uid) == ("ns", "pod", "")
    assert req.args["X"] == "a=b"
    assert req.annotation_timeout == 5.0
    assert p.parse_request(ENV, conf()).annotation_timeout == 30.0


@pytest.mark.parametrize("env,config,code", [
    ({**ENV, "CNI_COMMAND": "FROB"}, conf(), 4),
    ({**ENV, "CNI_CONTAINERID": ""}, conf(), 4),
    ({**ENV, "CNI_NETNS": ""}, conf(), 4),
    (ENV, "{not json", 6),
    (ENV, json.dumps({"cniVersion": "0.2.0"}), 1),
    ({**ENV, "CNI_COMMAND": "CHECK"}, json.dumps({"cniVersion": "0.3.1"}), 1),
    (ENV, conf(annotationTimeout="soon"), 7),
    ({**ENV, "CNI_ARGS": "novalue"}, conf(), 4),
])
def test_parse_request_errors_use_spec_codes(env, config, code):
    with pytest.raises(p.CniError) as e:
        p.parse_request(env, config)
    assert e.value.code == code


def test_del_needs_no_netns():
    req = p.parse_request({**ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""}, conf())
    assert req.command == "DEL"


def test_result_versions():
    plumbed = [p.PlumbedInterface("net0", "0a:58:ac:10:19:02", "ovX", "aa:bb:cc:dd:ee:ff",
                                  (("172.16.25.2/24", "172.16.25.1"),), 1400,
                                  (("0.0.0.0/0", "172.16.25.1"),))]
    r1 = p.build_result("1.0.0", "/ns", plumbed)
    assert r1["ips"] == [{"address": "172.16.25.2/24", "gateway": "172.16.25.1", "interface": 1}]
    assert r1["interfaces"][1] == {"name": "net0", "mac": "0a:58:ac:10:19:02", "sandbox": "/ns"}
    assert r1["routes"] == [{"dst": "0.0.0.0/0", "gw": "172.16.25.1"}]
    r04 = p.build_result("0.4.0", "/ns", plumbed)
    assert r04["ips"][0]["version"] == "4" and r04["cniVersion"] == "0.4.0"


def test_dual_stack_result_lists_both_families():
    plumbed = [
        p.PlumbedInterface("net0", "0a:58:0a:01:00:05", "ovX", "aa:bb:cc:dd:ee:ff",
                           (("10.1.0.5/24", "10.1.0.1"), ("fd00:1::5/64", "fd00:1::1")), None,
                           (("0.0.0.0/0", "10.1.0.1"), ("::/0", "fd00:1::1"))),
        p.PlumbedInterface("net1", "0a:58:00:00:00:07", "ovY", "aa:bb:cc:dd:ee:fe",
                           (("fd00:2::7/64", "fd00:2::1"),)),
    ]
    r1 = p.build_result("1.0.0", "/ns", plumbed)
    assert r1["ips"] == [
        {"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 1},
        {"address": "fd00:1::5/64", "gateway": "fd00:1::1", "interface": 1},
        {"address": "fd00:2::7/64", "gateway": "fd00:2::1", "interface": 3},
    ]
    assert r1["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "::/0", "gw": "fd00:1::1"}]
    r04 = p.build_result("0.4.0", "/ns", plumbed)
    assert [(ip["version"], ip["address"]) for ip in r04["ips"]] == [
        ("4", "10.1.0.5/24"), ("6", "fd00:1::5/64"), ("6", "fd00:2::7/64")]
    assert list(r04["ips"][0]) == ["version", "address", "gateway", "interface"]


def test_host_veth_names_fit_and_record_the_full_container_id():
    a0, a1 = host_veth_name("cid-a", "net0"), host_veth_name("cid-a", "net1")
    assert len(a0) == 15 and a0 != a1
    assert host_veth_name("cid-a", "net0") == a0  # deterministic
    assert host_veth_name("cid-b", "net0") != a0
    # the fallback candidates for a name held by a foreign link are distinct and fit too
    names = {host_veth_name("cid-a", "net0", n) for n in range(NAME_ATTEMPTS)}
    assert len(names) == NAME_ATTEMPTS and all(len(n) == 15 for n in names)
    # ownership is the alias: the full id, or its sha256 when too long for IFALIASZ
    assert link_alias("cid-a", "net0") == "ovnvnet container=cid-a interface=net0"
    long_id = "a" * 300
    assert len(link_alias(long_id, "net0")) < 256
    assert link_alias(long_id, "net0") != link_alias(long_id[:-1] + "b", "net0")


@pytest.mark.parametrize("cid", ["a b", "x/y", "-abc", "a\nb", "a:b"])
def test_container_id_must_follow_the_spec(cid):
    with pytest.raises(p.CniError) as e:
        p.parse_request({**ENV, "CNI_CONTAINERID": cid}, conf())
    assert e.value.code == 4 and "CNI_CONTAINERID" in e.value.msg


def test_input_limits_agree_after_worst_case_escaping():
    # one raw byte escapes to at most 6 ("\u00XX"); the envelope is 25 bytes
    assert p.MAX_REQUEST_BYTES >= 6 * p.MAX_INPUT_BYTES + 25
    from ovnvnet.cni import agent
    assert agent.MAX_REQUEST_BYTES == p.MAX_REQUEST_BYTES


def test_error_json():
    e = p.CniError(11, "try again later", "because")
    assert e.to_json("0.4.0") == {"cniVersion": "0.4.0", "code": 11, "msg": "try again later",
                                  "details": "because"}
    # details is always there, as in the shim's own errors
    assert p.CniError(7, "bad").to_json("1.0.0")["details"] == ""


def test_default_routes_one_per_family_only_with_default_gateway():
    from ovnvnet.cni.netlink import wanted_routes
    from ovnvnet.model.annotation import IfaceAddress, InterfaceResult
    from ovnvnet.model.network import Route

    v4, v6 = IfaceAddress("10.1.0.5", 24, "10.1.0.1"), IfaceAddress("fd00:1::5", 64, "fd00:1::1")
    dual = InterfaceResult("net0", "n", v4.ip, 24, "0a:58:0a:01:00:05", v4.gateway, True, None,
                           (Route("fd00:9::/64", "fd00:1::1"),), (v4, v6))
    assert wanted_routes(dual) == [("fd00:9::/64", "fd00:1::1"), ("0.0.0.0/0", "10.1.0.1"),
                                   ("::/0", "fd00:1::1")]
    only6 = InterfaceResult("net0", "n", v6.ip, 64, "0a:58:00:00:00:05", v6.gateway, True, None,
                            (), (v6,))
    assert wanted_routes(only6) == [("::/0", "fd00:1::1")]
    no_default = InterfaceResult("net0", "n", v4.ip, 24, "0a:58:0a:01:00:05", v4.gateway, False,
                                 None, (), (v4, v6))
    assert wanted_routes(no_default) == []


def test_result_interfaces_all_or_ifname():
    assert p.parse_request(ENV, conf()).result_interfaces == "all"
    assert p.parse_request(ENV, conf(resultInterfaces="ifname")).result_interfaces == "ifname"
    with pytest.raises(p.CniError) as e:
        p.parse_request(ENV, conf(resultInterfaces=True))
    assert e.value.code == 7 and e.value.msg == 'network configuration "resultInterfaces" must be "all" or "ifname"'
    two = [p.PlumbedInterface(n, "0a:58:ac:10:19:02", "ovX", "aa:bb:cc:dd:ee:ff", ()) for n in ("net0", "net1")]
    assert p.result_subset("all", "net1", two) == two
    assert p.result_subset("ifname", "net1", two) == [two[1]]
    assert p.result_subset("ifname", "eth1", two) == [two[0]]   # CNI_IFNAME names none: the first
    # the one interface's addresses point at its own sandbox entry
    assert p.build_result("1.0.0", "/ns", p.result_subset("ifname", "net1", [
        two[0], p.PlumbedInterface("net1", "0a:00:00:00:00:15", "ovY", "aa", (("10.0.0.5/24", "10.0.0.1"),))
    ]))["ips"] == [{"address": "10.0.0.5/24", "gateway": "10.0.0.1", "interface": 1}]
