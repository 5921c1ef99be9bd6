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
probing the candidates for our alias. A new pair is created under random ``ot``/``op`` names (the
``op`` end made right in the pod's netns), gets its alias, and only then takes its real names: any
link with a real name has its owner on it.

Addresses (every family of the interface, ``InterfaceResult.addresses``): IPv4 and IPv6 alike are
converged to exactly the annotation's (the kernel's IPv6 link-local address is left alone). IPv6
never waits for duplicate address detection: OVN already guarantees the address is unique on the
logical switch (the operator allocates it, port security pins it), so before any IPv6 address is
added the pod interface gets ``disable_ipv6=0`` (a runtime may disable IPv6 in the netns),
``accept_dad=0`` (not even the link-local address probes) and ``accept_ra=0`` (only the annotation
routes the pod; an agent whose /proc/sys is read-only keeps the defaults of these two, see
:func:`_ipv6_sysctls`), and each address is added with ``IFA_F_NODAD``, so it is usable at once
instead of tentative for a second or more. Routes: the network's ``routes`` of either family, plus, on the
interface marked ``defaultGateway``, the default route of each family (``0.0.0.0/0``, ``::/0``) via
that family's gateway.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import ipaddress
import logging
import os
import re
import secrets
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..model.annotation import IfaceAddress, InterfaceResult

__all__ = [
    "LinkState",
    "PlumbingError",
    "check_interface",
    "InterfaceFailed",
    "ensure_interface",
    "ensure_interfaces",
    "find_host_veth",
    "host_veth_name",
    "link_alias",
    "remove_container_links",
    "owned_links",
    "remove_interface",
    "wanted_routes",
]

NAME_ATTEMPTS = 4
_ALIAS_PREFIX = "ovnvnet container="
_ALIAS_IFACE = " interface="
_ALIAS_MAX_ID = 200  # IFALIASZ is 256 with the NUL; prefix, separator and IFNAMSIZ fit in the rest

IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
RT_SCOPE_UNIVERSE = 0
IPV6_MIN_MTU = 1280
_CLONE_NEWNET = 0x40000000
_IPV6_SYSCTLS = (("disable_ipv6", "0"), ("accept_dad", "0"), ("accept_ra", "0"))

log = logging.getLogger("ovnvnet.cni.netlink")
_warned_read_only = False  # the read-only /proc/sys is said once per process


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


def _netns_path(netns: str) -> str:
    return netns if "/" in netns else f"/var/run/netns/{netns}"


@contextlib.contextmanager
def _ns(netns: str | None) -> Iterator[IPRoute]:
    """Netlink in ``netns`` (a name or path), or in our own netns for None.

    The socket is made by this thread inside the namespace (setns(2) of the calling thread only,
    :func:`_in_netns`) and handed to pyroute2: a netlink socket stays bound to the namespace it
    was created in. pyroute2's own ``NetNS`` forks a child process per socket to do the same,
    which cost 50-100 ms per socket in the agent (profiled in bench/README.md, s4). No multicast
    groups: the socket answers our requests only and never queues the namespace's events."""
    if netns is None:
        with IPRoute(groups=0) as ipr:
            yield ipr
        return
    path = _netns_path(netns)
    if not os.path.exists(path):  # never create a missing netns
        raise FileNotFoundError(errno.ENOENT, "network namespace not found", netns)
    with _in_netns(path):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)
    try:
        ipr = IPRoute(fileno=sock.fileno(), groups=0)
    except BaseException:
        sock.close()
        raise
    sock.detach()  # the IPRoute owns the descriptor now
    with ipr:
        yield ipr


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


class InterfaceFailed(Exception):
    """:func:`ensure_interfaces` could not plumb ``interface``: ``error`` (a
    :class:`PlumbingError` or an ``OSError``) says why."""

    def __init__(self, interface: str, error: Exception) -> None:
        super().__init__(str(error))
        self.interface = interface
        self.error = error


def ensure_interface(
    host_netns: str | None, pod_netns: str, container_id: str, iface: InterfaceResult
) -> LinkState:
    """Converge one interface: veth pair, pod end named/addressed as the annotation says."""
    _check_ipv6_mtu(iface)  # before anything is created
    with _ns(host_netns) as host, _ns(pod_netns) as pod:
        return _ensure(host, pod, pod_netns, container_id, iface)


def ensure_interfaces(
    host_netns: str | None, pod_netns: str, container_id: str, ifaces: list[InterfaceResult]
) -> list[LinkState]:
    """:func:`ensure_interface` for each interface in turn, over one netlink socket per
    namespace. A missing namespace raises ``FileNotFoundError``; any other failure raises
    :class:`InterfaceFailed` naming the interface (those before it stay plumbed: DEL removes
    them, as it would after single calls)."""
    for iface in ifaces:
        try:
            _check_ipv6_mtu(iface)  # before anything is created
        except PlumbingError as e:
            raise InterfaceFailed(iface.interface, e) from e
    with _ns(host_netns) as host, _ns(pod_netns) as pod:
        out = []
        for iface in ifaces:
            try:
                out.append(_ensure(host, pod, pod_netns, container_id, iface))
            except FileNotFoundError:
                raise
            except (PlumbingError, OSError) as e:
                raise InterfaceFailed(iface.interface, e) from e
        return out


