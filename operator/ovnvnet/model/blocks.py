"""The allocation record, sharded: one IPBlock object per /24 (IPv4) or /120 (IPv6) block of a network.

A VirtualNetwork of 10,000 allocations would otherwise carry a ~1.4 MB status (the etcd object
limit is 1.5 MiB) and every status write would ship it whole; a /24 block holds at most 256
entries (~35 KB). An IPv6 block is a /120: 256 addresses too, so every IPBlock stays as small as
an IPv4 one whatever the subnet's size (a /64 holding N addresses has at most N blocks; blocks are
created only where an address is held). Its name spells the block's first address in full, colons
as dashes (``net.fd00-0001-0000-0000-0000-0000-0000-0100``): an object name may not hold ":"
and must end with an alphanumeric character."""
from __future__ import annotations

import netaddr

BLOCK_PREFIX_V4 = 24
BLOCK_PREFIX_V6 = 120
NETWORK_LABEL = "ovnvnet.io/network"


def block_cidr(subnet: netaddr.IPNetwork, ip: str | netaddr.IPAddress) -> netaddr.IPNetwork:
    """The block holding `ip`: its /24 (IPv6: /120), or the whole subnet when that is smaller."""
    block = BLOCK_PREFIX_V4 if subnet.version == 4 else BLOCK_PREFIX_V6
    prefix = max(block, int(subnet.prefixlen))
    return netaddr.IPNetwork(f"{ip}/{prefix}").cidr


def block_span(subnet: netaddr.IPNetwork, version: int, value: int) -> tuple[int, int]:
    """``(first address as an int, prefix)`` of :func:`block_cidr` for the address ``value`` of
    family ``version`` (the subnet's), computed on ints: no text is parsed."""
    bits = 32 if version == 4 else 128
    prefix = max(BLOCK_PREFIX_V4 if version == 4 else BLOCK_PREFIX_V6, int(subnet.prefixlen))
    return value >> (bits - prefix) << (bits - prefix), prefix


def block_name(network: str, cidr: netaddr.IPNetwork) -> str:
    if cidr.version == 4:
        return f"{network}.{cidr.network}"
    digits = f"{int(cidr.network):032x}"
    return f"{network}." + "-".join(digits[i:i + 4] for i in range(0, 32, 4))
