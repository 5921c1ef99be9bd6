"""The underlay of a multi-node local stack: a private L2 segment between the node namespaces.

A network namespace of its own (``<netns_prefix>underlay``) holds a Linux bridge ``ul-br``; each
node's namespace gets one end of a veth pair (``ul-phy``, a port of the node's OVS bridge
``br-phy``), the other end (``ul-n<i>``) is a port of ``ul-br``. Node ``i``'s encap IP is
``192.168.254.<i>/24`` on ``br-phy``'s internal interface (:func:`harness.dataplane.configure_underlay`),
so the Geneve tunnels ovn-controller makes between the chassis run over this segment only:
nothing leaves the stack's namespaces. :meth:`Underlay.remove` deletes the namespace (and with it
the bridge and every veth end in it). Every step is idempotent.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MTU", "NODE_PORT", "SUBNET", "Underlay", "encap_ip"]

SUBNET = "192.168.254.0/24"
NODE_PORT = "ul-phy"      # the veth end in a node's namespace (a port of its br-phy)
BRIDGE = "ul-br"
MTU = 9000


def encap_ip(index: int) -> str:
    """Node ``index``'s (1-based) encap address on the underlay."""
    if not 1 <= index <= 250:
        raise ValueError(f"node index {index} out of range 1..250")
    return f"192.168.254.{index}"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out


def _exists(netns: str) -> bool:
    return Path(f"/var/run/netns/{netns}").exists()


@dataclass(frozen=True)
class Underlay:
    netns: str

    def create(self) -> None:
        if not _exists(self.netns):
            _ip("netns", "add", self.netns)
        _ip("-n", self.netns, "link", "set", "lo", "up")
        if _ip("-n", self.netns, "link", "show", BRIDGE, check=False).returncode != 0:
            _ip("-n", self.netns, "link", "add", BRIDGE, "type", "bridge")
        _ip("-n", self.netns, "link", "set", BRIDGE, "up")

    def attach(self, node_netns: str, index: int) -> str:
        """A veth from node ``index``'s namespace to the bridge; returns the node end's name."""
        self.create()
        if not _exists(node_netns):
            _ip("netns", "add", node_netns)
        peer = f"ul-n{index}"
        if _ip("-n", node_netns, "link", "show", NODE_PORT, check=False).returncode != 0:
            _ip("-n", self.netns, "link", "del", peer, check=False)  # a stale end of an old pair
            _ip("-n", self.netns, "link", "add", peer, "type", "veth", "peer", "name", NODE_PORT,
                "netns", node_netns)
        # room for the Geneve header: a pod's 1500-byte packet crosses encapsulated, unfragmented
        _ip("-n", self.netns, "link", "set", peer, "mtu", str(MTU), "master", BRIDGE, "up")
        _ip("-n", node_netns, "link", "set", NODE_PORT, "mtu", str(MTU), "up")
        return NODE_PORT

    def counters(self, index: int) -> dict[str, int]:
        """rx/tx packets and bytes of node ``index``'s port on the bridge."""
        out = _ip("-n", self.netns, "-s", "-j", "link", "show", f"ul-n{index}").stdout
        stats = json.loads(out)[0]["stats64"]
        return {f"{d}_{k}": int(stats[d][k]) for d in ("rx", "tx") for k in ("packets", "bytes")}

    def remove(self) -> None:
        if _exists(self.netns):
            _ip("netns", "del", self.netns, check=False)
