"""The pod annotation contract: the ``ovnNetwork`` request and the ``ovnIfaceList`` result.

One typed structure each way (:class:`InterfaceRequest`, :class:`InterfaceResult`) and one
pair of functions converting from/to the wire. Parsing is syntax only (no cluster knowledge)
and is total: any input string gives a list or an :class:`AnnotationError`, quickly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import netaddr

from .network import Route, display, json_type, parse_ipv4, parse_ipv4_cidr

__all__ = [
    "MAX_ANNOTATION_BYTES",
    "MAX_INTERFACES",
    "REQUEST_ANNOTATION",
    "RESULT_ANNOTATION",
    "AnnotationError",
    "InterfaceRequest",
    "InterfaceResult",
    "decode_iface_list",
    "encode_iface_list",
    "normalize_mac",
    "parse_ovn_network",
]

REQUEST_ANNOTATION = "ovnNetwork"
RESULT_ANNOTATION = "ovnIfaceList"
MAX_INTERFACES = 10
MAX_ANNOTATION_BYTES = 64 * 1024
MAX_INTERFACE_NAME = 15  # IFNAMSIZ - 1

_DNS1123_SUBDOMAIN = re.compile(
    r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
)
_ALNUM = re.compile(r"[A-Za-z0-9]+")
_MAC_SEP = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}")
_MAC_BARE = re.compile(r"[0-9A-Fa-f]{12}")


class AnnotationError(ValueError):
    """A pod annotation is invalid; ``str(e)`` is one specific user-facing message."""


@dataclass(frozen=True)
class InterfaceRequest:
    network: str
    interface: str
    ip: netaddr.IPAddress | None
    mac: str | None
    default_gateway: bool = False


@dataclass(frozen=True)
class InterfaceResult:
    interface: str
    network: str
    ip: str
    prefix_length: int
    mac: str
    gateway: str
    default_gateway: bool
    mtu: int | None
    routes: tuple[Route, ...]


def normalize_mac(text: Any) -> str | None:
    """Lower-case colon form of a unicast, non-zero MAC; None if not a MAC at all.

    Multicast and all-zero MACs are returned normalised; callers decide what to say.
    """
    if not isinstance(text, str) or len(text) > 17:
        return None
    if _MAC_SEP.fullmatch(text):
        digits = re.sub(r"[:-]", "", text)
    elif _MAC_BARE.fullmatch(text):
        digits = text
    else:
        return None
    digits = digits.lower()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def _check_mac(raw: str, key: str) -> str:
    mac = normalize_mac(raw)
    if mac is None:
        raise AnnotationError(f"{key} {display(raw)} is not a valid MAC address")
    if mac == "00:00:00:00:00:00":
        raise AnnotationError(f"{key} {display(raw)} is not a valid MAC address (all zeros)")
    if int(mac[:2], 16) & 1:
        raise AnnotationError(f"{key} {display(raw)} is a multicast address")
    return mac


def _loads(raw: Any, what: str) -> Any:
    if not isinstance(raw, str):
        raise AnnotationError(f"{what} must be a string, got {type(raw).__name__}")
    if len(raw) > MAX_ANNOTATION_BYTES or len(raw.encode("utf-8", "surrogatepass")) > (
        MAX_ANNOTATION_BYTES
    ):
        raise AnnotationError(
            f"{what} is too large ({len(raw)} characters); at most {MAX_ANNOTATION_BYTES} "
            f"bytes are allowed"
        )

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not allowed")

    try:
        return json.loads(raw, parse_constant=no_constants)
    except json.JSONDecodeError as e:
        raise AnnotationError(
            f"{what} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    except RecursionError:
        raise AnnotationError(f"{what} is not valid JSON: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as e:
        reason = str(e).split(";")[0][:80] or type(e).__name__
        raise AnnotationError(f"{what} is not valid JSON: {reason}") from None


def _parse_bool(value: Any, where: str, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise AnnotationError(f'{where}: "{key}" must be true or false, got {display(value)}')


def _pick(entry: Mapping[str, Any], *keys: str) -> tuple[str, Any]:
    """First present key among snake_case and upstream camelCase spellings."""
    for key in keys:
        if key in entry and entry[key] is not None:
            return key, entry[key]
    return keys[0], None


def _check_interface_name(name: str) -> None:
    if not _ALNUM.fullmatch(name):
        raise AnnotationError(f"interface {display(name)}: name must be alphanumeric")
    if not name[-1].isdigit():
        raise AnnotationError(f"interface {display(name)}: name must end with a digit 0-9")
    if len(name) > MAX_INTERFACE_NAME:
        raise AnnotationError(
            f"interface {display(name)}: name is longer than {MAX_INTERFACE_NAME} characters"
        )


def _parse_entry(index: int, entry: Any) -> InterfaceRequest:
    where = f"ovnNetwork[{index}]"
    if not isinstance(entry, dict):
        raise AnnotationError(f"{where} must be an object")
    network = entry.get("name")
    if network is None or network == "":
        raise AnnotationError(f'{where}: "name" (the network) is required')
    if not isinstance(network, str):
        raise AnnotationError(f'{where}: "name" must be a string, got {json_type(network)}')
    if len(network) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(network):
        raise AnnotationError(f"network name {display(network)} is not a valid VirtualNetwork name")

    interface = entry.get("interface")
    if interface is None or interface == "":
        raise AnnotationError(f'{where}: "interface" is required')
    if not isinstance(interface, str):
        raise AnnotationError(f'{where}: "interface" must be a string, got {json_type(interface)}')
    _check_interface_name(interface)

    ip_key, ip_raw = _pick(entry, "ip_address", "ipAddress")
    ip: netaddr.IPAddress | None = None
    if ip_raw is not None and ip_raw != "":
        if not isinstance(ip_raw, str):
            raise AnnotationError(f'{where}: "{ip_key}" must be a string, got {json_type(ip_raw)}')
        # "a.b.c.d/nn" is accepted for upstream compatibility; the prefix is not used here.
        ip = parse_ipv4(ip_raw.strip().split("/", 1)[0])
        if ip is None:
            raise AnnotationError(f"{ip_key} {display(ip_raw)} is not a valid IPv4 address")

    mac_key, mac_raw = _pick(entry, "mac_address", "macAddress")
    mac: str | None = None
    if mac_raw is not None and mac_raw != "":
        if not isinstance(mac_raw, str):
            raise AnnotationError(
                f'{where}: "{mac_key}" must be a string, got {json_type(mac_raw)}'
            )
        mac = _check_mac(mac_raw.strip(), mac_key)

    default_gateway = _parse_bool(entry.get("defaultGateway"), where, "defaultGateway")
    return InterfaceRequest(
        network=network, interface=interface, ip=ip, mac=mac, default_gateway=default_gateway
    )


def parse_ovn_network(raw: str) -> list[InterfaceRequest]:
    """Parse and syntax-check a pod's ``ovnNetwork`` annotation."""
    try:
        return _parse_ovn_network(raw)
    except AnnotationError:
        raise
    except RecursionError:
        raise AnnotationError("ovnNetwork is not valid JSON: nested too deeply") from None
    except Exception as e:  # noqa: BLE001 - untrusted input must only ever give AnnotationError
        raise AnnotationError(f"ovnNetwork is malformed: {type(e).__name__}") from None


