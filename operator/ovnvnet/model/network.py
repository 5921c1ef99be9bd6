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
    "SpecError",
    "display",
    "parse_cidr",
    "parse_ip",
    "parse_ipv4",
    "parse_ipv4_cidr",
    "parse_ipv6",
    "parse_network_spec",
    "spec_conflicts",
]

MIN_MTU = 576
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
class NetworkSpec:
    subnet: netaddr.IPNetwork
    gateway: netaddr.IPAddress
    exclude: tuple[tuple[int, int], ...] = ()
    mtu: int | None = None
    routes: tuple[Route, ...] = ()
    routed: bool = True
    """Joined to the shared router ovnvnet-router (the gateway answers, networks route to each
    other). False: an isolated L2 network, no router port."""
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
        """The broadcast address as an int."""
        return int(self.subnet.last)

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

    def to_dict(self) -> dict[str, Any]:
        excludes = []
        for lo, hi in self.exclude:
            a = str(self.address(lo))
            excludes.append(a if lo == hi else f"{a}..{self.address(hi)}")
        out: dict[str, Any] = {
            "subnet": str(self.subnet),
            "gateway": str(self.gateway),
            "excludeIPs": excludes,
        }
        if self.mtu is not None:
            out["mtu"] = self.mtu
        if self.routes:
            out["routes"] = [r.to_dict() for r in self.routes]
        if not self.routed:
            out["routed"] = False
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


def _parse_subnet(raw: Any) -> netaddr.IPNetwork:
    if raw is None:
        raise SpecError('spec.subnet is required, e.g. "172.16.25.0/24"')
    if not isinstance(raw, str):
        raise SpecError(
            f'spec.subnet must be a string like "172.16.25.0/24", got {json_type(raw)}'
        )
    parsed = parse_ipv4_cidr(raw.strip())
    if parsed is None:
        if parse_ipv4(raw.strip()) is not None:
            raise SpecError(
                f"spec.subnet {display(raw)} has no prefix length; write it as a CIDR "
                f'like "172.16.25.0/24"'
            )
        raise SpecError(f"spec.subnet {display(raw)} is not a valid IPv4 CIDR")
    addr, prefix = parsed
    net = _network(addr, prefix)
    if int(addr) != net.first:
        raise SpecError(f"spec.subnet {display(raw)} has host bits set; did you mean {net}?")
    if prefix > 30:
        raise SpecError(
            f"spec.subnet {net} is too small: a /{prefix} leaves fewer than 2 usable "
            f"addresses; use /30 or shorter"
        )
    return net


def _parse_address_in(
    raw: Any, field_name: str, subnet: netaddr.IPNetwork, allow_edges: bool = False
) -> netaddr.IPAddress:
    if not isinstance(raw, str):
        raise SpecError(
            f'{field_name} must be a string like "172.16.25.1", got {json_type(raw)}'
        )
    ip = parse_ipv4(raw.strip())
    if ip is None:
        raise SpecError(f"{field_name} {display(raw)} is not a valid IPv4 address")
    if not (subnet.first <= int(ip) <= subnet.last):
        raise SpecError(f"{field_name} {ip} is outside subnet {subnet}")
    if not allow_edges:
        if int(ip) == subnet.first:
            raise SpecError(f"{field_name} {ip} is the network address of subnet {subnet}")
        if int(ip) == subnet.last:
            raise SpecError(f"{field_name} {ip} is the broadcast address of subnet {subnet}")
    return ip


