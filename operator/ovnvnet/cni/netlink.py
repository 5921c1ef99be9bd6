"""Veth plumbing with pyroute2: the host end stays with OVS, the pod end goes into the netns.

Every function here is blocking (netlink round trips, namespace switches): the agent calls them
through ``asyncio.to_thread``. Sockets are opened per call, so calls on different threads never
share one.

Host-side names are deterministic and fit IFNAMSIZ: ``ov`` + 8 hex digits of the container id
hash + 5 of the interface name hash (15 characters). The container part is a common prefix, so
DEL finds every link of a container even when the pod and its annotation are gone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from pyroute2 import IPRoute, NetNS
from pyroute2.netlink.exceptions import NetlinkError

from ..model.annotation import InterfaceResult

__all__ = [
    "LinkState",
    "PlumbingError",
    "check_interface",
    "ensure_interface",
    "host_veth_name",
    "remove_container_links",
]


class PlumbingError(Exception):
    """The netns or links are not in a state we can converge from; message says why."""


def _hex(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def host_prefix(container_id: str) -> str:
    return "ov" + _hex(container_id, 8)


def host_veth_name(container_id: str, interface: str) -> str:
    return host_prefix(container_id) + _hex(interface, 5)


def _temp_peer_name(container_id: str, interface: str) -> str:
    # the pod end's name while it is still in the host netns, before the move and rename
    return "op" + _hex(container_id, 8) + _hex(interface, 5)


@contextlib.contextmanager
def _ns(netns: str | None) -> Iterator[IPRoute]:
    """Netlink in ``netns`` (a name or path), or in our own netns for None."""
    if netns is None:
        with IPRoute() as ipr:
            yield ipr
    else:
        if not os.path.exists(netns if "/" in netns else f"/var/run/netns/{netns}"):
            raise FileNotFoundError(errno.ENOENT, "network namespace not found", netns)
        with NetNS(netns, flags=0) as ns:  # flags=0: never create a missing netns
            yield ns


def _lookup(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _link(ipr: IPRoute, index: int) -> dict:
    msg = ipr.get_links(index)[0]
    return {
        "ifname": msg.get("IFLA_IFNAME"),
        "mac": msg.get("IFLA_ADDRESS"),
        "mtu": msg.get("IFLA_MTU"),
        "up": bool(msg["flags"] & 1),
        "peer_index": msg.get("IFLA_LINK"),
        "kind": (msg.get(("IFLA_LINKINFO", "IFLA_INFO_KIND"))),
    }


@dataclass(frozen=True)
class LinkState:
    host_name: str
    host_mac: str
    pod_mac: str
    recreated: bool  # the veth pair was (re)created: any old OVS binding is stale


def ensure_interface(
    host_netns: str | None, pod_netns: str, container_id: str, iface: InterfaceResult
) -> LinkState:
    """Converge one interface: veth pair, pod end named/addressed as the annotation says."""
    host_name = host_veth_name(container_id, iface.interface)
    temp_name = _temp_peer_name(container_id, iface.interface)
    recreated = False
    with _ns(host_netns) as host, _ns(pod_netns) as pod:
        host_idx = _lookup(host, host_name)
        pod_idx = _lookup(pod, iface.interface)
        consistent = (
            host_idx is not None
            and pod_idx is not None
            and _link(pod, pod_idx)["peer_index"] == host_idx
        )
        if not consistent:
            recreated = True
            for stale in (host_idx, _lookup(host, temp_name)):
                if stale is not None:
                    host.link("del", index=stale)
            if host_idx is not None and pod_idx is not None:
                pod_idx = _lookup(pod, iface.interface)  # deleting our host end removed it
            if pod_idx is not None:
                raise PlumbingError(
                    f"interface {iface.interface} already exists in {pod_netns} and is not "
                    f"an ovnvnet veth; refusing to replace it"
                )
            host.link("add", ifname=host_name, kind="veth", peer={"ifname": temp_name})
            temp_idx = _lookup(host, temp_name)
            if temp_idx is None:
                raise PlumbingError(f"veth peer {temp_name} vanished right after creation")
            fd = os.open(pod_netns if "/" in pod_netns else f"/var/run/netns/{pod_netns}",
                         os.O_RDONLY)
            try:
                host.link("set", index=temp_idx, net_ns_fd=fd)
            finally:
                os.close(fd)
            pod_idx = _lookup(pod, temp_name)
            if pod_idx is None:
                raise PlumbingError(f"veth peer {temp_name} did not arrive in {pod_netns}")
            pod.link("set", index=pod_idx, ifname=iface.interface)
            host_idx = _lookup(host, host_name)
            assert host_idx is not None

        # pod end: MAC, MTU, address, up, routes (all idempotent)
        settings: dict = {"address": iface.mac}
        if iface.mtu is not None:
            settings["mtu"] = iface.mtu
        pod.link("set", index=pod_idx, **settings)
        pod.link("set", index=pod_idx, state="up")
        want = (iface.ip, iface.prefix_length)
        for addr in pod.get_addr(index=pod_idx, family=2):
            have = (addr.get("IFA_ADDRESS"), addr["prefixlen"])
            if have != want:
                pod.addr("del", index=pod_idx, address=have[0], prefixlen=have[1])
        if want not in _addresses(pod, pod_idx):
            pod.addr("add", index=pod_idx, address=iface.ip, prefixlen=iface.prefix_length)
        for dst, gw in _wanted_routes(iface):
            pod.route("replace", dst=dst, gateway=gw, oif=pod_idx)

        # host end: MTU and up (its MAC does not matter to OVN)
        if iface.mtu is not None:
            host.link("set", index=host_idx, mtu=iface.mtu)
        host.link("set", index=host_idx, state="up")
        return LinkState(
            host_name=host_name,
            host_mac=_link(host, host_idx)["mac"],
            pod_mac=_link(pod, pod_idx)["mac"],
            recreated=recreated,
        )


def _wanted_routes(iface: InterfaceResult) -> list[tuple[str, str]]:
    routes = [(r.dst, r.gw) for r in iface.routes]
    if iface.default_gateway:
        # only the interface marked defaultGateway touches the pod's default route
        routes.append(("0.0.0.0/0", iface.gateway))
    return routes


def wanted_routes(iface: InterfaceResult) -> list[tuple[str, str]]:
    return _wanted_routes(iface)


def _addresses(ipr: IPRoute, index: int) -> set[tuple[str, int]]:
    return {(a.get("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)}


def _routes(ipr: IPRoute, index: int) -> set[tuple[str, str]]:
    out = set()
    for r in ipr.get_routes(family=2, oif=index, table=254):
        gw = r.get("RTA_GATEWAY")
        if gw is None:
            continue
        out.add((f"{r.get('RTA_DST') or '0.0.0.0'}/{r['dst_len']}", gw))
    return out


def check_interface(
    host_netns: str | None, pod_netns: str, container_id: str, iface: InterfaceResult
) -> list[str]:
    """Problems with one interface (empty when it matches the annotation)."""
    problems: list[str] = []
    host_name = host_veth_name(container_id, iface.interface)
    try:
        with _ns(host_netns) as host, _ns(pod_netns) as pod:
            host_idx = _lookup(host, host_name)
            if host_idx is None:
                problems.append(f"host veth {host_name} for {iface.interface} is missing")
            pod_idx = _lookup(pod, iface.interface)
            if pod_idx is None:
                problems.append(f"interface {iface.interface} is missing from {pod_netns}")
                return problems
            link = _link(pod, pod_idx)
            if host_idx is not None and link["peer_index"] != host_idx:
                problems.append(f"{iface.interface} is not the peer of host veth {host_name}")
            if (link["mac"] or "").lower() != iface.mac:
                problems.append(f"{iface.interface} has MAC {link['mac']}, want {iface.mac}")
            if iface.mtu is not None and link["mtu"] != iface.mtu:
                problems.append(f"{iface.interface} has MTU {link['mtu']}, want {iface.mtu}")
            if not link["up"]:
                problems.append(f"{iface.interface} is down")
            if (iface.ip, iface.prefix_length) not in _addresses(pod, pod_idx):
                problems.append(
                    f"{iface.interface} lacks address {iface.ip}/{iface.prefix_length}"
                )
            have_routes = _routes(pod, pod_idx)
            for dst, gw in _wanted_routes(iface):
                if (dst, gw) not in have_routes:
                    problems.append(f"{iface.interface} lacks route {dst} via {gw}")
    except FileNotFoundError:
        problems.append(f"network namespace {pod_netns} does not exist")
    return problems


_NAME_RE = re.compile(r"^(ov|op)[0-9a-f]{13}$")


def remove_container_links(host_netns: str | None, container_id: str) -> list[str]:
    """Delete every host-side link of the container (veth host ends, stray temp peers).

    Deleting a veth end deletes its peer, so the pod ends go with them, whether or not the
    netns still exists; pod links we did not create are never touched. Idempotent: returns the
    names deleted, possibly none.
    """
    removed: list[str] = []
    cid = _hex(container_id, 8)
    with _ns(host_netns) as host:
        for msg in host.get_links():
            name = msg.get("IFLA_IFNAME") or ""
            if _NAME_RE.match(name) and name[2:10] == cid:
                with contextlib.suppress(NetlinkError):
                    host.link("del", index=msg["index"])
                    removed.append(name)
    return removed
