"""CNI protocol: the request the shim forwards, results and errors as the spec defines them.

Spec 1.0.0 is the native format; 0.4.0 and 0.3.x results differ only in ``ips[].version``
(and 0.3.x has no CHECK). Every error object carries ``cniVersion``, ``code``, ``msg`` and
``details``, as the shim's own errors do.

Size limit (one for both sides): the shim accepts at most :data:`MAX_INPUT_BYTES` raw bytes of
input (stdin plus every ``CNI_*`` environment entry ``NAME=VALUE``) and refuses more before it
connects. JSON escaping makes one byte at most 6 (``\\u00XX``), and the request's envelope adds
25 bytes, so the agent accepts :data:`MAX_REQUEST_BYTES` = 6 * MAX_INPUT_BYTES + 64: any input the
shim sends fits. cni/shim/ovn-k8s-cni-overlay.c states the same numbers (MAX_INPUT, MAX_REQUEST).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CHECK_VERSIONS",
    "SUPPORTED_VERSIONS",
    "CniError",
    "CniRequest",
    "PlumbedInterface",
    "build_result",
    "result_subset",
    "parse_request",
    "version_result",
]

MAX_INPUT_BYTES = 1024 * 1024
MAX_REQUEST_BYTES = 6 * MAX_INPUT_BYTES + 64

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
CHECK_VERSIONS = ("0.4.0", "1.0.0")

# Well-known error codes of the spec; 100+ are ours.
ERR_INCOMPATIBLE_VERSION = 1
ERR_UNSUPPORTED_FIELD = 2
ERR_UNKNOWN_CONTAINER = 3
ERR_INVALID_ENV = 4
ERR_IO = 5
ERR_DECODE = 6
ERR_INVALID_CONFIG = 7
ERR_TRY_AGAIN_LATER = 11
ERR_UNTRUSTED_AGENT = 100  # the shim's: the socket is not served by root
ERR_NETWORK_ERROR = 101  # the operator wrote ovnNetworkError
ERR_ANNOTATION_TIMEOUT = 102
ERR_POD_MISMATCH = 103
ERR_PLUMBING = 104
ERR_OVN_INSTALLED_TIMEOUT = 105
ERR_CHECK_FAILED = 106
ERR_INTERNAL = 999

DEFAULT_ANNOTATION_TIMEOUT = 30.0
DEFAULT_OVN_INSTALLED_TIMEOUT = 30.0

# ``resultInterfaces`` in the network configuration: what the result of a call that plumbs every
# interface of the pod (the seed's single attachment) lists. "all": every interface, each address
# pointing at its sandbox interface (the CNI spec's "all interfaces created"; Multus 4.1+ and its
# NetworkAttachmentDefinition client's CreateNetworkStatuses turn that into one exact
# network-status entry per interface). "ifname": only the interface CNI_IFNAME names (the first
# interface when it names none) and its addresses: Multus 4.0.x (CreateNetworkStatus) makes one
# network-status entry per call from the last sandbox interface's name and MAC and *every* address
# of the result, so only a one-interface result keeps that entry true.
RESULT_ALL = "all"
RESULT_IFNAME = "ifname"
RESULT_INTERFACES = (RESULT_ALL, RESULT_IFNAME)


class CniError(Exception):
    """A failure to report to the runtime as the spec's error object."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict[str, Any]:
        return {"cniVersion": cni_version, "code": self.code, "msg": self.msg,
                "details": self.details}


def _timeout(conf: Mapping[str, Any], key: str, default: float) -> float:
    value = conf.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
        raise CniError(
            ERR_INVALID_CONFIG, f'network configuration "{key}" must be seconds in (0, 3600]',
            f"got {value!r}",
        )
    return float(value)


def _result_interfaces(conf: Mapping[str, Any]) -> str:
    value = conf.get("resultInterfaces", RESULT_ALL)
    if value not in RESULT_INTERFACES:
        raise CniError(
            ERR_INVALID_CONFIG,
            f'network configuration "resultInterfaces" must be "{RESULT_ALL}" or "{RESULT_IFNAME}"',
            f"got {value!r}",
        )
    return str(value)


@dataclass(frozen=True)
class CniRequest:
    command: str
    container_id: str
    netns: str
    ifname: str
    args: Mapping[str, str]
    config: Mapping[str, Any]
    cni_version: str
    annotation_timeout: float = DEFAULT_ANNOTATION_TIMEOUT
    ovn_installed_timeout: float = DEFAULT_OVN_INSTALLED_TIMEOUT
    result_interfaces: str = RESULT_ALL

    @property
    def pod_namespace(self) -> str:
        return self.args.get("K8S_POD_NAMESPACE", "")

    @property
    def pod_name(self) -> str:
        return self.args.get("K8S_POD_NAME", "")

    @property
    def pod_uid(self) -> str:
        return self.args.get("K8S_POD_UID", "")


# CNI spec: "Must start with an alphanumeric character, optionally followed by any combination of
# one or more alphanumeric characters, underscore (), dot (.) or hyphen (-)." DEL matches host
# links on the id recorded in their alias, so it must not contain separators.
_CONTAINER_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


def parse_cni_args(text: str) -> dict[str, str]:
    """``CNI_ARGS``: ``K=V;K=V`` (values may contain ``=``)."""
    out: dict[str, str] = {}
    for item in text.split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise CniError(ERR_INVALID_ENV, "CNI_ARGS is malformed", f"element {item!r} is not K=V")
        out[key] = value
    return out


