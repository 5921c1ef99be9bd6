"""The attach path's fast address text (model/iptext.py) and int block arithmetic (model/blocks.py)
give exactly what the slow forms give: str(netaddr.IPAddress), parse_ip, block_cidr."""

import netaddr
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovnvnet.model.blocks import block_cidr, block_name, block_span
from ovnvnet.model.iptext import ip_text, ip_value
from ovnvnet.model.network import parse_ip

SUBNETS = ["10.1.0.0/16", "10.2.3.0/26", "10.9.0.0/24", "fd00:1::/64", "fd00:2::/126", "fd00:3::/48",
           "2001:db8::/120", "fd00::/100"]


def _expected(text: str) -> tuple[int, int] | None:
    parsed = parse_ip(text)
    return None if parsed is None else (int(parsed.version), int(parsed))


@given(st.integers(0, 2**128 - 1))
def test_ipv6_text_and_value_match_netaddr(value: int) -> None:
    ip = netaddr.IPAddress(value, 6)
    assert ip_text(ip) == str(ip)
    # a text with an embedded IPv4 ("::ffff:1.2.3.4", "::0.1.0.0") is refused by parse_ip: by both
    assert ip_value(str(ip)) == _expected(str(ip)) == (None if "." in str(ip) else (6, value))


@given(st.integers(0, 2**32 - 1))
def test_ipv4_text_and_value_match_netaddr(value: int) -> None:
    ip = netaddr.IPAddress(value, 4)
    assert ip_text(ip) == str(ip)
    assert ip_value(str(ip)) == (4, value)


@pytest.mark.parametrize("text", [
    "FD00::5", "fd00:0::5", "fd00:00:0:0:0:0:0:5", "0000:0000::1", "::", "::1", "1::", "1:2:3:4:5:6:7::",
    "::2:3:4:5:6:7:8", "::ffff:1.2.3.4", "::ffff:102:304", "fd00::5%eth0", "g::1", "1:::2", ":", "",
    "00000::1", "1:2:3:4:5:6:7:8:9", "1.2.3.4", "01.2.3.4", "1.2.3", "256.1.1.1", " 1.2.3.4",
])
def test_ip_value_agrees_with_parse_ip_on_odd_texts(text: str) -> None:
    assert ip_value(text) == _expected(text)


@given(st.text(alphabet="0123456789abcdefABCDEF:.%", max_size=41))
def test_ip_value_agrees_with_parse_ip(text: str) -> None:
    assert ip_value(text) == _expected(text)


@pytest.mark.parametrize("subnet", SUBNETS)
@given(data=st.data())
def test_block_span_is_block_cidr(subnet: str, data: st.DataObject) -> None:
    net = netaddr.IPNetwork(subnet)
    value = data.draw(st.integers(int(net.first), int(net.last)))
    text = str(netaddr.IPAddress(value, net.version))
    first, prefix = block_span(net, net.version, value)
    cidr = netaddr.IPNetwork((first, prefix), version=net.version)
    old = block_cidr(net, text)
    assert str(cidr) == str(old)
    assert block_name("net", cidr) == block_name("net", old)
