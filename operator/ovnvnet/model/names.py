"""Names and ownership keys shared by the operator, the NB client and the CNI side."""

from __future__ import annotations

import netaddr

__all__ = [
    "CLAIM_KEY",
    "CLAIM_UID_KEY",
    "INTERFACE_KEY",
    "NETWORK_KEY",
    "OWNER_KEY",
    "OWNER_VALUE",
    "POD_NAME_KEY",
    "POD_NAMESPACE_KEY",
    "POD_UID_KEY",
    "ROUTER_NAME",
    "mac_from_ip",
    "port_name",
    "router_port_name",
    "switch_router_port_name",
]

# external_ids on every NB row ovnvnet owns; syncs ignore rows without OWNER_KEY=OWNER_VALUE.
OWNER_KEY = "ovnvnet.io/owner"
OWNER_VALUE = "ovnvnet"
NETWORK_KEY = "ovnvnet.io/network"
POD_NAMESPACE_KEY = "ovnvnet.io/pod-namespace"
POD_NAME_KEY = "ovnvnet.io/pod-name"
POD_UID_KEY = "ovnvnet.io/pod-uid"
INTERFACE_KEY = "ovnvnet.io/interface"
CLAIM_KEY = "ovnvnet.io/claim"          # a port whose addresses are held for an IPClaim: "namespace/name"
CLAIM_UID_KEY = "ovnvnet.io/claim-uid"  # and that IPClaim's UID

ROUTER_NAME = "ovnvnet-router"


LEGACY_INTERFACE = "legacy"
"""The interface key of a legacy single-interface pod (its real name is the runtime's CNI_IFNAME).
A requested interface name must end with a digit, so it can never be "legacy"."""


def port_name(namespace: str, pod: str, interface: str) -> str:
    """Logical switch port of one pod interface (ovn4nfv's ``<ns>_<pod>_<iface>``); a legacy
    single-interface pod has ovn-kubernetes' ``<ns>_<pod>``."""
    if interface == LEGACY_INTERFACE:
        return f"{namespace}_{pod}"
    return f"{namespace}_{pod}_{interface}"


def router_port_name(network: str) -> str:
    """Logical router port connecting ROUTER_NAME to the network's switch."""
    return "rtr-" + network


def switch_router_port_name(network: str) -> str:
    """The switch's router-type port peering with :func:`router_port_name`."""
    return "rtr-" + network + "-ls"


def mac_from_ip(ip: netaddr.IPAddress) -> str:
    """ovn-kubernetes' derived MAC: ``0a:58:`` + the four IPv4 bytes (low 32 bits for IPv6)."""
    return mac_from_int(int(ip))


def mac_from_int(ip: int) -> str:
    """:func:`mac_from_ip` on the int form of the address (the allocator's hot path)."""
    return f"0a:58:{(ip >> 24) & 0xFF:02x}:{(ip >> 16) & 0xFF:02x}:{(ip >> 8) & 0xFF:02x}:{ip & 0xFF:02x}"
