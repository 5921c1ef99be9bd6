import netaddr

from ovnvnet.model import names


def test_port_names():
    assert names.port_name("default", "pod-a", "net1") == "default_pod-a_net1"
    assert names.router_port_name("ovn-ls-25") == "rtr-ovn-ls-25"
    assert names.switch_router_port_name("ovn-ls-25") == "rtr-ovn-ls-25-ls"
    assert names.ROUTER_NAME == "ovnvnet-router"


def test_keys():
    assert (names.OWNER_KEY, names.OWNER_VALUE) == ("ovnvnet.io/owner", "ovnvnet")
    assert names.NETWORK_KEY == "ovnvnet.io/network"
    assert names.POD_NAMESPACE_KEY == "ovnvnet.io/pod-namespace"
    assert names.POD_NAME_KEY == "ovnvnet.io/pod-name"
    assert names.POD_UID_KEY == "ovnvnet.io/pod-uid"
    assert names.INTERFACE_KEY == "ovnvnet.io/interface"


def test_mac_from_ip():
    assert names.mac_from_ip(netaddr.IPAddress("172.16.25.3")) == "0a:58:ac:10:19:03"
    assert names.mac_from_ip(netaddr.IPAddress("10.0.255.254")) == "0a:58:0a:00:ff:fe"
    assert names.mac_from_ip(netaddr.IPAddress("0.0.0.1")) == "0a:58:00:00:00:01"
