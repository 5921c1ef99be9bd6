"""VirtualNetwork spec: parsing, validation and the "would this strand an allocation" check.

The spec arrives as an untrusted dict from the API server (the CRD schema may be loose or
bypassed), so every field is checked here, and every failure is a :class:`SpecError` whose
message names the field and the value.
"""

from __future__ import annotations

import bisect
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import netaddr

__all__ = [
    "MAX_EXCLUDE_ENTRIES",
    "MAX_MTU",
    "MAX_ROUTES",
    "MIN_MTU",
    "NetworkSpec",
    "Route",
    "SubnetSpec",
    "SpecError",
    "display",
    "parse_cidr",
    "parse_ip",
    "parse_ipv4",
    "parse_ipv4_cidr",
    "parse_ipv6",
    "parse_network_spec",
    "spec_conflicts",
    "subnets_overlap",
]

MIN_MTU = 576
MIN_IPV6_MTU = 1280
MAX_MTU = 9216
MAX_EXCLUDE_ENTRIES = 4096
MAX_ROUTES = 256
# Longest IPv4 "a.b.c.d/nn" is 18 characters; anything much longer is not worth parsing.
_MAX_ADDR_LEN = 64
# How many per-address conflicts to spell out before summarising the rest.
_MAX_CONFLICT_LINES = 10

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_RE = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_PREFIX_RE = re.compile(r"(?:3[0-2]|[12]?[0-9])")
# IPv6 in hex-and-colon form only: no zone ("%eth0"), no embedded dotted IPv4 ("::ffff:1.2.3.4").
_IPV6_RE = re.compile(r"[0-9A-Fa-f:]{2,39}")
_PREFIX6_RE = re.compile(r"(?:12[0-8]|1[01][0-9]|[1-9]?[0-9])")


class SpecError(ValueError):
    """A VirtualNetwork spec is invalid; ``str(e)`` is one specific user-facing message."""


def display(value: Any, limit: int = 64) -> str:
    """Quote a user-supplied value for a message: bounded length, escaped, always encodable."""
    if isinstance(value, str):
        text = value if len(value) <= limit else value[:limit] + "..."
        out = json.dumps(text, ensure_ascii=False)
    else:
        try:
            out = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            out = type(value).__name__
        if len(out) > limit:
            out = out[:limit] + "..."
    # Lone surrogates would make the message unencodable for logs and Kubernetes events.
    return out.encode("utf-8", "backslashreplace").decode("utf-8")


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for "got <type>" messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def parse_ipv4(text: Any) -> netaddr.IPAddress | None:
    """Strict dotted-quad IPv4 (no leading zeros, no shorthand); None if not one."""
    if not isinstance(text, str) or len(text) > _MAX_ADDR_LEN:
        return None
    if not _IPV4_RE.fullmatch(text):
        return None
    a, b, c, d = (int(x) for x in text.split("."))
    return netaddr.IPAddress((a << 24) | (b << 16) | (c << 8) | d, 4)


def parse_ipv6(text: Any) -> netaddr.IPAddress | None:
    """Strict IPv6 (RFC 4291 text form, hex groups and one "::"; no zone, no dotted tail)."""
    if not isinstance(text, str) or not _IPV6_RE.fullmatch(text):
        return None
    try:
        return netaddr.IPAddress(int(ipaddress.IPv6Address(text)), 6)
    except ValueError:
        return None


def parse_ip(text: Any) -> netaddr.IPAddress | None:
    """An IPv4 (strict dotted quad) or IPv6 (strict, see :func:`parse_ipv6`) address."""
    if isinstance(text, str) and ":" in text:
        return parse_ipv6(text)
    return parse_ipv4(text)


def parse_cidr(text: Any) -> tuple[netaddr.IPAddress, int] | None:
    """Strict "address/nn" of either family (0..32 or 0..128); host bits are kept."""
    if not isinstance(text, str) or len(text) > _MAX_ADDR_LEN or text.count("/") != 1:
        return None
    addr_text, prefix_text = text.split("/")
    addr = parse_ip(addr_text)
    if addr is None:
        return None
    if not (_PREFIX_RE if addr.version == 4 else _PREFIX6_RE).fullmatch(prefix_text):
        return None
    return addr, int(prefix_text)