def _ensure(
    host: IPRoute, pod: IPRoute, pod_netns: str, container_id: str, iface: InterfaceResult
) -> LinkState:
    recreated = False
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
        host_idx, pod_idx = _create_pair(host, pod, pod_netns, container_id, iface.interface,
                                         iface.mac)
    assert host_idx is not None and pod_idx is not None  # consistent, or just (re)created

    # pod end: MAC, MTU, IPv6 settings, up, addresses, routes (all idempotent)
    settings: dict = {"address": iface.mac}
    if iface.mtu is not None:
        settings["mtu"] = iface.mtu
    if _has_ipv6(iface):  # before up: the link-local address must not probe either
        pod.link("set", index=pod_idx, **settings)
        settings = {}
        try:
            _ipv6_sysctls(pod_netns, iface)
        except PlumbingError:
            if recreated:  # nothing half-done: the pair we just made goes again
                host.link("del", index=host_idx)
            raise
    pod.link("set", index=pod_idx, state="up", **settings)  # one message: MAC, MTU, then up
    if recreated:  # a new link has no address of its own to remove (nor a global IPv6 one)
        _add_addresses(pod, pod_idx, iface.addresses)
    else:
        _converge_addresses(pod, pod_idx, iface)
    for dst, gw in _wanted_routes(iface):
        pod.route("replace", dst=dst, gateway=gw, oif=pod_idx, family=_family_of(dst))

    # host end: MTU and up (its MAC does not matter to OVN)
    host.link("set", index=host_idx, state="up",
              **({"mtu": iface.mtu} if iface.mtu is not None else {}))
    host_link = _link(host, host_idx)
    return LinkState(
        host_name=host_link["ifname"],
        host_mac=host_link["mac"],
        # a new pod end was made with the annotation's MAC; an existing one is read back
        pod_mac=iface.mac if recreated else _link(pod, pod_idx)["mac"],
        recreated=recreated,
    )


def _create_pair(
    host: IPRoute, pod: IPRoute, pod_netns: str, container_id: str, interface: str, mac: str
) -> tuple[int, int]:
    """A new veth pair: host end with our alias under a free candidate name, the other end made
    right in the pod's netns (with ``mac``, one request) under a temporary name and renamed
    ``interface`` last. Returns (host index, pod index); on failure removes the pair."""
    tmp = secrets.token_hex(7)[:13]
    host_tmp, peer_tmp = "ot" + tmp, "op" + tmp
    fd = os.open(_netns_path(pod_netns), os.O_RDONLY)
    try:
        host.link("add", ifname=host_tmp, kind="veth",
                  peer={"ifname": peer_tmp, "net_ns_fd": fd, "address": mac})
    finally:
        os.close(fd)
    host_idx = _lookup(host, host_tmp)
    if host_idx is None:
        raise PlumbingError(f"veth {host_tmp} vanished right after creation")
    try:
        # the kernel takes no alias at creation: set it before the link gets its real name
        host.link("set", index=host_idx, ifalias=link_alias(container_id, interface))
        _take_candidate_name(host, host_idx, container_id, interface)
        pod_idx = _lookup(pod, peer_tmp)
        if pod_idx is None:
            raise PlumbingError(f"veth peer {peer_tmp} did not arrive in {pod_netns}")
        pod.link("set", index=pod_idx, ifname=interface)
    except BaseException:
        with contextlib.suppress(NetlinkError):
            host.link("del", index=host_idx)  # takes the peer with it, wherever it is
        raise
    return host_idx, pod_idx


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


def _has_ipv6(iface: InterfaceResult) -> bool:
    return any(a.family == 6 for a in iface.addresses)


def _family_of(text: str) -> int:
    """The address family (AF_INET or AF_INET6) of an address or CIDR."""
    return socket.AF_INET6 if ":" in text else socket.AF_INET


def _canonical(ip: str, prefix: int) -> tuple[str, int]:
    return (ipaddress.ip_address(ip).compressed, prefix)


def _canonical_net(cidr: str) -> str:
    return ipaddress.ip_network(cidr, strict=False).compressed


def _wanted_routes(iface: InterfaceResult) -> list[tuple[str, str]]:
    routes = [(r.dst, r.gw) for r in iface.routes]
    if iface.default_gateway:
        # only the interface marked defaultGateway touches the pod's default routes: one per family
        for a in iface.addresses:
            routes.append(("0.0.0.0/0" if a.family == 4 else "::/0", a.gateway))
    return routes


