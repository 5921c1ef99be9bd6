"""The switch side of a local stack: OVS (userspace datapath) and ovn-controller for one node.

There is no OVS kernel module here, so br-int uses the netdev (userspace) datapath; the pods'
veth host ends are ordinary ``system`` ports polled by ovs-vswitchd. Every daemon runs with its
run/log/db directories pointed into ``root`` and writes a pidfile there; :meth:`Dataplane.stop`
kills by those pids only.

``netns``: run ovs-vswitchd and ovn-controller inside that network namespace (created if
missing) instead of ours, so several data planes (parallel test runs) never fight over the
``br-int`` tap device. The SB remote must then be reachable from inside it: use a ``unix:``
remote (a ``tcp:127.0.0.1`` remote would be the namespace's own loopback). The node agent must
be started with ``--host-netns`` set to the same namespace.

``underlay`` (a node of a multi-node stack, see :mod:`harness.underlay`): ``(port, encap IP)``, a
netdev bridge ``br-phy`` holding ``port`` (a veth already in the node's namespace) with the encap
IP on its internal interface, and ``ovn-encap-ip`` set to it, before ovn-controller starts; OVS's
userspace tunnelling routes the Geneve packets to the other chassis through it. Without it the
encap IP is 127.0.0.1 (one node: no tunnel is ever used).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .proc import pid_alive

__all__ = ["PHYS_BRIDGE", "Dataplane", "configure_underlay", "dataplane_env", "start_dataplane",
           "wait_encap"]

VSWITCH_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
DAEMONS = ("ovn-controller", "ovs-vswitchd", "ovsdb-server")  # stop order
PHYS_BRIDGE = "br-phy"


@dataclass
class Dataplane:
    root: Path
    node: str
    sb_remote: str
    bridge: str = "br-int"
    netns: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def ovs_remote(self) -> str:
        return f"unix:{self.root / 'db.sock'}"

    def pidfile(self, daemon: str) -> Path:
        return self.root / f"{daemon}.pid"

    def pid(self, daemon: str) -> int | None:
        try:
            return int(self.pidfile(daemon).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def vsctl(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(
            ["ovs-vsctl", f"--db={self.ovs_remote}", "--timeout=10", *args],
            capture_output=True, text=True, env=self.env,
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"ovs-vsctl {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout.strip()

    def stop(self, timeout: float = 10.0) -> None:
        """Kill our daemons by pid (SIGTERM, then SIGKILL); idempotent."""
        for daemon in DAEMONS:
            pid = self.pid(daemon)
            if pid is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.pidfile(daemon).unlink(missing_ok=True)

    def running(self) -> bool:
        """Every daemon of this data plane is alive."""
        return all((pid := self.pid(d)) is not None and pid_alive(pid) for d in DAEMONS)

    def remove_netns(self) -> None:
        if self.netns:
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)


def dataplane_env(root: Path) -> dict[str, str]:
    """Our environment with every OVS/OVN directory pointed into ``root``."""
    env = dict(os.environ)
    for key in ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVN_RUNDIR", "OVN_LOGDIR", "OVN_DBDIR",
                "OVS_SYSCONFDIR"):
        env[key] = str(root)
    return env


def _run(argv: list[str], env: dict[str, str]) -> None:
    out = subprocess.run(argv, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {out.stderr.strip() or out.stdout.strip()}")


def start_dataplane(
    root: Path,
    sb_remote: str,
    node: str,
    *,
    netns: str | None = None,
    bridge: str = "br-int",
    timeout: float = 30.0,
    underlay: tuple[str, str] | None = None,
) -> Dataplane:
    """Start ovsdb-server (vswitch), ovs-vswitchd (netdev) and ovn-controller for ``node``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sock = root / "db.sock"
    if len(str(sock)) > 100 or len(str(root / f"{bridge}.mgmt")) > 100:
        raise ValueError(f"{root} is too long for unix socket paths; use a shorter root")
    env = dataplane_env(root)
    dp = Dataplane(root=root, node=node, sb_remote=sb_remote, bridge=bridge, netns=netns, env=env)
    prefix: list[str] = []
    if netns:
        if not Path(f"/var/run/netns/{netns}").exists():
            _run(["ip", "netns", "add", netns], env)
        _run(["ip", "-n", netns, "link", "set", "lo", "up"], env)
        prefix = ["ip", "netns", "exec", netns]

    try:
        db = root / "conf.db"
        if not db.exists():
            _run(["ovsdb-tool", "create", str(db), VSWITCH_SCHEMA], env)
        _run([
            "ovsdb-server", "--detach", "--no-chdir",
            f"--pidfile={dp.pidfile('ovsdb-server')}",
            f"--log-file={root / 'ovsdb-server.log'}",
            f"--unixctl={root / 'ovsdb-server.ctl'}",
            f"--remote=punix:{sock}", "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
            str(db),
        ], env)
        dp.vsctl("--no-wait", "init")
        dp.vsctl(
            "--no-wait", "set", "Open_vSwitch", ".",
            f"external_ids:system-id={node}",
            f"external_ids:hostname={node}",
            f"external_ids:ovn-remote={sb_remote}",
            "external_ids:ovn-encap-type=geneve",
            "external_ids:ovn-encap-ip=127.0.0.1",
            "external_ids:ovn-bridge-datapath-type=netdev",
            f"external_ids:ovn-bridge={bridge}",
        )
        _run([
            *prefix, "ovs-vswitchd", "--detach", "--no-chdir",
            f"--pidfile={dp.pidfile('ovs-vswitchd')}",
            f"--log-file={root / 'ovs-vswitchd.log'}",
            f"--unixctl={root / 'ovs-vswitchd.ctl'}",
            "--disable-system-route",
            f"unix:{sock}",
        ], env)
        dp.vsctl(
            "--may-exist", "add-br", bridge,
            "--", "set", "Bridge", bridge, "datapath_type=netdev", "fail-mode=secure",
            "other_config:disable-in-band=true",
        )
        if underlay:
            configure_underlay(dp, *underlay)
        _run([
            *prefix, "ovn-controller", "--detach", "--no-chdir",
            f"--pidfile={dp.pidfile('ovn-controller')}",
            f"--log-file={root / 'ovn-controller.log'}",
            f"unix:{sock}",
        ], env)
        # ready once ovn-controller has registered this node's Chassis in the SB
        deadline = time.monotonic() + timeout
        while not _chassis_registered(dp):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"ovn-controller for {node} did not register in the SB ({sb_remote}) within "
                    f"{timeout:g}s; see {root / 'ovn-controller.log'}"
                )
            time.sleep(0.1)
    except BaseException:
        dp.stop()
        raise
    return dp


