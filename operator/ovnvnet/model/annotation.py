"""The pod annotation contract: every key, every codec and the seal, in one module.

This module is the one place that says what a pod's annotations mean. The operator (reconcile/),
the admission webhook and the node agent (cni/) all import it; nothing else defines a key or
parses an annotation, so the operator and the agent cannot drift apart (ovn-kubernetes' controller
and node likewise share one ``UnmarshalPodAnnotation``). It lives in ``model/`` because it is
pure (no API server, no OVN, no I/O but reading a key file) and the agent may import ``model/``
without pulling in the operator (Kopf, ovsdbapp); every program already imported the decoded
types from here, so absorbing the legacy codec and the keys changed no import path elsewhere.

Keys, and who writes them:

- ``ovnNetwork`` (creator): the request, a JSON list of ``{name, interface[, ip_address |
  ip_addresses, mac_address, defaultGateway]}`` (:func:`parse_ovn_network`). ``ip_address`` is a
  static address of either family (the network's other family, if any, stays dynamic);
  ``ip_addresses`` lists at most one per family.
- ``k8s.v1.cni.cncf.io/networks`` (creator, Multus's): the standard request, a comma list of
  ``[namespace/]name[@interface]`` or a JSON list of network-selection elements
  (:func:`parse_network_selection`). An element naming a NetworkAttachmentDefinition in the
  namespace the operator publishes into asks for the VirtualNetwork of that name
  (:func:`selection_requests`): ``interface`` (default Multus's ``net<position>``), ``ips``
  (CIDR), ``mac``, ``default-route``; other elements are another plugin's. A pod uses one form
  (:func:`pod_requests`); both is refused.
- ``ovnIfaceList`` (operator): the result, one entry per interface (:func:`encode_iface_list`,
  :func:`decode_iface_list`). ``ip_address``/``prefix_length``/``gateway_ip`` are the primary
  family (IPv4 when the interface has one, else IPv6); an interface with an IPv6 address also
  carries ``ip_addresses`` (``"addr/prefix"``, IPv4 first) and ``gateway_ips`` (same order), so an
  IPv4 network's result is byte for byte what it was before IPv6. The decoder accepts entries
  without the lists and fills :attr:`InterfaceResult.addresses` from the primary fields. The
  legacy ``ovn`` result carries the same two lists (ovn-kubernetes' key names).
- ``ovnNetworkError`` / ``ovnNetworkErrorRetry`` (operator): why the request is not served, and
  ``"true"`` when the operator retries by itself (ADD keeps waiting).
- ``ovn`` (legacy, ovn-kubernetes): the creator's request ``{"ip_address", "mac_address"}`` for a
  pod without ``ovnNetwork``; the operator *replaces* it with its result, recognised by
  ``gateway_ip`` (:func:`is_legacy_result`, :func:`parse_legacy_request`,
  :func:`encode_legacy_result`, :func:`decode_legacy_result`).
- ``ovnvnet.io/seal`` (operator): ``v1:<base64url HMAC-SHA256>`` over the pod UID, the result's
  key (``ovnIfaceList`` or ``ovn``) and its exact value (:func:`seal`, :func:`check_seal`).

The seal is what makes a result the operator's: a pod's creator can write any annotation (the
webhook refuses it, but may be down), so the agent and the rebuild act only on a result whose seal
verifies for *that* pod's UID with the key only the operator and the agents read
(:func:`sealed_result`). A forged result, a result copied from another pod (another UID) or an
edited one is never acted on. The key is the verbatim content of a file (``OVNVNET_SEAL_KEY_FILE``;
the operator may instead keep it in a Secret, see ``kube/seal.py``), at least
:data:`MIN_SEAL_KEY_BYTES` bytes.

Every decoder is total: any input (any type, any size, deep nesting, non-UTF-8 or lone
surrogates, unknown keys, NaN/Infinity, huge numbers) gives a value or an
:class:`AnnotationError` with one specific message, quickly; values are limited to
:data:`MAX_ANNOTATION_BYTES`. Unknown keys are ignored (upstream annotations carry extra fields).
The legacy result's ``port`` is written for ovn-kubernetes compatibility and never read: the
port name is always derived from the pod's namespace and name (``model/names.py``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import netaddr

from . import names
from .network import Route, display, family_name, json_type, parse_cidr, parse_ip

__all__ = [
    "ERROR_ANNOTATION",
    "ERROR_RETRY_ANNOTATION",
    "LEGACY_ANNOTATION",
    "MAX_ANNOTATION_BYTES",
    "MAX_INTERFACES",
    "MIN_SEAL_KEY_BYTES",
    "NETWORKS_ANNOTATION",
    "OPERATOR_ANNOTATIONS",
    "REQUEST_ANNOTATION",
    "RESULT_ANNOTATION",
    "SEAL_ANNOTATION",
    "AnnotationError",
    "IfaceAddress",
    "InterfaceRequest",
    "InterfaceResult",
    "NetworkSelection",
    "SealError",
    "SealKeyError",
    "SealedResult",
    "check_seal",
    "decode_iface_list",
    "decode_legacy_result",
    "decode_seal_key",
    "encode_iface_list",
    "encode_legacy_result",
    "is_legacy_result",
    "normalize_mac",
    "operator_written",
    "parse_legacy_request",
    "parse_network_selection",
    "parse_ovn_network",
    "pod_requests",
    "read_seal_key",
    "result_key",
    "seal",
    "selection_requests",
    "sealed_annotations",
    "sealed_result",
]

REQUEST_ANNOTATION = "ovnNetwork"
RESULT_ANNOTATION = "ovnIfaceList"
ERROR_ANNOTATION = "ovnNetworkError"
ERROR_RETRY_ANNOTATION = "ovnNetworkErrorRetry"  # "true": the operator retries by itself (the CNI keeps waiting)
LEGACY_ANNOTATION = "ovn"
SEAL_ANNOTATION = "ovnvnet.io/seal"
OPERATOR_ANNOTATIONS = (RESULT_ANNOTATION, ERROR_ANNOTATION, ERROR_RETRY_ANNOTATION, SEAL_ANNOTATION)
"""Written only by the operator (and ``ovn`` when it holds a result: :func:`operator_written`)."""

MAX_INTERFACES = 10
MAX_ANNOTATION_BYTES = 64 * 1024
"""One limit for every annotation value any decoder here reads."""
MAX_INTERFACE_NAME = 15  # IFNAMSIZ - 1

SEAL_VERSION = "v1"
MIN_SEAL_KEY_BYTES = 16
MAX_SEAL_KEY_BYTES = 4096
_SEAL_DOMAIN = b"ovnvnet.io/seal\x00v1\x00"
_SEAL_RE = re.compile(r"v1:[A-Za-z0-9_-]{43}")  # 32 bytes, base64url without padding

_DNS1123_SUBDOMAIN = re.compile(
    r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
)
_ALNUM = re.compile(r"[A-Za-z0-9]+")
_MAC_SEP = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}")
_MAC_BARE = re.compile(r"[0-9A-Fa-f]{12}")


class AnnotationError(ValueError):
    """A pod annotation is invalid; ``str(e)`` is one specific user-facing message."""


class SealError(AnnotationError):
    """A result is not sealed by the operator for this pod (missing, malformed or mismatched)."""


class SealKeyError(ValueError):
    """The seal key is missing or unusable; ``str(e)`` says which setting to fix."""


@dataclass(frozen=True)
class InterfaceRequest:
    network: str
    interface: str
    ip: netaddr.IPAddress | None
    """The static address of the single form (``ip_address``), else ``ips[0]``; None: dynamic."""
    mac: str | None
    default_gateway: bool = False
    ips: tuple[netaddr.IPAddress, ...] = ()
    """Every static address asked for, at most one per family, IPv4 first (``ip_address`` or
    ``ip_addresses``); a family of the network not listed here is allocated dynamically.
    Filled from ``ip`` when left empty."""

    prefixes: tuple[int, ...] = ()
    """The prefix given with each of ``ips`` (same order) when the request names one the
    network must have (a Multus element's ``ips`` are CIDRs); empty: no prefix to check."""
    default_route: tuple[netaddr.IPAddress, ...] = ()
    """A Multus element's ``default-route`` gateways (each must be the network's gateway of its
    family); ``default_gateway`` is set with them."""
    claim: str | None = None
    """``claim``: the name of an IPClaim of the pod's namespace whose addresses the interface uses
    (reconcile/claims.py); None: the addresses live and die with the pod."""

    def __post_init__(self) -> None:
        if not self.ips and self.ip is not None:
            object.__setattr__(self, "ips", (self.ip,))

    def static_ip(self, version: int) -> netaddr.IPAddress | None:
        """The static address requested for family ``version`` (4 or 6), if any."""
        return next((ip for ip in self.ips if ip.version == version), None)


@dataclass(frozen=True)
class IfaceAddress:
    """One address of an interface: ``ip`` (canonical text), its prefix and its family's gateway."""

    ip: str
    prefix_length: int
    gateway: str

    @property
    def family(self) -> int:
        """4 or 6."""
        return 6 if ":" in self.ip else 4

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefix_length}"