def _parse_ovn_network(raw: str) -> list[InterfaceRequest]:
    data = _loads(raw, REQUEST_ANNOTATION)
    if not isinstance(data, list):
        raise AnnotationError(
            f"ovnNetwork must be a JSON list of interfaces, got {json_type(data)}"
        )
    if not data:
        raise AnnotationError("ovnNetwork lists no interfaces")
    if len(data) > MAX_INTERFACES:
        raise AnnotationError(
            f"ovnNetwork lists {len(data)} interfaces; at most {MAX_INTERFACES} are supported"
        )
    requests = [_parse_entry(i, entry) for i, entry in enumerate(data)]

    by_digit: dict[str, str] = {}
    for req in requests:
        other = by_digit.get(req.interface[-1])
        if other is not None:
            if other == req.interface:
                raise AnnotationError(f"interface {display(other)} is listed more than once")
            raise AnnotationError(
                f"interface {display(other)} and {display(req.interface)} end with the same "
                f"digit {req.interface[-1]}; each interface needs its own digit"
            )
        by_digit[req.interface[-1]] = req.interface

    gateways = [r.interface for r in requests if r.default_gateway]
    if len(gateways) > 1:
        raise AnnotationError(
            f"more than one interface sets defaultGateway ({', '.join(gateways)})"
        )

    # Same static address or MAC twice on one network can never be satisfied.
    seen_ip: dict[tuple[str, int], str] = {}
    seen_mac: dict[tuple[str, str], str] = {}
    for req in requests:
        if req.ip is not None:
            key = (req.network, int(req.ip))
            if key in seen_ip:
                raise AnnotationError(
                    f"ip_address {req.ip} is requested twice on network {req.network} "
                    f"({seen_ip[key]}, {req.interface})"
                )
            seen_ip[key] = req.interface
        if req.mac is not None:
            mkey = (req.network, req.mac)
            if mkey in seen_mac:
                raise AnnotationError(
                    f"mac_address {req.mac} is requested twice on network {req.network} "
                    f"({seen_mac[mkey]}, {req.interface})"
                )
            seen_mac[mkey] = req.interface
    return requests