def configure_underlay(dp: Dataplane, port: str, ip: str, prefix_length: int = 24) -> None:
    """``br-phy`` (netdev) holding ``port``, ``ip`` on its internal interface, ``ovn-encap-ip``
    set to it (idempotent; on a running node ovn-controller moves its Encap by itself)."""
    prefix = ["ip", "netns", "exec", dp.netns] if dp.netns else []
    dp.vsctl("--may-exist", "add-br", PHYS_BRIDGE, "--", "set", "Bridge", PHYS_BRIDGE,
             "datapath_type=netdev", "other_config:disable-in-band=true")
    dp.vsctl("--may-exist", "add-port", PHYS_BRIDGE, port)
    dp.vsctl("set", "Interface", PHYS_BRIDGE, "mtu_request=9000")  # the underlay's (harness.underlay.MTU)
    have = subprocess.run([*prefix, "ip", "-o", "-4", "addr", "show", "dev", PHYS_BRIDGE],
                          capture_output=True, text=True, env=dp.env).stdout
    if f" {ip}/{prefix_length} " not in have:
        _run([*prefix, "ip", "addr", "add", f"{ip}/{prefix_length}", "dev", PHYS_BRIDGE], dp.env)
    _run([*prefix, "ip", "link", "set", PHYS_BRIDGE, "up"], dp.env)
    # ovs-vswitchd runs with --disable-system-route: its tunnel route table (ovs/route) learns
    # nothing from the kernel, so the underlay's subnet is routed to br-phy by hand (the remote
    # chassis' MAC is then learnt by OVS's own ARP, tnl/neigh)
    net = ipaddress.ip_interface(f"{ip}/{prefix_length}").network
    ctl = ["ovs-appctl", "-t", str(dp.root / "ovs-vswitchd.ctl")]
    routes = subprocess.run([*ctl, "ovs/route/show"], capture_output=True, text=True, env=dp.env).stdout
    if f"{net}" not in routes.split() and f"{net.network_address}/{net.prefixlen}" not in routes:
        _run([*ctl, "ovs/route/add", str(net), PHYS_BRIDGE], dp.env)
    dp.vsctl("set", "Open_vSwitch", ".", f"external_ids:ovn-encap-ip={ip}")


def wait_encap(dp: Dataplane, ip: str, timeout: float = 30.0) -> None:
    """Until ovn-controller has published ``ip`` as this chassis' Geneve encap in the SB."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(
            ["ovn-sbctl", f"--db={dp.sb_remote}", "--timeout=5", "--bare", "--columns=ip",
             "find", "Encap", f"chassis_name={dp.node}", "type=geneve"],
            capture_output=True, text=True, env=dp.env,
        )
        if out.returncode == 0 and out.stdout.split() == [ip]:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"ovn-controller of {dp.node} did not move its encap IP to {ip} within "
                               f"{timeout:g}s (SB Encap: {out.stdout.split()}); see {dp.root / 'ovn-controller.log'}")
        time.sleep(0.1)


def _chassis_registered(dp: Dataplane) -> bool:
    out = subprocess.run(
        ["ovn-sbctl", f"--db={dp.sb_remote}", "--timeout=5", "--bare", "--columns=name",
         "find", "Chassis", f"name={dp.node}"],
        capture_output=True, text=True, env=dp.env,
    )
    return out.returncode == 0 and out.stdout.strip() == dp.node