@dataclass(frozen=True)
class InterfaceResult:
    """One interface of a pod. ``ip``/``prefix_length``/``gateway`` are the primary family
    (IPv4 when the interface has one, else IPv6) and equal ``addresses[0]``; ``addresses`` lists
    every family, IPv4 first (filled from the primary fields when left empty)."""

    interface: str
    network: str
    ip: str
    prefix_length: int
    mac: str
    gateway: str
    default_gateway: bool
    mtu: int | None
    routes: tuple[Route, ...]
    addresses: tuple[IfaceAddress, ...] = ()

    def __post_init__(self) -> None:
        if not self.addresses:
            object.__setattr__(
                self, "addresses", (IfaceAddress(self.ip, self.prefix_length, self.gateway),)
            )

    def address(self, version: int) -> IfaceAddress | None:
        """The address of family ``version`` (4 or 6), if the interface has one."""
        return next((a for a in self.addresses if a.family == version), None)

    @property
    def ipv4_only(self) -> bool:
        """One IPv4 address: the wire form is exactly the pre-IPv6 one."""
        return len(self.addresses) == 1 and self.addresses[0].family == 4


_F = TypeVar("_F", bound=Callable[..., Any])


def _total(what: str) -> Callable[[_F], _F]:
    """Make a decoder total: anything but its own AnnotationError becomes one."""

    def wrap(fn: _F) -> _F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except AnnotationError:
                raise
            except RecursionError:
                raise AnnotationError(f"{what} is not valid JSON: nested too deeply") from None
            except Exception as e:  # noqa: BLE001 - untrusted input must only ever give AnnotationError
                raise AnnotationError(f"{what} is malformed: {type(e).__name__}") from None

        return cast(_F, run)

    return wrap


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


MAX_JSON_DEPTH = 32   # every valid annotation nests at most 4 levels
# a string (an unterminated one runs to the end, so every scan is linear) or a bracket
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)


