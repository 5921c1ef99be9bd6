"""Address text on the attach path, fast: the same strings and values as netaddr and
:func:`~ovnvnet.model.network.parse_ip`, without their cost on IPv6.

netaddr formats an IPv6 address by splitting its int into words in pure Python before calling
``inet_ntop`` (~5x the cost of an IPv4 address), and ``parse_ip`` builds a ``netaddr.IPAddress``
through ``ipaddress`` for every IPv6 text. A dual-stack attach formats and parses each IPv6
address several times (result, port, record), which made it measurably slower than IPv4 (issue
13). These helpers give exactly the same results:

- :func:`ip_text` is ``str(ip)``: for IPv6, ``inet_ntop`` of the 16 bytes, which is what netaddr
  returns in its default (compact) form.
- :func:`ip_value` is ``(v.version, int(v))`` of ``v = parse_ip(text)`` (None when ``parse_ip``
  refuses the text): an IPv6 text already in canonical form (what :func:`ip_text` writes) is
  read with one ``inet_pton``; any other text goes through ``parse_ip`` itself, so its strict
  rules decide.
"""
from __future__ import annotations

import socket

import netaddr

from .network import parse_ip

__all__ = ["ip_text", "ip_value"]


def ip_text(ip: netaddr.IPAddress) -> str:
    """``str(ip)``, without netaddr's pure-Python IPv6 formatting."""
    if ip.version == 6:
        return socket.inet_ntop(socket.AF_INET6, int(ip).to_bytes(16, "big"))
    return str(ip)


def ip_value(text: str) -> tuple[int, int] | None:
    """``(version, int)`` of ``parse_ip(text)``, or None when it is not an address."""
    if ":" in text and "." not in text and "%" not in text:
        try:
            packed = socket.inet_pton(socket.AF_INET6, text)
        except OSError:
            packed = None   # parse_ip decides, below
        if packed is not None and socket.inet_ntop(socket.AF_INET6, packed) == text:
            return 6, int.from_bytes(packed, "big")
    parsed = parse_ip(text)
    return None if parsed is None else (int(parsed.version), int(parsed))
