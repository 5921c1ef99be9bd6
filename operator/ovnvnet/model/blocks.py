"""The allocation record, sharded: one IPBlock object per /24 block of a network.

A VirtualNetwork of 10,000 allocations would otherwise carry a ~1.4 MB status (the etcd object
limit is 1.5 MiB) and every status write would ship it whole; a /24 block holds at most 256
entries (~35 KB)."""
from __future__ import annotations

import netaddr

BLOCK_PREFIX_V4 = 24
NETWORK_LABEL = "ovnvnet.io/network"


def block_cidr(subnet: netaddr.IPNetwork, ip: str | netaddr.IPAddress) -> netaddr.IPNetwork:
    """The block holding `ip`: its /24, or the whole subnet when that is smaller."""
    prefix = max(BLOCK_PREFIX_V4, int(subnet.prefixlen))
    return netaddr.IPNetwork(f"{ip}/{prefix}").cidr


def block_name(network: str, cidr: netaddr.IPNetwork) -> str:
    return f"{network}.{cidr.network}"