def _too_deep(raw: str) -> bool:
    """Whether ``raw`` opens more than :data:`MAX_JSON_DEPTH` arrays/objects at once (strings
    skipped). A linear scan that refuses hostile nesting before ``json.loads`` spends time and
    stack on it."""
    if raw.count("[") + raw.count("{") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    for m in _JSON_TOKENS.finditer(raw):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif c in "]}":
            depth -= 1
    return False


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

    if _too_deep(raw):
        raise AnnotationError(f"{what} is not valid JSON: nested too deeply")

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


def _required_string(where: str, entry: Mapping[str, Any], key: str, what: str = "") -> str:
    """``entry[key]``: present, not empty, a string (``what`` names it in the message)."""
    value = entry.get(key)
    if value is None or value == "":
        raise AnnotationError(f'{where}: "{key}"{what} is required')
    if not isinstance(value, str):
        raise AnnotationError(f'{where}: "{key}" must be a string, got {json_type(value)}')
    return value


def _parse_entry(index: int, entry: Any) -> InterfaceRequest:
    where = f"ovnNetwork[{index}]"
    if not isinstance(entry, dict):
        raise AnnotationError(f"{where} must be an object")
    network = _required_string(where, entry, "name", " (the network)")
    if len(network) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(network):
        raise AnnotationError(f"network name {display(network)} is not a valid VirtualNetwork name")

    interface = _required_string(where, entry, "interface")
    _check_interface_name(interface)

    ip = _requested_ip(where, *_pick(entry, "ip_address", "ipAddress"))
    ips = _requested_ips(where, *_pick(entry, "ip_addresses", "ipAddresses"))
    if ip is not None and ips:
        raise AnnotationError(
            f'{where}: "ip_address" and "ip_addresses" are exclusive; list every static '
            f'address in "ip_addresses"'
        )
    mac = _requested_mac(where, *_pick(entry, "mac_address", "macAddress"))
    default_gateway = _parse_bool(entry.get("defaultGateway"), where, "defaultGateway")
    return InterfaceRequest(
        network=network, interface=interface, ip=ip if ip is not None else (ips[0] if ips else None),
        mac=mac, default_gateway=default_gateway, ips=ips or ((ip,) if ip is not None else ()),
        claim=_requested_claim(where, entry),
    )


def _requested_claim(where: str, entry: dict[str, Any], key: str = "claim") -> str | None:
    """``claim`` (a Multus element's ``ipam-claim-reference``): an IPClaim name of the pod's
    namespace (a claim is never shared across namespaces)."""
    if entry.get(key) is None:
        return None
    value = _required_string(where, entry, key, " (an IPClaim name)")
    if "/" in value:
        raise AnnotationError(f'{where}: "{key}" {display(value)} names another namespace; a pod may only '
                              f"use IPClaims of its own namespace (give the claim's name alone)")
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(value):
        raise AnnotationError(f'{where}: "{key}" {display(value)} is not a valid IPClaim name')
    return value


def _requested_ip(where: str, key: str, raw: Any) -> netaddr.IPAddress | None:
    """A request's static address under ``key``; None (dynamic) when absent or empty.
    "a.b.c.d/nn" is accepted for upstream compatibility; the prefix is not used here."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise AnnotationError(f'{where}: "{key}" must be a string, got {json_type(raw)}')
    ip = parse_ip(raw.strip().split("/", 1)[0])
    if ip is None:
        raise AnnotationError(f"{key} {display(raw)} is not a valid {_family_of_text(raw)} address")
    return ip


def _family_of_text(text: str) -> str:
    """The family a malformed address was meant to be, for its message (":" means IPv6)."""
    return "IPv6" if ":" in text else "IPv4"


def _requested_ips(where: str, key: str, raw: Any) -> tuple[netaddr.IPAddress, ...]:
    """The list form: at most one static address per family, returned IPv4 first."""
    if raw is None or raw == []:
        return ()
    if not isinstance(raw, list):
        raise AnnotationError(f'{where}: "{key}" must be a list of addresses, got {json_type(raw)}')
    if len(raw) > 2:
        raise AnnotationError(
            f'{where}: "{key}" lists {len(raw)} addresses; at most one per family (2) is allowed'
        )
    ips: list[netaddr.IPAddress] = []
    for i, item in enumerate(raw):
        ip = _requested_ip(where, f"{key}[{i}]", item)
        if ip is None:
            raise AnnotationError(f'{where}: "{key}[{i}]" is empty')
        if any(other.version == ip.version for other in ips):
            raise AnnotationError(
                f"{where}: {key} lists two {family_name(ip.version)} addresses "
                f"({ips[0]}, {ip}); at most one per family is allowed"
            )
        ips.append(ip)
    return tuple(sorted(ips, key=lambda a: a.version))


def _requested_mac(where: str, key: str, raw: Any) -> str | None:
    """A request's static MAC under ``key``; None (derived) when absent or empty."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise AnnotationError(f'{where}: "{key}" must be a string, got {json_type(raw)}')
    return _check_mac(raw.strip(), key)


@_total(REQUEST_ANNOTATION)
def parse_ovn_network(raw: str) -> list[InterfaceRequest]:
    """Parse and syntax-check a pod's ``ovnNetwork`` annotation."""
    return _parse_ovn_network(raw)


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
    _check_together(requests, "defaultGateway", "ip_address", "mac_address")
    return requests