def family_name(version: int) -> str:
    return "IPv4" if version == 4 else "IPv6"


def parse_ipv4_cidr(text: Any) -> tuple[netaddr.IPAddress, int] | None:
    """Strict "a.b.c.d/nn"; returns (address, prefix) without normalising host bits."""
    if not isinstance(text, str) or len(text) > _MAX_ADDR_LEN or text.count("/") != 1:
        return None
    addr_text, prefix_text = text.split("/")
    addr = parse_ipv4(addr_text)
    if addr is None or not _PREFIX_RE.fullmatch(prefix_text):
        return None
    return addr, int(prefix_text)


def _network(addr: netaddr.IPAddress, prefix: int) -> netaddr.IPNetwork:
    return netaddr.IPNetwork(f"{addr}/{prefix}").cidr


@dataclass(frozen=True)
class Route:
    """An extra route for the interface: ``dst`` a normalised CIDR, ``gw`` an address."""

    dst: str
    gw: str

    def to_dict(self) -> dict[str, str]:
        return {"dst": self.dst, "gw": self.gw}


@dataclass(frozen=True)
class SubnetSpec:
    """One address family of a network: its subnet, gateway, exclusions and routes.

    The usable host range is ``first + 1 .. last - 1`` for IPv4 (network and broadcast
    addresses) and ``first + 1 .. last`` for IPv6 (the network address is the subnet-router
    anycast address, RFC 4291 2.6.1; IPv6 has no broadcast)."""

    subnet: netaddr.IPNetwork
    gateway: netaddr.IPAddress
    exclude: tuple[tuple[int, int], ...] = ()
    routes: tuple[Route, ...] = ()
    # Range starts, for bisect in is_excluded(); derived, so not part of equality.
    _starts: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_starts", tuple(lo for lo, _ in self.exclude))

    @property
    def prefix_length(self) -> int:
        return int(self.subnet.prefixlen)

    @property
    def version(self) -> int:
        return int(self.subnet.version)

    @property
    def first(self) -> int:
        """The network address as an int."""
        return int(self.subnet.first)

    @property
    def last(self) -> int:
        """The last address as an int (the broadcast address for IPv4)."""
        return int(self.subnet.last)

    @property
    def host_first(self) -> int:
        return self.first + 1

    @property
    def host_last(self) -> int:
        return self.last - 1 if self.version == 4 else self.last

    def contains(self, ip: int) -> bool:
        return self.first <= ip <= self.last

    def is_excluded(self, ip: int) -> bool:
        i = bisect.bisect_right(self._starts, ip) - 1
        return i >= 0 and ip <= self.exclude[i][1]

    def exclusion_at(self, ip: int) -> tuple[int, int] | None:
        """The exclusion range containing ``ip``, if any."""
        i = bisect.bisect_right(self._starts, ip) - 1
        if i >= 0 and ip <= self.exclude[i][1]:
            return self.exclude[i]
        return None

    def excluded_count(self, lo: int, hi: int) -> int:
        """How many addresses in [lo, hi] are excluded (no scan: ranges are merged)."""
        total = 0
        for a, b in self.exclude:
            a, b = max(a, lo), min(b, hi)
            if a <= b:
                total += b - a + 1
        return total

    def address(self, ip: int) -> netaddr.IPAddress:
        return netaddr.IPAddress(ip, self.version)

    def exclude_texts(self) -> list[str]:
        out = []
        for lo, hi in self.exclude:
            a = str(self.address(lo))
            out.append(a if lo == hi else f"{a}..{self.address(hi)}")
        return out


