"""The legacy single-interface contract (the seed's backward compatibility, ovn-kubernetes' `ovn`
annotation). A pod without `ovnNetwork` may ask for a static address with
`ovn: {"ip_address": "a.b.c.d[/p]", "mac_address": "..."}`; the operator answers by replacing the
annotation with the full result, recognised by its `gateway_ip` key:
`{"ip_address": "a.b.c.d/p", "mac_address", "gateway_ip", "name", "port", "mtu", "routes"}`."""
from __future__ import annotations

import json
from typing import Any

import netaddr

from ovnvnet.model import names
from ovnvnet.model.annotation import AnnotationError, InterfaceRequest, InterfaceResult, normalize_mac
from ovnvnet.model.network import Route

ANNOTATION = "ovn"


def is_result(raw: str | None) -> bool:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return False
    return isinstance(value, dict) and "gateway_ip" in value


def parse_legacy_request(raw: str | None, network: str) -> InterfaceRequest:
    """The request of a pod without `ovnNetwork`: dynamic unless `ovn` gives a static address."""
    ip = mac = None
    if raw and not is_result(raw):
        if len(raw) > 4096:
            raise AnnotationError("ovn annotation is too large")
        try:
            value: Any = json.loads(raw)
        except ValueError as exc:
            raise AnnotationError(f"ovn annotation is not valid JSON: {exc.msg}") from None
        if not isinstance(value, dict):
            raise AnnotationError("ovn annotation must be a JSON object")
        ip_raw = value.get("ip_address")
        if ip_raw not in (None, ""):
            text = str(ip_raw).split("/", 1)[0]
            try:
                ip = netaddr.IPAddress(text, 4)
            except (netaddr.AddrFormatError, ValueError, TypeError):
                raise AnnotationError(f'ip_address "{ip_raw}" is not a valid IPv4 address') from None
        mac_raw = value.get("mac_address")
        if mac_raw not in (None, ""):
            mac = normalize_mac(mac_raw)
            if mac is None:
                raise AnnotationError(f'mac_address "{mac_raw}" is not a valid MAC address')
    return InterfaceRequest(network=network, interface=names.LEGACY_INTERFACE, ip=ip, mac=mac, default_gateway=True)


def encode_legacy_result(result: InterfaceResult, namespace: str, pod: str) -> str:
    return json.dumps({
        "ip_address": f"{result.ip}/{result.prefix_length}", "mac_address": result.mac,
        "gateway_ip": result.gateway, "name": result.network,
        "port": names.port_name(namespace, pod, names.LEGACY_INTERFACE),
        "mtu": result.mtu, "routes": [r.to_dict() for r in result.routes],
    }, separators=(",", ":"))


def decode_legacy_result(raw: str) -> InterfaceResult:
    try:
        value = json.loads(raw)
        ip, _, prefix = str(value["ip_address"]).partition("/")
        return InterfaceResult(
            interface=names.LEGACY_INTERFACE, network=str(value["name"]), ip=str(netaddr.IPAddress(ip)),
            prefix_length=int(prefix or 32), mac=str(value["mac_address"]), gateway=str(value["gateway_ip"]),
            default_gateway=True, mtu=value.get("mtu"),
            routes=tuple(Route(dst=r["dst"], gw=r["gw"]) for r in value.get("routes") or ()),
        )
    except (ValueError, KeyError, TypeError, AttributeError, netaddr.AddrFormatError) as exc:
        raise AnnotationError(f"ovn annotation is not a valid result: {exc}") from None