def _check_together(requests: Sequence[InterfaceRequest], gw_key: str, ip_key: str,
                    mac_key: str) -> None:
    """What no request can ask for as a whole, whatever its form: an interface twice (or two
    ending with the same digit), two default gateways, a static address or MAC twice on a
    network. The keys name the fields in the form the user wrote."""
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
            f"more than one interface sets {gw_key} ({', '.join(gateways)})"
        )

    # Same static address or MAC twice on one network can never be satisfied.
    seen_ip: dict[tuple[str, int], str] = {}
    seen_mac: dict[tuple[str, str], str] = {}
    for req in requests:
        for ip in req.ips:
            key = (req.network, int(ip))
            if key in seen_ip:
                raise AnnotationError(
                    f"{ip_key} {ip} is requested twice on network {req.network} "
                    f"({seen_ip[key]}, {req.interface})"
                )
            seen_ip[key] = req.interface
        if req.mac is not None:
            mkey = (req.network, req.mac)
            if mkey in seen_mac:
                raise AnnotationError(
                    f"{mac_key} {req.mac} is requested twice on network {req.network} "
                    f"({seen_mac[mkey]}, {req.interface})"
                )
            seen_mac[mkey] = req.interface


# --- Multus network-selection elements (`k8s.v1.cni.cncf.io/networks`) ------------------------

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
CLAIM_REFERENCE = "ipam-claim-reference"
"""A network-selection element's IPClaim (Multus's ``IPAMClaimReference``), as ``claim`` in ovnNetwork."""
MAX_NETWORK_ELEMENTS = 64
"""Elements of any plugin one ``networks`` annotation may list (ovnvnet's: MAX_INTERFACES)."""
_DNS1123_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class NetworkSelection:
    """One element of ``k8s.v1.cni.cncf.io/networks``, as Multus reads it (any plugin's).

    ``index`` is its position: Multus names an element without ``interface`` ``net<index+1>``
    (the cluster's default network is delegate 0, ``eth0``). ``fields`` is the JSON element
    (for the comma form: only ``interface``, from ``@iface``); they are checked only when the
    element is ovnvnet's (:func:`selection_requests`): another plugin's fields are its own."""

    index: int
    namespace: str
    name: str
    fields: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str) -> Any:
        return dict(self.fields).get(key)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def _selection_name(where: str, key: str, value: Any, label: bool) -> str:
    if not isinstance(value, str) or not value:
        raise AnnotationError(f'{where}: "{key}" must be a non-empty string, got {display(value)}')
    ok = (len(value) <= 63 and _DNS1123_LABEL.fullmatch(value)) if label else (
        len(value) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(value))
    if not ok:
        raise AnnotationError(f"{where}: {key} {display(value)} is not a valid "
                              f"{'namespace' if label else 'NetworkAttachmentDefinition'} name")
    return value


def _comma_element(index: int, item: str, pod_namespace: str) -> NetworkSelection:
    """``[namespace/]name[@interface]``, Multus's short form."""
    where = f"{NETWORKS_ANNOTATION}[{index}]"
    item = item.strip()
    ref, at, iface = item.partition("@")
    if at and not iface:
        raise AnnotationError(f"{where}: {display(item)} has an empty interface name after @")
    ns, slash, name = ref.partition("/")
    if not slash:
        ns, name = pod_namespace, ref
    namespace = _selection_name(where, "namespace", ns, label=True)
    name = _selection_name(where, "name", name, label=False)
    return NetworkSelection(index, namespace, name, (("interface", iface),) if at else ())


def _json_element(index: int, entry: Any, pod_namespace: str) -> NetworkSelection:
    where = f"{NETWORKS_ANNOTATION}[{index}]"
    if not isinstance(entry, dict):
        raise AnnotationError(f"{where} must be an object")
    name = _selection_name(where, "name", entry.get("name"), label=False)
    ns = entry.get("namespace")
    namespace = _selection_name(where, "namespace", ns, label=True) if ns not in (None, "") else (
        pod_namespace)
    return NetworkSelection(index, namespace, name, tuple(sorted(entry.items())))


@_total(NETWORKS_ANNOTATION)
def parse_network_selection(raw: Any, pod_namespace: str) -> list[NetworkSelection]:
    """Every element of ``k8s.v1.cni.cncf.io/networks``, in both of Multus's forms: a JSON list
    of network-selection elements (chosen, as Multus does, when the value contains ``[``, ``{``
    or ``"``) or a comma-separated list of ``[namespace/]name[@interface]``. An element without
    a namespace is in ``pod_namespace``. Only the element's reference is checked here."""
    if not isinstance(raw, str):
        raise AnnotationError(f"{NETWORKS_ANNOTATION} must be a string, got {type(raw).__name__}")
    json_form = any(c in raw for c in '[{"')
    if json_form:
        data = _loads(raw, NETWORKS_ANNOTATION)
        if not isinstance(data, list):
            raise AnnotationError(f"{NETWORKS_ANNOTATION} must be a JSON list of network-selection "
                                  f"elements, got {json_type(data)}")
        items: list[Any] = data
    else:
        if len(raw) > MAX_ANNOTATION_BYTES:
            raise AnnotationError(f"{NETWORKS_ANNOTATION} is too large ({len(raw)} characters); at "
                                  f"most {MAX_ANNOTATION_BYTES} bytes are allowed")
        items = raw.split(",") if raw.strip() else []
    if len(items) > MAX_NETWORK_ELEMENTS:
        raise AnnotationError(f"{NETWORKS_ANNOTATION} lists {len(items)} elements; at most "
                              f"{MAX_NETWORK_ELEMENTS} are supported")
    if json_form:
        return [_json_element(i, item, pod_namespace) for i, item in enumerate(items)]
    return [_comma_element(i, item, pod_namespace) for i, item in enumerate(items)]


