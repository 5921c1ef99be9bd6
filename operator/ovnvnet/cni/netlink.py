"""Veth plumbing with pyroute2: the host end stays with OVS, the pod end goes into the netns.

Every function here is blocking (netlink round trips, namespace switches): the agent calls them
through ``asyncio.to_thread``. Sockets are opened per call, so calls on different threads never
share one.

Ownership is recorded, never inferred from a name: every host veth end carries the full container
id and the interface in its alias (``ovnvnet container=<id> interface=<name>``, IFLA_IFALIAS; an id
too long for the alias is recorded as ``sha256:<hex>`` of it), and the OVS Interface records the
container id in ``external_ids`` (ovs.py). DEL removes exactly the links whose alias names the
container (plus, for links plumbed before aliases existed, links without an alias named as an OVS
port recorded for that container), so it works without the pod, its annotation or the netns.

Host-side names fit IFNAMSIZ: ``ov`` + 13 hex digits (52 bits) of a hash of (container id,
interface). A name held by a link that is not ours (another container's, however unlikely at 52
bits, or anyone else's) is never touched: ADD takes the next of :data:`NAME_ATTEMPTS` candidate
names (the hash over the same pair and the attempt number), and ADD and CHECK find our link by
probing the candidates for our alias. A new pair is created under random ``ot``/``op`` names,
gets its alias, and only then takes its real names: any link with a real name has its owner on it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
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
    "find_host_veth",
    "host_veth_name",
    "link_alias",
    "remove_container_links",
]

NAME_ATTEMPTS = 4
_ALIAS_PREFIX = "ovnvnet container="
_ALIAS_IFACE = " interface="
_ALIAS_MAX_ID = 200  # IFALIASZ is 256 with the NUL; prefix, separator and IFNAMSIZ fit in the rest


class PlumbingError(Exception):
    """The netns or links are not in a state we can converge from; message says why."""


def _hex(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def host_veth_name(container_id: str, interface: str, attempt: int = 0) -> str:
    """Candidate ``attempt`` (0 = the usual one) for the host end of (container, interface)."""
    key = f"{container_id}/{interface}" + (f"#{attempt}" if attempt else "")
    return "ov" + _hex(key, 13)


def _owner_id(container_id: str) -> str:
    if len(container_id) <= _ALIAS_MAX_ID:
        return container_id
    return "sha256:" + hashlib.sha256(container_id.encode()).hexdigest()


def link_alias(container_id: str, interface: str) -> str:
    """The alias recording which container and interface a host veth end belongs to."""
    return f"{_ALIAS_PREFIX}{_owner_id(container_id)}{_ALIAS_IFACE}{interface}"


def _alias_owner(alias: str | None) -> str | None:
    """The container id recorded in an ovnvnet alias; None for any other alias or none."""
    if not alias or not alias.startswith(_ALIAS_PREFIX) or _ALIAS_IFACE not in alias:
        return None
    return alias[len(_ALIAS_PREFIX):].rsplit(_ALIAS_IFACE, 1)[0]


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
        "alias": msg.get("IFLA_IFALIAS"),
    }


def _find_own(ipr: IPRoute, container_id: str, interface: str) -> int | None:
    """Index of the host end whose alias says it is ours, among the candidate names."""
    alias = link_alias(container_id, interface)
    for attempt in range(NAME_ATTEMPTS):  # all of them: an earlier holder may have gone since
        try:
            msg = ipr.link("get", ifname=host_veth_name(container_id, interface, attempt))[0]
        except NetlinkError as e:
            if e.code != errno.ENODEV:
                raise
            continue
        if msg.get("IFLA_IFALIAS") == alias:
            return msg["index"]
    return None


def find_host_veth(host_netns: str | None, container_id: str, interface: str) -> str | None:
    """Name of the host end plumbed for (container, interface), if it exists."""
    with _ns(host_netns) as host:
        index = _find_own(host, container_id, interface)
        return None if index is None else _link(host, index)["ifname"]


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
    recreated = False
    with _ns(host_netns) as host, _ns(pod_netns) as pod:
        host_idx = _find_own(host, container_id, iface.interface)
        pod_idx = _lookup(pod, iface.interface)
        consistent = (
            host_idx is not None
            and pod_idx is not None
            and _link(pod, pod_idx)["peer_index"] == host_idx
        )
        if not consistent:
            recreated = True
            if host_idx is not None:
                host.link("del", index=host_idx)  # ours: the alias says so
                if pod_idx is not None:
                    pod_idx = _lookup(pod, iface.interface)  # deleting our host end removed it
            if pod_idx is not None:
                raise PlumbingError(
                    f"interface {iface.interface} already exists in {pod_netns} and is not "
                    f"an ovnvnet veth; refusing to replace it"
                )
            host_idx = _create_pair(host, pod, pod_netns, container_id, iface.interface)
            pod_idx = _lookup(pod, iface.interface)
            if pod_idx is None:
                raise PlumbingError(f"{iface.interface} vanished from {pod_netns} after creation")
        assert host_idx is not None and pod_idx is not None  # consistent, or just (re)created

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
            host_name=_link(host, host_idx)["ifname"],
            host_mac=_link(host, host_idx)["mac"],
            pod_mac=_link(pod, pod_idx)["mac"],
            recreated=recreated,
        )


def _create_pair(
    host: IPRoute, pod: IPRoute, pod_netns: str, container_id: str, interface: str
) -> int:
    """A new veth pair: host end with our alias under a free candidate name, the other end
    in the pod named ``interface``. Returns the host end's index; on failure removes the pair."""
    tmp = secrets.token_hex(7)[:13]
    host_tmp, peer_tmp = "ot" + tmp, "op" + tmp
    host.link("add", ifname=host_tmp, kind="veth", peer={"ifname": peer_tmp})
    host_idx = _lookup(host, host_tmp)
    if host_idx is None:
        raise PlumbingError(f"veth {host_tmp} vanished right after creation")
    try:
        # the kernel takes no alias at creation: set it before the link gets its real name
        host.link("set", index=host_idx, ifalias=link_alias(container_id, interface))
        _take_candidate_name(host, host_idx, container_id, interface)
        peer_idx = _lookup(host, peer_tmp)
        if peer_idx is None:
            raise PlumbingError(f"veth peer {peer_tmp} vanished right after creation")
        fd = os.open(pod_netns if "/" in pod_netns else f"/var/run/netns/{pod_netns}",
                     os.O_RDONLY)
        try:
            host.link("set", index=peer_idx, net_ns_fd=fd)
        finally:
            os.close(fd)
        peer_idx = _lookup(pod, peer_tmp)
        if peer_idx is None:
            raise PlumbingError(f"veth peer {peer_tmp} did not arrive in {pod_netns}")
        pod.link("set", index=peer_idx, ifname=interface)
    except BaseException:
        with contextlib.suppress(NetlinkError):
            host.link("del", index=host_idx)  # takes the peer with it, wherever it is
        raise
    return host_idx


