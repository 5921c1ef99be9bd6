"""The Multus request form (`k8s.v1.cni.cncf.io/networks`, model/annotation.py): both of Multus's
forms parse to the same elements, ovnvnet's elements become the same InterfaceRequests as
`ovnNetwork` entries (Multus's default interface names, CIDR `ips`, `mac`, `default-route`),
other plugins' elements are ignored, a pod using both forms is refused, and every path is total."""

import json

import netaddr
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovnvnet.model.annotation import (
    MAX_INTERFACES,
    NETWORKS_ANNOTATION,
    REQUEST_ANNOTATION,
    AnnotationError,
    parse_network_selection,
    parse_ovn_network,
    pod_requests,
    selection_requests,
)

from .test_contract_properties import FAST, any_value, junk, total

NAD_NS = "ovnvnet-system"


def requests(value: str, pod_ns: str = "app"):
    return pod_requests({NETWORKS_ANNOTATION: value}, pod_ns, NAD_NS)


def test_both_forms_give_the_same_elements() -> None:
    comma = parse_network_selection("ovnvnet-system/net-a@blue3, net-b ,other/c", "app")
    js = parse_network_selection(json.dumps([
        {"name": "net-a", "namespace": "ovnvnet-system", "interface": "blue3"},
        {"name": "net-b"}, {"name": "c", "namespace": "other"}]), "app")
    assert [(s.index, s.namespace, s.name, s.get("interface")) for s in comma] == \
        [(s.index, s.namespace, s.name, s.get("interface")) for s in js] == [
            (0, "ovnvnet-system", "net-a", "blue3"), (1, "app", "net-b", None), (2, "other", "c", None)]


def test_ovnvnet_elements_only_with_multus_default_names() -> None:
    reqs = requests("default/ovn-network, ovnvnet-system/net-a, macvlan-conf, ovnvnet-system/net-b@data7")
    assert [(r.network, r.interface) for r in reqs] == [("net-a", "net2"), ("net-b", "data7")]
    assert all(r.ips == () and r.mac is None and not r.default_gateway for r in reqs)


def test_json_element_fields_map_to_the_ovnnetwork_fields() -> None:
    (req,) = requests(json.dumps([{"name": "net-a", "namespace": NAD_NS, "interface": "net4",
                                   "ips": ["fd00:1::5/64", "10.1.0.5/24"], "mac": "0A-00-00-00-00-15",
                                   "default-route": ["10.1.0.1"], "unknown": {"x": 1}}]))
    same = parse_ovn_network(json.dumps([{"name": "net-a", "interface": "net4", "mac_address": "0a:00:00:00:00:15",
                                          "ip_addresses": ["10.1.0.5", "fd00:1::5"], "defaultGateway": True}]))[0]
    assert (req.network, req.interface, req.ips, req.mac, req.default_gateway) == \
        (same.network, same.interface, same.ips, same.mac, same.default_gateway)
    assert req.prefixes == (24, 64) and req.default_route == (netaddr.IPAddress("10.1.0.1"),)


def test_an_element_in_the_pods_own_namespace_is_ovnvnets_when_that_is_the_nad_namespace() -> None:
    assert [r.network for r in requests("net-a", pod_ns=NAD_NS)] == ["net-a"]
    assert requests("net-a", pod_ns="app") is None


def test_no_ovnvnet_element_is_no_request() -> None:
    assert requests("default/ovn-network,macvlan") is None
    assert requests("") is None and requests("[]") is None
    assert pod_requests({NETWORKS_ANNOTATION: "ovnvnet-system/net-a"}, "app", None) is None