def _selection_ips(where: str, raw: Any) -> tuple[tuple[netaddr.IPAddress, int], ...]:
    """``ips``: static addresses in CIDR form (as Multus passes them), at most one per family."""
    if raw is None or raw == []:
        return ()
    if not isinstance(raw, list):
        raise AnnotationError(f'{where}: "ips" must be a list of "address/prefix", got {json_type(raw)}')
    if len(raw) > 2:
        raise AnnotationError(f'{where}: "ips" lists {len(raw)} addresses; at most one per family (2) '
                              f"is allowed")
    out: list[tuple[netaddr.IPAddress, int]] = []
    for i, text in enumerate(raw):
        parsed = parse_cidr(text)
        if parsed is None:
            raise AnnotationError(f'{where}: ips[{i}] {display(text)} is not "address/prefix" (CIDR '
                                  f'form, e.g. "10.1.0.5/24")')
        if any(ip.version == parsed[0].version for ip, _ in out):
            raise AnnotationError(f"{where}: ips lists two {family_name(parsed[0].version)} addresses; "
                                  f"at most one per family is allowed")
        out.append(parsed)
    return tuple(sorted(out, key=lambda p: p[0].version))


def _selection_gateways(where: str, raw: Any) -> tuple[netaddr.IPAddress, ...]:
    """``default-route``: the gateways the pod's default route goes through (Multus's
    ``GatewayRequest``); on an ovnvnet network, the network's gateway of each family."""
    if raw is None or raw == []:
        return ()
    if not isinstance(raw, list) or len(raw) > 2:
        raise AnnotationError(f'{where}: "default-route" must be a list of at most one gateway '
                              f"address per family, got {display(raw)}")
    gws: list[netaddr.IPAddress] = []
    for i, text in enumerate(raw):
        gw = parse_ip(text)
        if gw is None:
            raise AnnotationError(f"{where}: default-route[{i}] {display(text)} is not an IP address")
        if any(g.version == gw.version for g in gws):
            raise AnnotationError(f"{where}: default-route lists two {family_name(gw.version)} gateways")
        gws.append(gw)
    return tuple(sorted(gws, key=lambda g: g.version))


def _selection_request(sel: NetworkSelection) -> InterfaceRequest:
    where = f"{NETWORKS_ANNOTATION}[{sel.index}] ({sel.ref})"
    iface = sel.get("interface")
    if iface in (None, ""):
        iface = f"net{sel.index + 1}"           # Multus's name for an element without one
    if not isinstance(iface, str):
        raise AnnotationError(f'{where}: "interface" must be a string, got {json_type(iface)}')
    _check_interface_name(iface)
    cidrs = _selection_ips(where, sel.get("ips"))
    mac = _requested_mac(where, "mac", sel.get("mac"))
    gws = _selection_gateways(where, sel.get("default-route"))
    ips = tuple(ip for ip, _ in cidrs)
    return InterfaceRequest(
        network=sel.name, interface=iface, ip=ips[0] if ips else None, mac=mac,
        default_gateway=bool(gws), ips=ips, prefixes=tuple(p for _, p in cidrs), default_route=gws,
        claim=_requested_claim(where, {CLAIM_REFERENCE: sel.get(CLAIM_REFERENCE)}, CLAIM_REFERENCE),
    )


@_total(NETWORKS_ANNOTATION)
def selection_requests(selections: Sequence[NetworkSelection],
                       nad_namespace: str) -> list[InterfaceRequest]:
    """The ovnvnet interfaces among ``selections``: every element referring to a
    NetworkAttachmentDefinition in ``nad_namespace`` (the namespace the operator publishes one
    per VirtualNetwork into, named after it) asks for the VirtualNetwork of that name; the
    others are another plugin's and ignored. Checked like ``ovnNetwork`` (interface names, one
    default gateway, no static address or MAC twice on a network)."""
    requests = [_selection_request(s) for s in selections if s.namespace == nad_namespace]
    if len(requests) > MAX_INTERFACES:
        raise AnnotationError(f"{NETWORKS_ANNOTATION} asks for {len(requests)} ovnvnet interfaces; at "
                              f"most {MAX_INTERFACES} are supported")
    _check_together(requests, "default-route", "ips", "mac")
    return requests


@_total("the pod's request")
def pod_requests(annotations: Mapping[str, Any], pod_namespace: str,
                 nad_namespace: str | None) -> list[InterfaceRequest] | None:
    """What a pod asks ovnvnet for: ``ovnNetwork`` or the ovnvnet elements of
    ``k8s.v1.cni.cncf.io/networks`` (when ``nad_namespace`` is set); None when neither (the
    caller's legacy default network may apply).

    One rule for a pod using both: refused (one form per pod; merging could not say which
    interface list wins when they disagree). A ``networks`` annotation without ovnvnet elements
    (the seed's ``default/ovn-network`` attachment, another plugin's networks) never conflicts,
    and is not checked when ``ovnNetwork`` is there: it is Multus's to read. Without
    ``ovnNetwork``, a ``networks`` annotation that cannot be read at all is an error here (the
    operator answers with ``ovnNetworkError``: Multus cannot run the pod either, and the message
    says why); the admission webhook refuses it only when it names the NAD namespace."""
    ovn_raw = annotations.get(REQUEST_ANNOTATION)
    sel_raw = annotations.get(NETWORKS_ANNOTATION)
    selected: list[InterfaceRequest] = []
    if sel_raw is not None and nad_namespace:
        try:
            selections = parse_network_selection(sel_raw, pod_namespace)
        except AnnotationError:
            if ovn_raw is not None:
                selections = []
            else:
                raise
        selected = selection_requests(selections, nad_namespace)
    if ovn_raw is not None:
        if selected:
            raise AnnotationError(
                f"the pod asks for ovnvnet networks both in {REQUEST_ANNOTATION} and in "
                f"{NETWORKS_ANNOTATION} ({', '.join(r.network for r in selected)}); use one of the "
                f"two forms")
        return parse_ovn_network(ovn_raw)
    return selected or None


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
        _add_address_lists(item, r)
        out.append(item)
    return json.dumps(out, separators=(",", ":"))