def wanted_routes(iface: InterfaceResult) -> list[tuple[str, str]]:
    """The (dst, gateway) routes the interface gets: the network's, then the default routes."""
    return _wanted_routes(iface)


@contextlib.contextmanager
def _in_netns(netns: str) -> Iterator[None]:
    """Run this thread (only) inside ``netns``, for what netlink cannot set (IPv6 sysctls).

    setns(2) with CLONE_NEWNET changes the calling thread's namespace alone; the thread's own
    namespace is restored before it returns, and a thread that cannot get back is not left
    running in the pod's namespace (the agent stops instead of serving from the wrong one)."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(_netns_path(netns), os.O_RDONLY)
        try:
            if libc.setns(target, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns into {netns}: {os.strerror(err)}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            if libc.setns(own, _CLONE_NEWNET) != 0:  # pragma: no cover - the kernel never refuses
                os._exit(70)  # a thread stuck in a pod's netns must not serve anything else
    finally:
        os.close(own)


def _check_ipv6_mtu(iface: InterfaceResult) -> None:
    if _has_ipv6(iface) and iface.mtu is not None and iface.mtu < IPV6_MIN_MTU:
        raise PlumbingError(
            f"interface {iface.interface} has MTU {iface.mtu}, below IPv6's minimum "
            f"{IPV6_MIN_MTU}: the kernel disables IPv6 on it, so its IPv6 address cannot be set"
        )


def _ipv6_sysctls(pod_netns: str, iface: InterfaceResult) -> None:
    """IPv6 on, no duplicate address detection, no router advertisements on the pod interface.

    Only values that differ are written. An agent whose /proc/sys is read-only (a container that
    is not privileged: the runtime mounts it so) cannot write any: then ``accept_dad`` and
    ``accept_ra`` keep the netns defaults (only the kernel's link-local address probes; ours
    carry IFA_F_NODAD and are usable at once), and IPv6 disabled on the interface is an error
    naming the setting, since no IPv6 address can be added then."""
    global _warned_read_only
    with _in_netns(pod_netns):
        conf = f"/proc/sys/net/ipv6/conf/{iface.interface}"
        if not os.path.isdir(conf):
            raise PlumbingError(
                f"IPv6 is not available in {pod_netns} (no {conf}: the kernel runs without "
                f"IPv6?), so interface {iface.interface} cannot get its IPv6 address"
            )
        for key, value in _IPV6_SYSCTLS:
            path = f"{conf}/{key}"
            with open(path) as f:
                if f.read().strip() == value:
                    continue
            try:
                with open(path, "w") as f:
                    f.write(value)
            except OSError as e:
                if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                    raise
                if key == "disable_ipv6":
                    raise PlumbingError(
                        f"IPv6 is disabled on {iface.interface} in {pod_netns} "
                        f"(net.ipv6.conf.{iface.interface}.disable_ipv6=1, from the namespace's "
                        f"default) and the agent cannot enable it: {e.strerror} ({path}); let the "
                        f"runtime leave IPv6 enabled in pod namespaces"
                    ) from None
                if not _warned_read_only:
                    _warned_read_only = True
                    log.warning(
                        "cannot write %s (%s): pod interfaces keep the namespace's accept_dad and "
                        "accept_ra; ovnvnet's IPv6 addresses skip DAD anyway (IFA_F_NODAD)",
                        path, e.strerror,
                    )


def _current_addresses(ipr: IPRoute, index: int) -> dict[tuple[str, int], int]:
    """The interface's addresses we manage, with their IFA flags: every IPv4 address and the
    global IPv6 ones (the kernel's link-local address is not ours)."""
    out: dict[tuple[str, int], int] = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        for a in ipr.get_addr(index=index, family=family):
            if family == socket.AF_INET6 and a["scope"] != RT_SCOPE_UNIVERSE:
                continue
            flags = a.get("IFA_FLAGS")
            out[_canonical(a.get("IFA_ADDRESS"), a["prefixlen"])] = (
                a["flags"] if flags is None else flags
            )
    return out


def _converge_addresses(ipr: IPRoute, index: int, iface: InterfaceResult) -> None:
    """Exactly the annotation's addresses: others removed, missing ones added (IPv6 without
    DAD). A wanted IPv6 address stuck tentative or failed is re-added without DAD."""
    want = {_canonical(a.ip, a.prefix_length): a for a in iface.addresses}
    have = _current_addresses(ipr, index)
    removed = False
    for (ip, prefix), flags in have.items():
        stuck = ":" in ip and flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)
        if (ip, prefix) not in want or stuck:
            ipr.addr("del", index=index, address=ip, prefixlen=prefix)
            removed = True
    if removed:
        have = _current_addresses(ipr, index)
    _add_addresses(ipr, index, [a for key, a in want.items() if key not in have])