def _parse_excludes(raw: Any, subnet: netaddr.IPNetwork) -> tuple[tuple[int, int], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)):
        raise SpecError(f"spec.excludeIPs must be a list of addresses, got {json_type(raw)}")
    if len(raw) > MAX_EXCLUDE_ENTRIES:
        raise SpecError(
            f"spec.excludeIPs has {len(raw)} entries; at most {MAX_EXCLUDE_ENTRIES} are "
            f'allowed (use "a..b" ranges)'
        )
    ranges: list[tuple[int, int]] = []
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
            lo_ip, hi_ip = parse_ipv4(parts[0].strip()), parse_ipv4(parts[1].strip())
            if lo_ip is None or hi_ip is None:
                raise SpecError(f'{name} {display(item)} is not an address or an "a..b" range')
        else:
            lo_ip = parse_ipv4(text)
            if lo_ip is None:
                raise SpecError(f'{name} {display(item)} is not an address or an "a..b" range')
            hi_ip = lo_ip
        lo, hi = int(lo_ip), int(hi_ip)
        if lo > hi:
            raise SpecError(f"{name} {display(item)}: start {lo_ip} is after end {hi_ip}")
        for ip in (lo_ip, hi_ip):
            if not (subnet.first <= int(ip) <= subnet.last):
                raise SpecError(f"{name} {ip} is outside subnet {subnet}")
        ranges.append((lo, hi))
    return _merge(ranges)


def _parse_mtu(raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise SpecError(f"spec.mtu must be an integer, got {json_type(raw)} {display(raw)}")
    if not (MIN_MTU <= raw <= MAX_MTU):
        shown = raw if abs(raw) < 10**12 else "(huge number)"
        raise SpecError(f"spec.mtu {shown} is out of range {MIN_MTU}..{MAX_MTU}")
    return raw


def _parse_routes(raw: Any, subnet: netaddr.IPNetwork) -> tuple[Route, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)):
        raise SpecError(
            f'spec.routes must be a list of {{"dst": CIDR, "gw": address}}, got {json_type(raw)}'
        )
    if len(raw) > MAX_ROUTES:
        raise SpecError(f"spec.routes has {len(raw)} entries; at most {MAX_ROUTES} are allowed")
    routes: list[Route] = []
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
        parsed = parse_ipv4_cidr(dst_raw.strip())
        if parsed is None:
            raise SpecError(f"{name}.dst {display(dst_raw)} is not a valid IPv4 CIDR")
        dst = _network(*parsed)
        if int(parsed[0]) != dst.first:
            raise SpecError(
                f"{name}.dst {display(dst_raw)} has host bits set; did you mean {dst}?"
            )
        if gw_raw is None:
            raise SpecError(f"{name}.gw is required (an address inside {subnet})")
        gw = _parse_address_in(gw_raw, f"{name}.gw", subnet)
        if str(dst) in seen:
            raise SpecError(f"{name}.dst {dst} is listed more than once")
        seen.add(str(dst))
        routes.append(Route(dst=str(dst), gw=str(gw)))
    return tuple(routes)


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
    subnet = _parse_subnet(spec.get("subnet"))
    gw_raw = spec.get("gateway")
    if gw_raw is None or gw_raw == "":
        gateway = netaddr.IPAddress(subnet.first + 1, subnet.version)
    else:
        gateway = _parse_address_in(gw_raw, "spec.gateway", subnet)
    exclude = _parse_excludes(spec.get("excludeIPs"), subnet)
    mtu = _parse_mtu(spec.get("mtu"))
    routes = _parse_routes(spec.get("routes"), subnet)
    routed = spec.get("routed", True)
    if routed is None:
        routed = True
    if not isinstance(routed, bool):
        raise SpecError(f"spec.routed must be true or false, got {json_type(routed)}")
    return NetworkSpec(subnet=subnet, gateway=gateway, exclude=exclude, mtu=mtu, routes=routes, routed=routed)


def _holder_list(holders: Sequence[str], limit: int = 5) -> str:
    unique = sorted(set(holders))
    shown = ", ".join(unique[:limit])
    return shown + (", ..." if len(unique) > limit else "")


def spec_conflicts(
    new: NetworkSpec, held: Mapping[str, str], old: NetworkSpec | None
) -> list[str]:
    """Every way applying ``new`` would strand a live allocation; empty means safe.

    ``held`` maps address string -> holder ("ns/pod"). Per-address messages are capped at a
    handful per kind, followed by an "... and N more" line.
    """
    messages: list[str] = []
    parsed: list[tuple[int, str, str]] = []
    for addr, holder in held.items():
        ip = parse_ipv4(addr)
        if ip is not None:
            parsed.append((int(ip), str(ip), holder))
    parsed.sort()
    if not parsed:
        return messages

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
    return messages