@dataclass(frozen=True)
class NetworkSpec:
    """A network of one or two address families (``families``: at most one per family, IPv4
    first). ``subnet``, ``gateway``, ``exclude``, ``version`` and the address helpers are those
    of the primary family (IPv4 when there is one), so code written for IPv4-only networks reads
    what it always read; ``routes`` are every family's (a pod gets all of them)."""

    families: tuple[SubnetSpec, ...]
    mtu: int | None = None
    routed: bool = True
    """Joined to the shared router ovnvnet-router (the gateway answers, networks route to each
    other). False: an isolated L2 network, no router port."""
    multus: bool = True
    """Published for Multus as a NetworkAttachmentDefinition (reconcile/nad.py), so pods may ask
    for it in ``k8s.v1.cni.cncf.io/networks``. False: no NAD (one the operator published is
    deleted) and such requests are refused; ``ovnNetwork`` requests are served as ever."""

    @property
    def primary(self) -> SubnetSpec:
        return self.families[0]

    def family(self, version: int) -> SubnetSpec | None:
        """The family ``version`` (4 or 6), if the network has it."""
        return next((f for f in self.families if f.version == version), None)

    @property
    def versions(self) -> tuple[int, ...]:
        return tuple(f.version for f in self.families)

    @property
    def dual_stack(self) -> bool:
        return len(self.families) > 1

    @property
    def subnet(self) -> netaddr.IPNetwork:
        return self.primary.subnet

    @property
    def gateway(self) -> netaddr.IPAddress:
        return self.primary.gateway

    @property
    def exclude(self) -> tuple[tuple[int, int], ...]:
        return self.primary.exclude

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(r for f in self.families for r in f.routes)

    @property
    def prefix_length(self) -> int:
        return self.primary.prefix_length

    @property
    def version(self) -> int:
        return self.primary.version

    @property
    def first(self) -> int:
        return self.primary.first

    @property
    def last(self) -> int:
        return self.primary.last

    def contains(self, ip: int) -> bool:
        return self.primary.contains(ip)

    def is_excluded(self, ip: int) -> bool:
        return self.primary.is_excluded(ip)

    def exclusion_at(self, ip: int) -> tuple[int, int] | None:
        return self.primary.exclusion_at(ip)

    def excluded_count(self, lo: int, hi: int) -> int:
        return self.primary.excluded_count(lo, hi)

    def address(self, ip: int) -> netaddr.IPAddress:
        return self.primary.address(ip)

    def subnets_text(self) -> str:
        return ", ".join(str(f.subnet) for f in self.families)

    def to_dict(self) -> dict[str, Any]:
        """The spec in the CRD's form: a single-family network as ``subnet``/``gateway`` (exactly
        what an IPv4 network always wrote), a dual-stack one as ``subnets``/``gateways``."""
        out: dict[str, Any]
        if self.dual_stack:
            out = {"subnets": [str(f.subnet) for f in self.families],
                   "gateways": [str(f.gateway) for f in self.families]}
        else:
            out = {"subnet": str(self.subnet), "gateway": str(self.gateway)}
        out["excludeIPs"] = [t for f in self.families for t in f.exclude_texts()]
        if self.mtu is not None:
            out["mtu"] = self.mtu
        if self.routes:
            out["routes"] = [r.to_dict() for r in self.routes]
        if not self.routed:
            out["routed"] = False
        if not self.multus:
            out["multus"] = False
        return out


