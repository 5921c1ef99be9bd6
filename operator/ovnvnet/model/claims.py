"""The IPClaim spec (issue 15; crds/ipclaims.ovnvnet.io.yaml), read and checked on its own.

``spec.network`` and ``spec.interface`` name what the claim is for. ``spec.ips`` (optional) are
the *requested* addresses: at most one per family (an IPv4 and/or an IPv6 address, as the
``ip_addresses`` of a request), and ``spec.mac`` (optional) the requested MAC. A claim asking for
addresses holds exactly those from the moment the operator sees it (a family of a dual-stack
network not listed gets a dynamic address, as in a request); a claim asking for none gets its
addresses from the first pod using it. Whether the addresses are in the network's subnet and free
is the allocator's question (reconcile/claims.py); here only the form: each entry an address, one
per family, no address twice, a unicast non-zero MAC. ``str(ClaimSpecError)`` is the message the
pod's ``ovnNetworkError`` and the claim's ``Ready`` condition carry, naming the claim, field and
value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import netaddr

from .annotation import AnnotationError, _check_mac
from .network import display, family_name, json_type, parse_ip

MAX_IPS = 2   # one per family


class ClaimSpecError(ValueError):
    """The claim's spec cannot be used; ``str(e)`` is the user message."""


@dataclass(frozen=True)
class ClaimSpec:
    network: str
    interface: str
    ips: tuple[netaddr.IPAddress, ...] = ()   # requested, IPv4 first; empty: the first pod's
    mac: str | None = None                    # requested (normalised); None: derived or the first pod's

    @property
    def requests(self) -> bool:
        """Whether the claim asks for addresses of its own (held from its creation)."""
        return bool(self.ips) or self.mac is not None


def parse_claim_spec(spec: Any, ref: str) -> ClaimSpec:
    """The spec of IPClaim ``ref`` ("namespace/name"), or ClaimSpecError saying what is wrong."""
    if not isinstance(spec, dict):
        raise ClaimSpecError(f"IPClaim {ref}: spec must be an object, got {json_type(spec)}")
    network, interface = (_name(spec, key, ref) for key in ("network", "interface"))
    raw = spec.get("ips")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise ClaimSpecError(f"IPClaim {ref}: spec.ips must be a list of addresses, got {json_type(raw)}")
    if len(raw) > MAX_IPS:
        raise ClaimSpecError(f"IPClaim {ref}: spec.ips lists {len(raw)} addresses; at most one per family (2)")
    ips: dict[int, netaddr.IPAddress] = {}
    for i, text in enumerate(raw):
        ip = parse_ip(text) if isinstance(text, str) else None
        if ip is None:
            raise ClaimSpecError(f"IPClaim {ref}: spec.ips[{i}] {display(text)} is not an IP address "
                                 f"(give the address alone, without a prefix)")
        if ip.version in ips:
            if ips[ip.version] == ip:
                raise ClaimSpecError(f"IPClaim {ref}: spec.ips lists {ip} twice")
            raise ClaimSpecError(f"IPClaim {ref}: spec.ips lists two {family_name(ip.version)} addresses "
                                 f"({ips[ip.version]} and {ip}); at most one per family")
        ips[ip.version] = ip
    mac = spec.get("mac")
    if mac is not None:
        try:
            mac = _check_mac(mac, "spec.mac")
        except AnnotationError as exc:
            raise ClaimSpecError(f"IPClaim {ref}: {exc}") from None
    return ClaimSpec(network, interface, tuple(ips[v] for v in sorted(ips)), mac)


def _name(spec: dict[str, Any], key: str, ref: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value:
        raise ClaimSpecError(f"IPClaim {ref}: spec.{key} (a non-empty string) is required, got {display(value)}")
    return value