def _add_address_lists(item: dict[str, Any], r: InterfaceResult) -> None:
    """``ip_addresses``/``gateway_ips`` (every family, IPv4 first), written unless the interface
    has one IPv4 address only: an IPv4 network's result stays byte for byte what it was."""
    if not r.ipv4_only:
        item["ip_addresses"] = [a.cidr for a in r.addresses]
        item["gateway_ips"] = [a.gateway for a in r.addresses]


def _require_str(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise AnnotationError(f'{where}: "{key}" must be a non-empty string')
    return value


def _decode_mtu(mtu: Any, where: str) -> int | None:
    if mtu is not None and (isinstance(mtu, bool) or not isinstance(mtu, int) or not 0 < mtu < 2**16):
        raise AnnotationError(f'{where}: "mtu" must be an integer 1..65535 or null, got {display(mtu)}')
    return mtu


def _decode_routes(routes_raw: Any, where: str) -> list[Route]:
    routes: list[Route] = []
    if routes_raw is None:
        return routes
    if not isinstance(routes_raw, list):
        raise AnnotationError(f'{where}: "routes" must be a list')
    for j, r in enumerate(routes_raw):
        if not isinstance(r, dict):
            raise AnnotationError(f"{where}.routes[{j}] must be an object")
        dst, rgw = r.get("dst"), r.get("gw")
        net = parse_cidr(dst)
        gw = parse_ip(rgw)
        if net is None or gw is None:
            raise AnnotationError(f'{where}.routes[{j}] needs "dst" (CIDR) and "gw" (address)')
        if net[0].version != gw.version:
            raise AnnotationError(
                f"{where}.routes[{j}]: dst {display(dst)} and gw {display(rgw)} are of different "
                f"families"
            )
        routes.append(Route(dst=str(dst), gw=str(rgw)))
    return routes


def _decode_ip(where: str, key: str, text: Any) -> netaddr.IPAddress:
    ip = parse_ip(text)
    if ip is None:
        raise AnnotationError(
            f"{where}: {key} {display(text)} is not a valid {_family_of_text(text)} address"
        )
    return ip


def _decode_prefix(where: str, key: str, prefix: Any, version: int) -> int:
    top = 32 if version == 4 else 128
    if isinstance(prefix, bool) or not isinstance(prefix, int) or not 0 <= prefix <= top:
        raise AnnotationError(f'{where}: "{key}" must be an integer 0..{top}')
    return prefix


def _decode_addresses(
    where: str, entry: Mapping[str, Any], primary: IfaceAddress
) -> tuple[IfaceAddress, ...]:
    """``ip_addresses`` + ``gateway_ips`` when present (their first entry must be the primary
    fields), else the primary address alone (an older operator's result, or an IPv4 one)."""
    cidrs, gws = entry.get("ip_addresses"), entry.get("gateway_ips")
    if cidrs is None and gws is None:
        return (primary,)
    if not isinstance(cidrs, list) or not isinstance(gws, list) or not 1 <= len(cidrs) <= 2 \
            or len(gws) != len(cidrs):
        raise AnnotationError(
            f'{where}: "ip_addresses" and "gateway_ips" must be lists of one entry per family '
            f"(1 or 2), of the same length"
        )
    out: list[IfaceAddress] = []
    for j, (cidr_text, gw_text) in enumerate(zip(cidrs, gws, strict=True)):
        parsed = parse_cidr(cidr_text)
        if parsed is None:
            raise AnnotationError(
                f"{where}: ip_addresses[{j}] {display(cidr_text)} is not \"address/prefix\""
            )
        gw = _decode_ip(where, f"gateway_ips[{j}]", gw_text)
        if gw.version != parsed[0].version:
            raise AnnotationError(
                f"{where}: gateway_ips[{j}] {gw} is not of the family of ip_addresses[{j}]"
            )
        out.append(IfaceAddress(str(parsed[0]), parsed[1], str(gw)))
    if [a.family for a in out] not in ([4], [6], [4, 6]):
        raise AnnotationError(
            f'{where}: "ip_addresses" must hold one address per family, IPv4 first'
        )
    if out[0] != primary:
        raise AnnotationError(
            f"{where}: ip_addresses[0] {out[0].cidr} (gateway {out[0].gateway}) is not "
            f"ip_address/prefix_length {primary.cidr} (gateway {primary.gateway})"
        )
    return tuple(out)


def _decode_entry(index: int, entry: Any) -> InterfaceResult:
    where = f"ovnIfaceList[{index}]"
    if not isinstance(entry, dict):
        raise AnnotationError(f"{where} must be an object")
    interface = _require_str(entry, "interface", where)
    _check_interface_name(interface)
    network = _require_str(entry, "name", where)
    ip = _decode_ip(where, "ip_address", _require_str(entry, "ip_address", where))
    prefix = _decode_prefix(where, "prefix_length", entry.get("prefix_length"), ip.version)
    mac_text = _require_str(entry, "mac_address", where)
    mac = normalize_mac(mac_text)
    if mac is None:
        raise AnnotationError(f"{where}: mac_address {display(mac_text)} is not a valid MAC address")
    gw = _decode_ip(where, "gateway_ip", _require_str(entry, "gateway_ip", where))
    if gw.version != ip.version:
        raise AnnotationError(f"{where}: gateway_ip {gw} is not of the family of ip_address {ip}")
    addresses = _decode_addresses(where, entry, IfaceAddress(str(ip), prefix, str(gw)))
    default_gateway = _parse_bool(entry.get("defaultGateway"), where, "defaultGateway")
    mtu = _decode_mtu(entry.get("mtu"), where)
    routes = _decode_routes(entry.get("routes"), where)
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
        addresses=addresses,
    )