def _merge(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return tuple(merged)


MIN_PREFIX_V6 = 48
"""The shortest IPv6 subnet: a /48 is a whole site's allocation (RFC 6177), never one L2 segment;
a shorter prefix on a logical switch is almost surely a typo that would swallow other networks'
ranges (and be refused as overlapping). Nothing in the allocator grows with the prefix (free runs,
exact int counters), so the bound is about meaning, not cost."""
MAX_PREFIX_V6 = 126
"""The longest IPv6 subnet: a /126 has 4 addresses: the subnet-router anycast address (the network
address, never handed out), the gateway, and 2 hosts (like IPv4's /30). A /127 would leave no host
after the anycast address and the gateway, a /128 not even the gateway."""


def _family_of_text(text: str) -> str:
    """The family a malformed address was meant to be, for its message (":" means IPv6)."""
    return "IPv6" if ":" in text else "IPv4"


def _parse_one_subnet(raw: Any, name: str) -> netaddr.IPNetwork:
    if not isinstance(raw, str):
        raise SpecError(
            f'{name} must be a string like "172.16.25.0/24", got {json_type(raw)}'
        )
    text = raw.strip()
    parsed = parse_cidr(text)
    if parsed is None:
        bare = parse_ip(text)
        if bare is not None:
            example = "172.16.25.0/24" if bare.version == 4 else "fd00:1::/64"
            raise SpecError(
                f'{name} {display(raw)} has no prefix length; write it as a CIDR like "{example}"'
            )
        raise SpecError(f"{name} {display(raw)} is not a valid {_family_of_text(text)} CIDR")
    addr, prefix = parsed
    net = _network(addr, prefix)
    if int(addr) != net.first:
        raise SpecError(f"{name} {display(raw)} has host bits set; did you mean {net}?")
    if addr.version == 4 and prefix > 30:
        raise SpecError(
            f"{name} {net} is too small: a /{prefix} leaves fewer than 2 usable "
            f"addresses; use /30 or shorter"
        )
    if addr.version == 6 and prefix > MAX_PREFIX_V6:
        raise SpecError(
            f"{name} {net} is too small: a /{prefix} leaves no host after the subnet-router "
            f"anycast address and the gateway; use /{MAX_PREFIX_V6} or shorter"
        )
    if addr.version == 6 and prefix < MIN_PREFIX_V6:
        raise SpecError(
            f"{name} {net} is too large: an IPv6 network is one L2 segment, at most a "
            f"/{MIN_PREFIX_V6} (use /64 for a typical one)"
        )
    return net


def _parse_subnets(spec: Mapping[str, Any]) -> list[netaddr.IPNetwork]:
    """``subnet`` (one family) or ``subnets`` (one per family), IPv4 first."""
    one, many = spec.get("subnet"), spec.get("subnets")
    if one is not None and many is not None:
        raise SpecError(
            "spec.subnet and spec.subnets are exclusive; list every family's subnet in spec.subnets"
        )
    if many is None:
        if one is None:
            raise SpecError('spec.subnet is required, e.g. "172.16.25.0/24"')
        return [_parse_one_subnet(one, "spec.subnet")]
    if not isinstance(many, (list, tuple)):
        raise SpecError(
            f'spec.subnets must be a list like ["10.1.0.0/24", "fd00:1::/64"], got {json_type(many)}'
        )
    if not 1 <= len(many) <= 2:
        raise SpecError(
            f"spec.subnets has {len(many)} entries; list one subnet per family (1 or 2)"
        )
    nets: list[netaddr.IPNetwork] = []
    for i, raw in enumerate(many):
        net = _parse_one_subnet(raw, f"spec.subnets[{i}]")
        same = next((n for n in nets if n.version == net.version), None)
        if same is not None:
            raise SpecError(
                f"spec.subnets lists two {family_name(net.version)} subnets ({same}, {net}); "
                f"at most one per family is allowed"
            )
        nets.append(net)
    return sorted(nets, key=lambda n: n.version)


def _parse_address_in(
    raw: Any, field_name: str, subnet: netaddr.IPNetwork, allow_edges: bool = False
) -> netaddr.IPAddress:
    if not isinstance(raw, str):
        raise SpecError(
            f'{field_name} must be a string like "172.16.25.1", got {json_type(raw)}'
        )
    ip = parse_ip(raw.strip())
    if ip is None:
        raise SpecError(f"{field_name} {display(raw)} is not a valid {_family_of_text(raw)} address")
    if ip.version != subnet.version:
        raise SpecError(
            f"{field_name} {ip} is an {family_name(ip.version)} address, but subnet {subnet} is "
            f"{family_name(subnet.version)}"
        )
    if not (subnet.first <= int(ip) <= subnet.last):
        raise SpecError(f"{field_name} {ip} is outside subnet {subnet}")
    if not allow_edges:
        if int(ip) == subnet.first:
            if subnet.version == 6:
                raise SpecError(
                    f"{field_name} {ip} is the subnet-router anycast address of subnet {subnet}"
                )
            raise SpecError(f"{field_name} {ip} is the network address of subnet {subnet}")
        if int(ip) == subnet.last and subnet.version == 4:
            raise SpecError(f"{field_name} {ip} is the broadcast address of subnet {subnet}")
    return ip


def _subnet_for(
    nets: Sequence[netaddr.IPNetwork], ip: netaddr.IPAddress, name: str
) -> netaddr.IPNetwork:
    """The network's subnet of ``ip``'s family, or a message saying there is none."""
    for net in nets:
        if net.version == ip.version:
            return net
    subnets = ", ".join(str(n) for n in nets)
    raise SpecError(
        f"{name} {ip} is an {family_name(ip.version)} address, but the network has no "
        f"{family_name(ip.version)} subnet ({subnets})"
    )


def _parse_gateways(spec: Mapping[str, Any], nets: list[netaddr.IPNetwork]) -> dict[int, netaddr.IPAddress]:
    """``gateway`` (applies to the subnet of its family) or ``gateways`` (one per family); a
    family not given one gets its first host address."""
    one, many = spec.get("gateway"), spec.get("gateways")
    if one == "":
        one = None
    if one is not None and many is not None:
        raise SpecError(
            "spec.gateway and spec.gateways are exclusive; list every family's gateway in "
            "spec.gateways"
        )
    given: list[tuple[str, Any]] = []
    if one is not None:
        given.append(("spec.gateway", one))
    elif many is not None:
        if not isinstance(many, (list, tuple)):
            raise SpecError(
                f'spec.gateways must be a list like ["10.1.0.1", "fd00:1::1"], got {json_type(many)}'
            )
        if len(many) > 2:
            raise SpecError(f"spec.gateways has {len(many)} entries; at most one per family (2)")
        given += [(f"spec.gateways[{i}]", raw) for i, raw in enumerate(many)]
    out: dict[int, netaddr.IPAddress] = {}
    for name, raw in given:
        if not isinstance(raw, str):
            raise SpecError(f'{name} must be a string like "172.16.25.1", got {json_type(raw)}')
        ip = parse_ip(raw.strip())
        if ip is None:
            raise SpecError(f"{name} {display(raw)} is not a valid {_family_of_text(raw)} address")
        if len(nets) == 1 and ip.version != nets[0].version:
            raise SpecError(
                f"{name} {ip} is an {family_name(ip.version)} address, but subnet {nets[0]} is "
                f"{family_name(nets[0].version)}"
            )
        subnet = _subnet_for(nets, ip, name)
        if ip.version in out:
            raise SpecError(
                f"spec.gateways lists two {family_name(ip.version)} gateways ({out[ip.version]}, "
                f"{ip}); at most one per family is allowed"
            )
        out[ip.version] = _parse_address_in(raw, name, subnet)
    for net in nets:
        out.setdefault(net.version, netaddr.IPAddress(net.first + 1, net.version))
    return out


def _parse_excludes(raw: Any, nets: list[netaddr.IPNetwork]) -> dict[int, tuple[tuple[int, int], ...]]:
    """Per family: merged ranges. Each entry applies to the subnet of its family."""
    if raw is None:
        return {}
    if not isinstance(raw, (list, tuple)):
        raise SpecError(f"spec.excludeIPs must be a list of addresses, got {json_type(raw)}")
    if len(raw) > MAX_EXCLUDE_ENTRIES:
        raise SpecError(
            f"spec.excludeIPs has {len(raw)} entries; at most {MAX_EXCLUDE_ENTRIES} are "
            f'allowed (use "a..b" ranges)'
        )
    ranges: dict[int, list[tuple[int, int]]] = {}
    for i, item in enumerate(raw):
        name = f"spec.excludeIPs[{i}]"
        if not isinstance(item, str):
            raise SpecError(
                f'{name} must be a string like "172.16.25.9" or "172.16.25.10..172.16.25.20", '
                f"got {json_type(item)}"
            )
        text = item.strip()
        if ".." in text:
            parts = text.split("..")
            if len(parts) != 2:
                raise SpecError(f'{name} {display(item)} is not an address or an "a..b" range')
            lo_ip, hi_ip = parse_ip(parts[0].strip()), parse_ip(parts[1].strip())
            if lo_ip is None or hi_ip is None:
                raise SpecError(f'{name} {display(item)} is not an address or an "a..b" range')
            if lo_ip.version != hi_ip.version:
                raise SpecError(f"{name} {display(item)}: start and end are of different families")
        else:
            lo_ip = parse_ip(text)
            if lo_ip is None:
                raise SpecError(f'{name} {display(item)} is not an address or an "a..b" range')
            hi_ip = lo_ip
        lo, hi = int(lo_ip), int(hi_ip)
        if lo > hi:
            raise SpecError(f"{name} {display(item)}: start {lo_ip} is after end {hi_ip}")
        subnet = _subnet_for(nets, lo_ip, name)
        for ip in (lo_ip, hi_ip):
            if not (subnet.first <= int(ip) <= subnet.last):
                raise SpecError(f"{name} {ip} is outside subnet {subnet}")
        ranges.setdefault(lo_ip.version, []).append((lo, hi))
    return {v: _merge(r) for v, r in ranges.items()}


def _parse_mtu(raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise SpecError(f"spec.mtu must be an integer, got {json_type(raw)} {display(raw)}")
    if not (MIN_MTU <= raw <= MAX_MTU):
        shown = raw if abs(raw) < 10**12 else "(huge number)"
        raise SpecError(f"spec.mtu {shown} is out of range {MIN_MTU}..{MAX_MTU}")
    return raw


def _parse_routes(raw: Any, nets: list[netaddr.IPNetwork]) -> dict[int, tuple[Route, ...]]:
    """Per family: each route's ``dst`` and ``gw`` are of one family, ``gw`` inside its subnet."""
    if raw is None:
        return {}
    if not isinstance(raw, (list, tuple)):
        raise SpecError(
            f'spec.routes must be a list of {{"dst": CIDR, "gw": address}}, got {json_type(raw)}'
        )
    if len(raw) > MAX_ROUTES:
        raise SpecError(f"spec.routes has {len(raw)} entries; at most {MAX_ROUTES} are allowed")
    routes: dict[int, list[Route]] = {}
    seen: set[str] = set()
    for i, item in enumerate(raw):
        name = f"spec.routes[{i}]"
        if not isinstance(item, Mapping):
            raise SpecError(
                f'{name} must be an object {{"dst": CIDR, "gw": address}}, got {json_type(item)}'
            )
        dst_raw, gw_raw = item.get("dst"), item.get("gw")
        if dst_raw is None:
            raise SpecError(f'{name}.dst is required, e.g. "10.10.0.0/16"')
        if not isinstance(dst_raw, str):
            raise SpecError(
                f'{name}.dst must be a string like "10.10.0.0/16", got {json_type(dst_raw)}'
            )
        parsed = parse_cidr(dst_raw.strip())
        if parsed is None:
            raise SpecError(
                f"{name}.dst {display(dst_raw)} is not a valid {_family_of_text(dst_raw)} CIDR"
            )
        dst = _network(*parsed)
        if int(parsed[0]) != dst.first:
            raise SpecError(
                f"{name}.dst {display(dst_raw)} has host bits set; did you mean {dst}?"
            )
        subnet = _subnet_for(nets, parsed[0], f"{name}.dst")
        if gw_raw is None:
            raise SpecError(f"{name}.gw is required (an address inside {subnet})")
        gw = _parse_address_in(gw_raw, f"{name}.gw", subnet)
        if str(dst) in seen:
            raise SpecError(f"{name}.dst {dst} is listed more than once")
        seen.add(str(dst))
        routes.setdefault(dst.version, []).append(Route(dst=str(dst), gw=str(gw)))
    return {v: tuple(r) for v, r in routes.items()}


def parse_network_spec(spec: Mapping[str, Any]) -> NetworkSpec:
    """Validate a VirtualNetwork ``spec`` dict; raises :class:`SpecError` on any problem."""
    try:
        return _parse_network_spec(spec)
    except SpecError:
        raise
    except RecursionError:
        raise SpecError("spec is nested too deeply") from None
    except Exception as e:  # noqa: BLE001 - untrusted input must only ever give SpecError
        raise SpecError(f"spec is malformed: {type(e).__name__}") from None


def _parse_network_spec(spec: Mapping[str, Any]) -> NetworkSpec:
    if not isinstance(spec, Mapping):
        raise SpecError(f"spec must be an object, got {json_type(spec)}")
    nets = _parse_subnets(spec)
    gateways = _parse_gateways(spec, nets)
    exclude = _parse_excludes(spec.get("excludeIPs"), nets)
    mtu = _parse_mtu(spec.get("mtu"))
    if mtu is not None and mtu < MIN_IPV6_MTU and any(net.version == 6 for net in nets):
        raise SpecError(f"spec.mtu {mtu} is below {MIN_IPV6_MTU}, the least IPv6 allows (RFC 8200), "
                        "on a network with an IPv6 subnet")
    routes = _parse_routes(spec.get("routes"), nets)
    routed = spec.get("routed", True)
    if routed is None:
        routed = True
    if not isinstance(routed, bool):
        raise SpecError(f"spec.routed must be true or false, got {json_type(routed)}")
    multus = spec.get("multus", True)
    if multus is None:
        multus = True
    if not isinstance(multus, bool):
        raise SpecError(f"spec.multus must be true or false, got {json_type(multus)}")
    families = tuple(
        SubnetSpec(subnet=net, gateway=gateways[net.version], exclude=exclude.get(net.version, ()),
                   routes=routes.get(net.version, ()))
        for net in nets
    )
    return NetworkSpec(families=families, mtu=mtu, routed=routed, multus=multus)


def subnets_overlap(a: NetworkSpec, b: NetworkSpec) -> tuple[netaddr.IPNetwork, netaddr.IPNetwork] | None:
    """The first pair of same-family subnets of ``a`` and ``b`` that overlap, if any."""
    for fa in a.families:
        fb = b.family(fa.version)
        if fb is not None and fa.first <= fb.last and fb.first <= fa.last:
            return fa.subnet, fb.subnet
    return None


def _holder_list(holders: Sequence[str], limit: int = 5) -> str:
    unique = sorted(set(holders))
    shown = ", ".join(unique[:limit])
    return shown + (", ..." if len(unique) > limit else "")


def spec_conflicts(
    new: NetworkSpec, held: Mapping[str, str], old: NetworkSpec | None
) -> list[str]:
    """Every way applying ``new`` would strand a live allocation; empty means safe.

    ``held`` maps address string (either family) -> holder ("ns/pod"). Each family is checked
    against the new spec's subnet of that family; adding a family while interfaces hold
    addresses is refused too (they would have no address of it). Per-address messages are capped
    at a handful per kind, followed by an "... and N more" line.
    """
    messages: list[str] = []
    by_family: dict[int, list[tuple[int, str, str]]] = {}
    for addr, holder in held.items():
        ip = parse_ip(addr)
        if ip is not None:
            by_family.setdefault(ip.version, []).append((int(ip), str(ip), holder))
    if not by_family:
        return messages
    for parsed in by_family.values():
        parsed.sort()

    if old is not None:
        for fam in new.families:
            if old.family(fam.version) is None:
                holders = [h for p in by_family.values() for _, _, h in p]
                count = len(set(holders))
                messages.append(
                    f"adding {family_name(fam.version)} subnet {fam.subnet} while {count} "
                    f"pod{'s hold' if count != 1 else ' holds'} addresses would leave their interfaces "
                    f"without {family_name(fam.version)} ({_holder_list(holders)}); delete them first"
                )
    for version, parsed in sorted(by_family.items()):
        kept = new.family(version)
        if kept is None:
            messages.append(
                f"removing the {family_name(version)} subnet would strand {len(parsed)} "
                f"allocation{'s' if len(parsed) != 1 else ''} "
                f"({_holder_list([h for _, _, h in parsed])})"
            )
            continue
        _family_conflicts(messages, kept, parsed, old.family(version) if old is not None else None)
    return messages


def _family_conflicts(
    messages: list[str], new: SubnetSpec, parsed: list[tuple[int, str, str]], old: SubnetSpec | None
) -> None:
    subnet_changed = old is not None and old.subnet != new.subnet
    if subnet_changed:
        assert old is not None
        messages.append(
            f"subnet change {old.subnet} -> {new.subnet} would strand {len(parsed)} "
            f"allocation{'s' if len(parsed) != 1 else ''} "
            f"({_holder_list([h for _, _, h in parsed])})"
        )

    def add_capped(lines: list[str]) -> None:
        messages.extend(lines[:_MAX_CONFLICT_LINES])
        if len(lines) > _MAX_CONFLICT_LINES:
            messages.append(f"... and {len(lines) - _MAX_CONFLICT_LINES} more")

    if not subnet_changed:
        outside = [
            f"{addr} held by {holder} is outside subnet {new.subnet}"
            for ip, addr, holder in parsed
            if not new.contains(ip)
        ]
        add_capped(outside)
    gw = int(new.gateway)
    for ip, addr, holder in parsed:
        if ip == gw:
            messages.append(f"gateway {addr} is held by {holder}")
    add_capped(
        [
            f"excludeIPs covers {addr} held by {holder}"
            for ip, addr, holder in parsed
            if new.is_excluded(ip)
        ]
    )