@pytest.mark.parametrize("value, message", [
    ('[{"name": "net-a", "namespace": "ovnvnet-system", "ips": ["10.1.0.5"]}]',
     'ips[0] "10.1.0.5" is not "address/prefix"'),
    ('[{"name": "net-a", "namespace": "ovnvnet-system", "ips": "10.1.0.5/24"}]', '"ips" must be a list'),
    ('[{"name": "net-a", "namespace": "ovnvnet-system", "ips": ["10.1.0.5/24", "10.1.0.6/24"]}]', "two IPv4"),
    ('[{"name": "net-a", "namespace": "ovnvnet-system", "mac": "01:00:00:00:00:01"}]', "multicast"),
    ('[{"name": "net-a", "namespace": "ovnvnet-system", "default-route": ["x"]}]', "default-route[0]"),
    ('[{"name": "net-a", "namespace": "ovnvnet-system", "interface": "eth-0"}]', "alphanumeric"),
    ("ovnvnet-system/net-a@eth1,ovnvnet-system/net-b@eth1", "listed more than once"),
    ("ovnvnet-system/net-a,ovnvnet-system/net-b@x1", "same digit 1"),
    ('[{"name": "a", "namespace": "ovnvnet-system", "default-route": ["10.1.0.1"]},'
     ' {"name": "b", "namespace": "ovnvnet-system", "default-route": ["10.2.0.1"]}]',
     "more than one interface sets default-route"),
    ('[{"name": "a", "namespace": "ovnvnet-system", "mac": "0a:00:00:00:00:01"},'
     ' {"name": "a", "namespace": "ovnvnet-system", "mac": "0a:00:00:00:00:01"}]',
     "mac 0a:00:00:00:00:01 is requested twice"),
    ("ovnvnet-system/Net-A", 'name "Net-A" is not a valid NetworkAttachmentDefinition name'),
    ("a/b/c", "is not a valid NetworkAttachmentDefinition name"),
    ("ovnvnet-system/a@", "empty interface name"),
    ("a,,b", '"name" must be a non-empty string'),
    ('{"name": "a"}', "must be a JSON list of network-selection elements, got object"),
    ("[1]", "[0] must be an object"),
    (",".join(["ovnvnet-system/a"] * 65), "at most 64"),
    (",".join(f"ovnvnet-system/n{i}@e{i}" for i in range(MAX_INTERFACES + 1)), "ovnvnet interfaces; at most"),
])
def test_bad_requests_say_which_field(value: str, message: str) -> None:
    with pytest.raises(AnnotationError, match=None) as err:
        requests(value)
    assert message in str(err.value)


def test_a_pod_using_both_forms_is_refused() -> None:
    both = {REQUEST_ANNOTATION: '[{"name": "net-a", "interface": "net0"}]',
            NETWORKS_ANNOTATION: "ovnvnet-system/net-b"}
    with pytest.raises(AnnotationError, match="both in ovnNetwork and in k8s.v1.cni.cncf.io/networks"):
        pod_requests(both, "app", NAD_NS)


def test_ovnnetwork_with_the_seed_attachment_is_served_as_before() -> None:
    seed = {REQUEST_ANNOTATION: '[{"name": "net-a", "interface": "net0"}]',
            NETWORKS_ANNOTATION: "default/ovn-network"}
    assert pod_requests(seed, "app", NAD_NS) == parse_ovn_network(seed[REQUEST_ANNOTATION])
    # a networks annotation Multus cannot read is Multus's business when ovnNetwork is there
    seed[NETWORKS_ANNOTATION] = "[garbage"
    assert pod_requests(seed, "app", NAD_NS) == parse_ovn_network(seed[REQUEST_ANNOTATION])


element = st.fixed_dictionaries({"name": st.sampled_from(["net-a", "net-b", "", "Bad", "a/b"]) | junk}, optional={
    "namespace": st.sampled_from([NAD_NS, "app", "", "Bad"]) | junk,
    "interface": st.sampled_from(["net1", "eth0", "x", "", "a" * 20]) | junk,
    "ips": st.sampled_from([["10.1.0.5/24"], ["10.1.0.5"], ["fd00::5/64", "10.1.0.5/24"], "10.1.0.5/24", []]) | junk,
    "mac": st.sampled_from(["0a:00:00:00:00:01", "01:00:00:00:00:01", "zz", ""]) | junk,
    "default-route": st.sampled_from([["10.1.0.1"], ["x"], "10.1.0.1", []]) | junk,
})
selection_text = (st.lists(element, max_size=12).map(json.dumps)
                  | st.lists(st.sampled_from(["ovnvnet-system/net-a", "net-b@net3", "x/y@", "a/b/c", " ", "@",
                                              "ovnvnet-system/n@e1"]), max_size=12).map(",".join))


@FAST
@given(any_value | selection_text, st.sampled_from(["app", NAD_NS]), any_value)
def test_selection_parsing_is_total(raw, pod_ns, ovn) -> None:
    total(parse_network_selection, raw, pod_ns)
    total(pod_requests, {NETWORKS_ANNOTATION: raw}, pod_ns, NAD_NS)
    total(pod_requests, {NETWORKS_ANNOTATION: raw, REQUEST_ANNOTATION: ovn}, pod_ns, NAD_NS)
    try:
        selections = parse_network_selection(raw, pod_ns)
    except AnnotationError:
        return
    total(selection_requests, selections, NAD_NS)