def parse_request(env: Mapping[str, str], config_text: str) -> CniRequest:
    """Validate what the shim forwarded; raises :class:`CniError` with the spec's codes."""
    command = env.get("CNI_COMMAND", "")
    try:
        config = json.loads(config_text) if config_text.strip() else {}
    except json.JSONDecodeError as e:
        raise CniError(ERR_DECODE, "network configuration is not valid JSON", str(e)) from None
    if not isinstance(config, dict):
        raise CniError(ERR_DECODE, "network configuration must be a JSON object")
    version = config.get("cniVersion") or "0.4.0"
    if not isinstance(version, str):
        raise CniError(ERR_INVALID_CONFIG, '"cniVersion" must be a string')
    if command == "VERSION":
        return CniRequest(command, "", "", "", {}, config, version)
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            ERR_INCOMPATIBLE_VERSION, f"CNI version {version} is not supported",
            f"supported: {', '.join(SUPPORTED_VERSIONS)}",
        )
    if command not in ("ADD", "DEL", "CHECK"):
        raise CniError(ERR_INVALID_ENV, f"unknown CNI_COMMAND {command!r}",
                       "expected ADD, DEL, CHECK or VERSION")
    if command == "CHECK" and version not in CHECK_VERSIONS:
        raise CniError(ERR_INCOMPATIBLE_VERSION, f"CHECK is not defined for CNI version {version}")
    container_id = env.get("CNI_CONTAINERID", "")
    if not container_id:
        raise CniError(ERR_INVALID_ENV, "CNI_CONTAINERID is required")
    if not _CONTAINER_ID_RE.fullmatch(container_id):
        raise CniError(
            ERR_INVALID_ENV, "CNI_CONTAINERID is not a valid container id",
            f"got {container_id[:100]!r}; the spec allows an alphanumeric first character, then "
            "alphanumerics, '_', '.' and '-'",
        )
    netns = env.get("CNI_NETNS", "")
    if command != "DEL" and not netns:
        raise CniError(ERR_INVALID_ENV, f"CNI_NETNS is required for {command}")
    ifname = env.get("CNI_IFNAME", "")
    if command != "DEL" and not ifname:
        raise CniError(ERR_INVALID_ENV, f"CNI_IFNAME is required for {command}")
    args = parse_cni_args(env.get("CNI_ARGS", ""))
    return CniRequest(
        command=command,
        container_id=container_id,
        netns=netns,
        ifname=ifname,
        args=args,
        config=config,
        cni_version=version,
        annotation_timeout=_timeout(config, "annotationTimeout", DEFAULT_ANNOTATION_TIMEOUT),
        ovn_installed_timeout=_timeout(
            config, "ovnInstalledTimeout", DEFAULT_OVN_INSTALLED_TIMEOUT
        ),
        result_interfaces=_result_interfaces(config),
    )


@dataclass(frozen=True)
class PlumbedInterface:
    """One interface as plumbed, for the result."""

    name: str
    mac: str
    host_name: str
    host_mac: str
    addresses: Sequence[tuple[str, str]]  # ("ip/prefix", gateway) per family, IPv4 first
    mtu: int | None = None
    routes: Sequence[tuple[str, str]] = field(default_factory=tuple)  # (dst, gw)


def _ip_version(address: str) -> str:
    return "6" if ":" in address else "4"


def result_subset(
    mode: str, ifname: str, plumbed: Sequence[PlumbedInterface]
) -> Sequence[PlumbedInterface]:
    """What a call that plumbed ``plumbed`` reports (see :data:`RESULT_INTERFACES`): all of
    them, or for "ifname" only the interface ``ifname`` names, else the first."""
    if mode != RESULT_IFNAME or len(plumbed) <= 1:
        return plumbed
    return [next((i for i in plumbed if i.name == ifname), plumbed[0])]


def build_result(
    cni_version: str, netns: str, plumbed: Sequence[PlumbedInterface]
) -> dict[str, Any]:
    """The ADD result: for each interface a host and a sandbox entry; ``ips`` has one entry per
    address (both families of a dual-stack interface, IPv4 first), each with its family's
    gateway and pointing at the sandbox entry. Spec 1.0.0 has no ``ips[].version`` (the address
    says its family); 0.3.x and 0.4.0 require it: "4" or "6"."""
    interfaces: list[dict[str, Any]] = []
    ips: list[dict[str, Any]] = []
    routes: list[dict[str, str]] = []
    for p in plumbed:
        interfaces.append({"name": p.host_name, "mac": p.host_mac})
        interfaces.append({"name": p.name, "mac": p.mac, "sandbox": netns})
        for address, gateway in p.addresses:
            ip: dict[str, Any] = {
                "address": address,
                "gateway": gateway,
                "interface": len(interfaces) - 1,
            }
            if cni_version != "1.0.0":
                ip = {"version": _ip_version(address), **ip}
            ips.append(ip)
        routes.extend({"dst": dst, "gw": gw} for dst, gw in p.routes)
    result: dict[str, Any] = {
        "cniVersion": cni_version,
        "interfaces": interfaces,
        "ips": ips,
        "routes": routes,
        "dns": {},
    }
    return result


def version_result(cni_version: str) -> dict[str, Any]:
    return {"cniVersion": cni_version, "supportedVersions": list(SUPPORTED_VERSIONS)}