def encode_iface_list(results: Sequence[InterfaceResult]) -> str:
    """The ``ovnIfaceList`` wire form, in request order."""
    out = []
    for r in results:
        item: dict[str, Any] = {
            "interface": r.interface,
            "name": r.network,
            "ip_address": r.ip,
            "prefix_length": r.prefix_length,
            "mac_address": r.mac,
            "gateway_ip": r.gateway,
            "defaultGateway": bool(r.default_gateway),
        }
        if r.mtu is not None:
            item["mtu"] = r.mtu
        item["routes"] = [route.to_dict() for route in r.routes]
        out.append(item)
    return json.dumps(out, separators=(",", ":"))


def _require_str(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise AnnotationError(f'{where}: "{key}" must be a non-empty string')
    return value


def _decode_entry(index: int, entry: Any) -> InterfaceResult:
    where = f"ovnIfaceList[{index}]"
    if not isinstance(entry, dict):
        raise AnnotationError(f"{where} must be an object")
    interface = _require_str(entry, "interface", where)
    _check_interface_name(interface)
    network = _require_str(entry, "name", where)
    ip_text = _require_str(entry, "ip_address", where)
    ip = parse_ipv4(ip_text)
    if ip is None:
        raise AnnotationError(f"{where}: ip_address {display(ip_text)} is not a valid IPv4 address")
    prefix = entry.get("prefix_length")
    if isinstance(prefix, bool) or not isinstance(prefix, int) or not 0 <= prefix <= 32:
        raise AnnotationError(f'{where}: "prefix_length" must be an integer 0..32')
    mac_text = _require_str(entry, "mac_address", where)
    mac = normalize_mac(mac_text)
    if mac is None:
        raise AnnotationError(f"{where}: mac_address {display(mac_text)} is not a valid MAC address")
    gw_text = _require_str(entry, "gateway_ip", where)
    gw = parse_ipv4(gw_text)
    if gw is None:
        raise AnnotationError(f"{where}: gateway_ip {display(gw_text)} is not a valid IPv4 address")
    default_gateway = _parse_bool(entry.get("defaultGateway"), where, "defaultGateway")
    mtu = entry.get("mtu")
    if mtu is not None and (isinstance(mtu, bool) or not isinstance(mtu, int)):
        raise AnnotationError(f'{where}: "mtu" must be an integer or null')
    routes_raw = entry.get("routes")
    routes: list[Route] = []
    if routes_raw is not None:
        if not isinstance(routes_raw, list):
            raise AnnotationError(f'{where}: "routes" must be a list')
        for j, r in enumerate(routes_raw):
            if not isinstance(r, dict):
                raise AnnotationError(f"{where}.routes[{j}] must be an object")
            dst, rgw = r.get("dst"), r.get("gw")
            if parse_ipv4_cidr(dst) is None or parse_ipv4(rgw) is None:
                raise AnnotationError(f'{where}.routes[{j}] needs "dst" (CIDR) and "gw" (address)')
            routes.append(Route(dst=dst, gw=rgw))
    return InterfaceResult(
        interface=interface,
        network=network,
        ip=str(ip),
        prefix_length=prefix,
        mac=mac,
        gateway=str(gw),
        default_gateway=default_gateway,
        mtu=mtu,
        routes=tuple(routes),
    )


def decode_iface_list(raw: str) -> list[InterfaceResult]:
    """Inverse of :func:`encode_iface_list`; raises :class:`AnnotationError` on garbage."""
    try:
        data = _loads(raw, RESULT_ANNOTATION)
        if not isinstance(data, list):
            raise AnnotationError(f"ovnIfaceList must be a JSON list, got {json_type(data)}")
        if len(data) > MAX_INTERFACES:
            raise AnnotationError(
                f"ovnIfaceList lists {len(data)} interfaces; at most {MAX_INTERFACES} are supported"
            )
        return [_decode_entry(i, entry) for i, entry in enumerate(data)]
    except AnnotationError:
        raise
    except RecursionError:
        raise AnnotationError("ovnIfaceList is not valid JSON: nested too deeply") from None
    except Exception as e:  # noqa: BLE001
        raise AnnotationError(f"ovnIfaceList is malformed: {type(e).__name__}") from None