def _take_candidate_name(host: IPRoute, index: int, container_id: str, interface: str) -> None:
    """Rename our new host end to the first candidate name nobody holds."""
    names = [host_veth_name(container_id, interface, a) for a in range(NAME_ATTEMPTS)]
    for name in names:
        if _lookup(host, name) is not None:
            continue  # another link's name: never ours to take or remove
        try:
            host.link("set", index=index, ifname=name)
            return
        except NetlinkError as e:
            if e.code != errno.EEXIST:  # EEXIST: taken meanwhile, try the next one
                raise
    raise PlumbingError(
        f"every host interface name for {interface} of container {container_id} "
        f"({', '.join(names)}) is held by a link that is not ours"
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
    try:
        with _ns(host_netns) as host, _ns(pod_netns) as pod:
            host_idx = _find_own(host, container_id, iface.interface)
            host_name = "" if host_idx is None else _link(host, host_idx)["ifname"]
            if host_idx is None:
                problems.append(
                    f"host veth for {iface.interface} (alias "
                    f"{link_alias(container_id, iface.interface)!r}) is missing"
                )
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


def remove_container_links(
    host_netns: str | None, container_id: str, ovs_ports: list[str] | tuple[str, ...] = ()
) -> list[str]:
    """Delete every host-side link the container's ADDs created; returns the names deleted.

    A link is the container's when its alias records this container id; a link without any
    ovnvnet alias also is when its name is one of ``ovs_ports``, the OVS ports recorded with
    this container id (links plumbed before aliases existed). Nothing is matched on a name
    alone. Deleting a veth end deletes its peer, so the pod ends go with them, whether or not
    the netns still exists; pod links we did not create are never touched. Idempotent.
    """
    removed: list[str] = []
    owner = _owner_id(container_id)
    legacy = set(ovs_ports)
    with _ns(host_netns) as host:
        for msg in host.get_links():
            name = msg.get("IFLA_IFNAME") or ""
            recorded = _alias_owner(msg.get("IFLA_IFALIAS"))
            if recorded == owner or (recorded is None and name in legacy):
                with contextlib.suppress(NetlinkError):
                    host.link("del", index=msg["index"])
                    removed.append(name)
    return removed
