"""Typed models: the VirtualNetwork spec, the pod annotation contract, and shared names."""

from .annotation import (
    MAX_INTERFACES,
    AnnotationError,
    InterfaceRequest,
    InterfaceResult,
    decode_iface_list,
    encode_iface_list,
    parse_ovn_network,
)
from .network import NetworkSpec, Route, SpecError, parse_network_spec, spec_conflicts

__all__ = [
    "MAX_INTERFACES",
    "AnnotationError",
    "InterfaceRequest",
    "InterfaceResult",
    "NetworkSpec",
    "Route",
    "SpecError",
    "decode_iface_list",
    "encode_iface_list",
    "parse_network_spec",
    "parse_ovn_network",
    "spec_conflicts",
]
