"""The legacy single interface (ovn-kubernetes' ``ovn`` annotation), agent side.

A pod without ``ovnNetwork`` gets one interface, named ``CNI_IFNAME``, on the operator's
default network (``OVNVNET_DEFAULT_NETWORK``). The pod may ask for a static address in the
``ovn`` annotation (``{"ip_address": "a.b.c.d[/p]", "mac_address": "..."}``, no
``gateway_ip``); the operator *replaces* it with its result, recognised by ``gateway_ip``::

    {"ip_address": "a.b.c.d/p", "mac_address": "...", "gateway_ip": "...", "name": "<network>",
     "port": "<ns>_<pod>", "mtu": N|null, "routes": [{"dst": CIDR, "gw": IP}, ...]}

As in ovn-kubernetes, this interface is the pod's primary one: its default route goes via
``gateway_ip``.
"""
from __future__ import annotations

import json
from typing import Any

from ..model.annotation import AnnotationError, InterfaceResult, normalize_mac
from ..model.network import Route, display, parse_ipv4, parse_ipv4_cidr

__all__ = ["LEGACY_ANNOTATION", "LegacyResult", "decode_legacy_result", "is_legacy_result"]

LEGACY_ANNOTATION = "ovn"


def _load(raw: Any) -> Any:
    if not isinstance(raw, str) or len(raw) > 64 * 1024:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def is_legacy_result(raw: Any) -> bool:
    """The ``ovn`` annotation holds the operator's result (not just the pod's request)."""
    data = _load(raw)
    return isinstance(data, dict) and "gateway_ip" in data


class LegacyResult:
    """The decoded result: the interface to plumb and its logical switch port."""

    def __init__(self, iface: InterfaceResult, port: str) -> None:
        self.iface = iface
        self.port = port


def decode_legacy_result(raw: str, ifname: str, namespace: str, pod: str) -> LegacyResult:
    """Raises :class:`AnnotationError` with one specific message."""
    data = _load(raw)
    if not isinstance(data, dict):
        raise AnnotationError("the ovn annotation is not a JSON object")
    cidr = parse_ipv4_cidr(data.get("ip_address"))
    if cidr is None:
        raise AnnotationError(
            f'ovn: ip_address {display(data.get("ip_address"))} is not "a.b.c.d/prefix"')
    ip, prefix = cidr
    mac = normalize_mac(data.get("mac_address"))
    if mac is None:
        raise AnnotationError(f'ovn: mac_address {display(data.get("mac_address"))} is not a MAC address')
    gw = parse_ipv4(data.get("gateway_ip"))
    if gw is None:
        raise AnnotationError(f'ovn: gateway_ip {display(data.get("gateway_ip"))} is not an IPv4 address')
    mtu = data.get("mtu")
    if mtu is not None and (isinstance(mtu, bool) or not isinstance(mtu, int)):
        raise AnnotationError('ovn: "mtu" must be an integer or null')
    routes: list[Route] = []
    for j, r in enumerate(data.get("routes") or []):
        if not isinstance(r, dict) or parse_ipv4_cidr(r.get("dst")) is None or parse_ipv4(r.get("gw")) is None:
            raise AnnotationError(f'ovn: routes[{j}] needs "dst" (CIDR) and "gw" (address)')
        routes.append(Route(dst=r["dst"], gw=r["gw"]))
    port = data.get("port") or f"{namespace}_{pod}"
    if not isinstance(port, str):
        raise AnnotationError('ovn: "port" must be a string')
    network = data.get("name") if isinstance(data.get("name"), str) else ""
    iface = InterfaceResult(
        interface=ifname, network=network, ip=str(ip), prefix_length=prefix, mac=mac,
        gateway=str(gw), default_gateway=True, mtu=mtu, routes=tuple(routes),
    )
    return LegacyResult(iface, port)