def _add_addresses(ipr: IPRoute, index: int, addresses: Iterable[IfaceAddress]) -> None:
    """Add each address (IPv6 without DAD)."""
    for a in addresses:
        ip, prefix = _canonical(a.ip, a.prefix_length)
        if a.family == 6:
            ipr.addr("add", index=index, address=ip, prefixlen=prefix, flags=IFA_F_NODAD)
        else:
            ipr.addr("add", index=index, address=ip, prefixlen=prefix)


def _routes(ipr: IPRoute, index: int) -> set[tuple[str, str]]:
    """The interface's gateway routes in the main table, both families, canonical text."""
    out = set()
    for family, any_addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        for r in ipr.get_routes(family=family, oif=index, table=254):
            gw = r.get("RTA_GATEWAY")
            if gw is None:
                continue
            dst = _canonical_net(f"{r.get('RTA_DST') or any_addr}/{r['dst_len']}")
            out.add((dst, ipaddress.ip_address(gw).compressed))
    return out


def _address_problems(ipr: IPRoute, index: int, iface: InterfaceResult) -> list[str]:
    """Each wanted address of every family present and usable (not tentative, no DAD failure)."""
    have = _current_addresses(ipr, index)
    problems = []
    for a in iface.addresses:
        flags = have.get(_canonical(a.ip, a.prefix_length))
        if flags is None:
            problems.append(f"{iface.interface} lacks address {a.ip}/{a.prefix_length}")
        elif flags & IFA_F_DADFAILED:
            problems.append(f"{iface.interface} address {a.ip}/{a.prefix_length} failed DAD")
        elif flags & IFA_F_TENTATIVE:
            problems.append(f"{iface.interface} address {a.ip}/{a.prefix_length} is tentative")
    return problems


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
            problems += _address_problems(pod, pod_idx, iface)
            have_routes = _routes(pod, pod_idx)
            for dst, gw in _wanted_routes(iface):
                if (_canonical_net(dst), ipaddress.ip_address(gw).compressed) not in have_routes:
                    problems.append(f"{iface.interface} lacks route {dst} via {gw}")
    except FileNotFoundError:
        problems.append(f"network namespace {pod_netns} does not exist")
    return problems


def remove_container_links(
    host_netns: str | None, container_id: str, ovs_ports: list[str] | tuple[str, ...] = (),
    only: frozenset[str] | None = None,
) -> list[str]:
    """Delete every host-side link the container's ADDs created; returns the names deleted.

    A link is the container's when its alias records this container id; a link without any
    ovnvnet alias also is when its name is one of ``ovs_ports``, the OVS ports recorded with
    this container id (links plumbed before aliases existed). Nothing is matched on a name
    alone. Deleting a veth end deletes its peer, so the pod ends go with them, whether or not
    the netns still exists; pod links we did not create are never touched. Idempotent.
    ``only``: delete just the container's links of these names (one attachment's DEL).
    """
    removed: list[str] = []
    owner = _owner_id(container_id)
    legacy = set(ovs_ports)
    with _ns(host_netns) as host:
        for msg in host.get_links():
            name = msg.get("IFLA_IFNAME") or ""
            recorded = _alias_owner(msg.get("IFLA_IFALIAS"))
            if only is not None and name not in only:
                continue
            if recorded == owner or (recorded is None and name in legacy):
                with contextlib.suppress(NetlinkError):
                    host.link("del", index=msg["index"])
                    removed.append(name)
    return removed


def remove_interface(host_netns: str | None, container_id: str, interface: str) -> str | None:
    """Delete the veth plumbed for (container, interface), found by its alias (never by a name
    alone); its pod end goes with it. Returns the host end's name, None if there was none."""
    with _ns(host_netns) as host:
        index = _find_own(host, container_id, interface)
        if index is None:
            return None
        name = _link(host, index)["ifname"]
        with contextlib.suppress(NetlinkError):
            host.link("del", index=index)
        return str(name)


_TEMP_NAME = re.compile(r"o[tp][0-9a-f]{13}")


def owned_links(host_netns: str | None) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """Host links with an ovnvnet alias (name -> (recorded container id, interface)), and links
    still under a temporary ``ot``/``op`` name (a creation cut short). For audits."""
    links: dict[str, tuple[str, str]] = {}
    temporary: list[str] = []
    with _ns(host_netns) as host:
        for msg in host.get_links():
            name = msg.get("IFLA_IFNAME") or ""
            alias = msg.get("IFLA_IFALIAS")
            owner = _alias_owner(alias)
            if owner is not None:
                links[name] = (owner, str(alias).rsplit(_ALIAS_IFACE, 1)[1])
            elif _TEMP_NAME.fullmatch(name):
                temporary.append(name)
    return links, temporary