@_total(RESULT_ANNOTATION)
def decode_iface_list(raw: str) -> list[InterfaceResult]:
    """Inverse of :func:`encode_iface_list`; raises :class:`AnnotationError` on garbage."""
    data = _loads(raw, RESULT_ANNOTATION)
    if not isinstance(data, list):
        raise AnnotationError(f"ovnIfaceList must be a JSON list, got {json_type(data)}")
    if len(data) > MAX_INTERFACES:
        raise AnnotationError(
            f"ovnIfaceList lists {len(data)} interfaces; at most {MAX_INTERFACES} are supported"
        )
    return [_decode_entry(i, entry) for i, entry in enumerate(data)]


# --- the legacy `ovn` annotation -------------------------------------------------------------


def is_legacy_result(raw: Any) -> bool:
    """``ovn`` holds the operator's result (a JSON object with ``gateway_ip``), not a request.

    Total: anything that is not such an object (absent, malformed, too large) is False."""
    try:
        data = _loads(raw, LEGACY_ANNOTATION)
    except AnnotationError:
        return False
    return isinstance(data, dict) and "gateway_ip" in data


@_total(LEGACY_ANNOTATION)
def parse_legacy_request(raw: Any, network: str) -> InterfaceRequest:
    """The request of a pod without ``ovnNetwork``: one interface on ``network`` (the operator's
    default network), dynamic unless ``ovn`` asks for a static address and/or MAC.

    ``ovn`` holding a result (someone else's, or a copy) is not a request: dynamic."""
    ip: netaddr.IPAddress | None = None
    mac: str | None = None
    if raw is not None and raw != "" and not is_legacy_result(raw):
        data = _loads(raw, LEGACY_ANNOTATION)
        if not isinstance(data, dict):
            raise AnnotationError(f"ovn must be a JSON object, got {json_type(data)}")
        ip = _requested_ip(LEGACY_ANNOTATION, "ip_address", data.get("ip_address"))
        mac = _requested_mac(LEGACY_ANNOTATION, "mac_address", data.get("mac_address"))
    return InterfaceRequest(
        network=network, interface=names.LEGACY_INTERFACE, ip=ip, mac=mac, default_gateway=True
    )


def encode_legacy_result(result: InterfaceResult, namespace: str, pod: str) -> str:
    """The ``ovn`` result (ovn-kubernetes' shape; ``port`` for its consumers, never read back)."""
    item: dict[str, Any] = {
        "ip_address": f"{result.ip}/{result.prefix_length}",
        "mac_address": result.mac,
        "gateway_ip": result.gateway,
        "name": result.network,
        "port": names.port_name(namespace, pod, names.LEGACY_INTERFACE),
        "mtu": result.mtu,
        "routes": [r.to_dict() for r in result.routes],
    }
    _add_address_lists(item, result)   # ovn-kubernetes' own key names for the dual-stack lists
    return json.dumps(item, separators=(",", ":"))


@_total(LEGACY_ANNOTATION)
def decode_legacy_result(raw: Any) -> InterfaceResult:
    """Inverse of :func:`encode_legacy_result`; the interface is ``names.LEGACY_INTERFACE`` (the
    agent names it ``CNI_IFNAME``). ``port`` is ignored: the port name is derived."""
    data = _loads(raw, LEGACY_ANNOTATION)
    where = "ovn"
    if not isinstance(data, dict):
        raise AnnotationError(f"ovn must be a JSON object, got {json_type(data)}")
    cidr = parse_cidr(data.get("ip_address"))
    if cidr is None:
        raise AnnotationError(
            f'ovn: ip_address {display(data.get("ip_address"))} is not "address/prefix"'
        )
    ip, prefix = cidr
    mac = normalize_mac(data.get("mac_address"))
    if mac is None:
        raise AnnotationError(
            f'ovn: mac_address {display(data.get("mac_address"))} is not a valid MAC address'
        )
    gw = parse_ip(data.get("gateway_ip"))
    if gw is None or gw.version != ip.version:
        raise AnnotationError(
            f'ovn: gateway_ip {display(data.get("gateway_ip"))} is not a valid '
            f"{family_name(ip.version)} address"
        )
    addresses = _decode_addresses(where, data, IfaceAddress(str(ip), prefix, str(gw)))
    network = data.get("name")
    if not isinstance(network, str) or not network:
        raise AnnotationError(f'ovn: "name" (the network) must be a non-empty string, got {display(network)}')
    return InterfaceResult(
        interface=names.LEGACY_INTERFACE,
        network=network,
        ip=str(ip),
        prefix_length=prefix,
        mac=mac,
        gateway=str(gw),
        default_gateway=True,
        mtu=_decode_mtu(data.get("mtu"), where),
        routes=tuple(_decode_routes(data.get("routes"), where)),
        addresses=addresses,
    )


def operator_written(annotations: Mapping[str, Any]) -> list[str]:
    """The keys present in ``annotations`` that only the operator may write (for admission)."""
    keys = [k for k in OPERATOR_ANNOTATIONS if k in annotations]
    if is_legacy_result(annotations.get(LEGACY_ANNOTATION)):
        keys.append(LEGACY_ANNOTATION)
    return keys


# --- the seal -------------------------------------------------------------------------------


def decode_seal_key(data: Any, where: str) -> bytes:
    """The key is the verbatim bytes (of a file, or a Secret's ``key``); ``where`` names them."""
    if not isinstance(data, bytes):
        raise SealKeyError(f"the seal key in {where} is not bytes")
    if len(data) < MIN_SEAL_KEY_BYTES:
        raise SealKeyError(
            f"the seal key in {where} has {len(data)} bytes; at least {MIN_SEAL_KEY_BYTES} are "
            f"needed (e.g. 32 random bytes: head -c 32 /dev/urandom > FILE)"
        )
    if len(data) > MAX_SEAL_KEY_BYTES:
        raise SealKeyError(f"the seal key in {where} is larger than {MAX_SEAL_KEY_BYTES} bytes")
    return data


def read_seal_key(path: str | Path | None, setting: str = "OVNVNET_SEAL_KEY_FILE") -> bytes:
    """Read the key file named by ``setting``; a missing setting or file is a clear error."""
    if not path:
        raise SealKeyError(
            f"no seal key: set {setting} to a file holding the key the operator seals results "
            f"with (installed: Secret ovnvnet-seal, mounted at /etc/ovnvnet/seal/key)"
        )
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SEAL_KEY_BYTES + 1)
    except OSError as e:
        raise SealKeyError(f"cannot read the seal key {setting}={path}: {e.strerror or e}") from None
    return decode_seal_key(data, f"{setting}={path}")


def _seal_message(uid: str, name: str, value: str) -> bytes:
    parts = [part.encode("utf-8", "surrogatepass") for part in (uid, name, value)]
    return _SEAL_DOMAIN + b"".join(len(p).to_bytes(8, "big") + p for p in parts)


def _mac(key: bytes, uid: str, name: str, value: str) -> bytes:
    return hmac.new(key, _seal_message(uid, name, value), hashlib.sha256).digest()


def seal(key: bytes, uid: str, name: str, value: str) -> str:
    """The ``ovnvnet.io/seal`` value for result ``name`` = ``value`` on the pod with ``uid``."""
    if not uid:
        raise ValueError("a result can only be sealed for a pod UID")
    digest = base64.urlsafe_b64encode(_mac(key, uid, name, value)).rstrip(b"=").decode("ascii")
    return f"{SEAL_VERSION}:{digest}"


def sealed_annotations(key: bytes, uid: str, name: str, value: str) -> dict[str, str]:
    """What the operator writes for a result: the value and its seal, in one patch."""
    return {name: value, SEAL_ANNOTATION: seal(key, uid, name, value)}


def check_seal(key: bytes, uid: str, name: str, value: Any, sealed: Any, pod: str) -> None:
    """Raise :class:`SealError` unless ``sealed`` is the operator's seal of ``name`` = ``value``
    for ``uid``. ``pod`` ("namespace/name") is for the message. Total."""

    def refuse(why: str) -> SealError:
        return SealError(
            f"{name} of {pod} is not sealed by the operator for this pod (uid {uid or '?'}): {why}"
        )

    if not uid:
        raise refuse("the pod has no UID")
    if sealed is None:
        raise refuse(f"it has no {SEAL_ANNOTATION} annotation (written by someone other than the "
                     "operator, or copied without its seal)")
    if not isinstance(sealed, str) or not _SEAL_RE.fullmatch(sealed):
        raise refuse(f"{SEAL_ANNOTATION} {display(sealed)} is not a {SEAL_VERSION} seal")
    if not isinstance(value, str):
        raise refuse(f"the {name} value is {json_type(value)}, not a string")
    if len(value) > MAX_ANNOTATION_BYTES:
        raise refuse(f"the {name} value is larger than {MAX_ANNOTATION_BYTES} bytes")
    try:
        given = base64.urlsafe_b64decode(sealed[len(SEAL_VERSION) + 1 :] + "=")
    except (binascii.Error, ValueError):
        raise refuse(f"{SEAL_ANNOTATION} {display(sealed)} is not a {SEAL_VERSION} seal") from None
    if not hmac.compare_digest(given, _mac(key, uid, name, value)):
        raise refuse("the seal does not match (the result was copied from another pod, or edited)")


@dataclass(frozen=True)
class SealedResult:
    """A pod's result the operator sealed for it: ``name`` is ``ovnIfaceList`` or ``ovn``."""

    name: str
    interfaces: list[InterfaceResult]

    @property
    def legacy(self) -> bool:
        return self.name == LEGACY_ANNOTATION


def result_key(annotations: Mapping[str, Any]) -> str | None:
    """Which annotation holds the pod's result, if any: ``ovnIfaceList`` when present, else
    ``ovn`` for a pod without ``ovnNetwork`` whose ``ovn`` is a result."""
    if RESULT_ANNOTATION in annotations:
        return RESULT_ANNOTATION
    if REQUEST_ANNOTATION not in annotations and is_legacy_result(
        annotations.get(LEGACY_ANNOTATION)
    ):
        return LEGACY_ANNOTATION
    return None


def sealed_result(
    annotations: Mapping[str, Any], uid: str, key: bytes, pod: str, name: str | None = None
) -> SealedResult | None:
    """The pod's result if it is there and sealed for ``uid``; None if there is none.

    ``name`` picks the annotation (default: :func:`result_key`). Raises :class:`SealError` for
    an unsealed result (checked first: nothing unsealed is even decoded) and
    :class:`AnnotationError` for a sealed one that does not decode."""
    name = name or result_key(annotations)
    if name is None or name not in annotations:
        return None
    raw = annotations[name]
    check_seal(key, uid, name, raw, annotations.get(SEAL_ANNOTATION), pod)
    if name == LEGACY_ANNOTATION:
        return SealedResult(name, [decode_legacy_result(raw)])
    return SealedResult(name, decode_iface_list(raw))
