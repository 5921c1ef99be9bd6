"""A real local stack on loopback: Kubernetes, OVN central, optionally a node and the operator.

It is composed of one part per process group:

- :class:`~harness.kube.KubeControlPlane`: etcd, kube-apiserver 1.20, kube-controller-manager;
- :class:`~harness.central.OvnCentral`: OVN NB/SB ovsdb-servers and ovn-northd (and NB RAFT);
- :class:`~harness.node.Node`: one node's data plane (OVS + ovn-controller in its own network
  namespace) and its CNI node agent, only when asked for; ``nodes=N`` (``make up NODES=N``) adds
  ``node-2`` .. ``node-N``, every node on a private underlay (:mod:`harness.underlay`) with its own
  chassis and encap IP, so pods on different nodes talk through real Geneve tunnels;
- :class:`~harness.operator_process.OperatorProcess`: the ovnvnet operator as a process.

One piece of code used by the tests, the demo (`make up`) and the benchmarks. Everything runs in a
private directory (:class:`~harness.proc.Workdir`) with random free loopback ports; every process
is tracked by a pidfile there and stopped by pid. `Stack.up()` starts only what is not running
yet, so killing the operator and calling `up()` again restarts just the operator with all state
kept. The stack's seal key (``seal.key``, 32 random bytes, made once) is given to the operator and
the agent as ``OVNVNET_SEAL_KEY_FILE``.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from . import REPO
from .central import OVN_NB_SCHEMA, OVN_SB_SCHEMA, OvnCentral
from .dataplane import DAEMONS
from .kube import CRDS, KubeControlPlane
from .node import BUILD_CNI, NODE, SYSTEM_CNI_DIR, Node
from .operator_process import OperatorProcess
from .prereq import explain, stack_missing
from .proc import ProcessDied, Workdir, free_port, pid_alive, tcp_open, wait_for

__all__ = ["BUILD_CNI", "CRDS", "KUBE_BIN", "NODE", "OVN_NB_SCHEMA", "OVN_SB_SCHEMA", "REPO",
           "SYSTEM_CNI_DIR", "ProcessDied", "Stack", "cli", "free_port", "pid_alive", "wait_for"]

KUBE_BIN = Path(os.environ.get("OVNVNET_KUBE_BIN", "/var/cache/ovnvnet/kube-1.20.2/bin"))
_tcp_open = tcp_open  # the old name


class Stack(Workdir):
    """A stack rooted at `root` (created if missing). State survives between `up()` calls.

    The parts are ``kube``, ``central``, ``worker`` (the node) and ``operator``; the methods
    below are the stack's public API, each handing over to the part that owns it."""

    def __init__(self, root: Path | str, *, kube_bin: Path = KUBE_BIN):
        super().__init__(root)
        self.kube = KubeControlPlane(self, kube_bin)
        self.central = OvnCentral(self)
        self.worker = Node(self, self.central, self.kube.kubeconfig, agent_env=self.seal_env)
        self.operator = OperatorProcess(self, base_env=lambda: {**self.env(), **self.seal_env()})

    # the bookkeeping's old private names, still used by tests and benchmarks
    _save, _port, _pidfile, _spawn, _wait_started = (
        Workdir.save, Workdir.port, Workdir.pidfile, Workdir.spawn, Workdir.wait_started)

    # ------------------------------------------------------------------ the stack as a whole
    @property
    def kube_bin(self) -> Path:
        return self.kube.kube_bin

    @property
    def seal_key_file(self) -> Path:
        """The key that seals the operator's results (32 random bytes, made once, mode 0600)."""
        path = self.root / "seal.key"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
        return path

    def seal_env(self) -> dict[str, str]:
        return {"OVNVNET_SEAL_KEY_FILE": str(self.seal_key_file)}

    def env(self) -> dict[str, str]:
        env = {
            "KUBECONFIG": str(self.kubeconfig),
            "OVN_NB_DB": self.nb_remote,
            "OVN_SB_DB": self.sb_remote,
            "OVNVNET_STACK": str(self.root),
            "PATH": f"{self.root / 'bin'}:{self.kube_bin}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        }
        # ovs-vsctl/ovs-appctl find the node's OVS through OVS_RUNDIR; CNI_PATH/NETCONFPATH
        # are what a CNI runtime uses
        env.update(self.worker.env())
        return env

    def write_env(self) -> None:
        lines = [f"export {k}={v}" for k, v in self.env().items()]
        (self.root / "env").write_text("\n".join(lines) + "\n")
        # kubectl caches API discovery per host:port in ~/.kube/cache for 10 minutes, and the
        # stack's ports are random: a port reused from an earlier stack would show its stale
        # resource list ("doesn't have a resource type vnet"). A wrapper keeps the cache private.
        bin_dir = self.root / "bin"
        bin_dir.mkdir(exist_ok=True)
        wrapper = bin_dir / "kubectl"
        wrapper.write_text(f'#!/bin/sh\nexec {self.kube_bin / "kubectl"} --cache-dir={self.root / "kube-cache"} "$@"\n')
        wrapper.chmod(0o755)

    # ------------------------------------------------------------------ the nodes (issue 18)
    @property
    def node_count(self) -> int:
        """How many nodes this stack has (1 unless it was brought up with ``nodes=N``)."""
        return int(self.state.get("nodes", 1))

    @property
    def workers(self) -> list[Node]:
        """Every node, the first (``worker``) first."""
        return [self.worker] + [
            Node(self, self.central, self.kube.kubeconfig, agent_env=self.seal_env, index=i)
            for i in range(2, self.node_count + 1)]

    def node_part(self, name: str) -> Node:
        """The :class:`~harness.node.Node` called `name`."""
        for node in self.workers:
            if node.name == name:
                return node
        raise KeyError(f"this stack has no node {name} (nodes: {[n.name for n in self.workers]})")

    def underlay(self):
        """The stack's :class:`~harness.underlay.Underlay` (a multi-node stack's)."""
        return self.worker.underlay

    def up(self, *, operator: bool = True, controller_manager: bool = True,
           dataplane: bool = False, nodes: int | None = None) -> Stack:
        """`nodes`: how many nodes (a data plane on each, implies `dataplane`); kept in the state,
        so a later ``up()`` keeps them. A stack never shrinks here: stop a node with
        ``node_part(name).stop()``."""
        if lacking := stack_missing(self.kube_bin):
            raise RuntimeError(explain("the local stack", lacking))
        if nodes is not None and nodes > 1:
            if nodes > 250:
                raise ValueError(f"nodes={nodes}: at most 250 nodes")
            self.state["nodes"] = max(nodes, self.node_count)
            dataplane = True
        self.create()
        self.central.start()
        self.kube.start(controller_manager=controller_manager)
        self.kube.apply_crds()
        self.write_env()
        if dataplane:
            self.start_dataplane()
        if operator:
            self.start_operator()
        return self

    COMPONENTS = OperatorProcess.PROCESSES + KubeControlPlane.PROCESSES + OvnCentral.PROCESSES
    DATAPLANE = (Node.AGENT, *DAEMONS)

    def down(self, *, remove: bool = True, extra: Iterable[str] = ()) -> None:
        if "realnode" in self.state:  # pods, kubelets, containerds and their mounts before the data plane
            from .realnode import nodes_of
            for rn in reversed(nodes_of(self)):
                rn.stop()
        self.operator.stop()
        for node in self.workers[1:]:
            node.stop()
        self.worker.stop()
        self.worker.underlay.remove()
        for name in extra:
            self.kill(name)
        self.kube.stop()
        self.central.stop()
        for name in self.tracked():  # anything else started here (RAFT members, replicas)
            self.kill(name)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    def status(self) -> dict[str, bool]:
        out = {name: self.running(name) for name in self.COMPONENTS}
        for node in self.workers:
            out.update(node.status())
        return out

    # ------------------------------------------------------------------ Kubernetes
    @property
    def kubeconfig(self) -> Path:
        return self.kube.kubeconfig

    @property
    def api_url(self) -> str:
        return self.kube.api_url

    @property
    def token(self) -> str:
        return self.kube.token

    def kubectl(self, *args: str, input: str | None = None, check: bool = True):
        return self.kube.kubectl(*args, input=input, check=check)

    def apply_crds(self) -> None:
        self.kube.apply_crds()

    # ------------------------------------------------------------------ OVN central
    @property
    def nb_remote(self) -> str:
        return self.central.nb_remote

    @property
    def sb_remote(self) -> str:
        return self.central.sb_remote

    @property
    def sb_unix(self) -> str:
        return self.central.sb_unix

    def _ovs_env(self) -> dict[str, str]:
        return self.central.ovs_env()

    def start_ovsdb(self, name: str, schema: str, port: int, *, wipe: bool = False) -> None:
        """Start one OVN database server (`nb` or `sb`). `wipe` recreates its database empty."""
        self.central.start_ovsdb(name, schema, port, wipe=wipe)

    def nbctl(self, *args: str, check: bool = True) -> str:
        return self.central.nbctl(*args, check=check)

    # ------------------------------------------------------------------ operator
    @property
    def health_port(self) -> int:
        return self.operator.health_port

    def operator_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return self.operator.env(extra)

    def start_operator(self, extra_env: dict[str, str] | None = None, *, wait: bool = True) -> None:
        self.operator.start(extra_env, wait=wait)

    def wait_operator_ready(self, timeout: float = 60) -> None:
        self.operator.wait_ready(timeout)

    def stop_operator(self, sig: int = signal.SIGTERM) -> None:
        self.operator.stop(sig)

    # ------------------------------------------------------------------ the node
    node = property(lambda self: self.worker.name, doc="The node's name.")
    node_netns = property(lambda self: self.worker.netns, doc=Node.netns.__doc__)
    node_dir = property(lambda self: self.worker.dir)
    netns_prefix = property(lambda self: self.worker.netns_prefix, doc=Node.netns_prefix.__doc__)
    build_dir = property(lambda self: self.worker.build_dir)
    agent_socket = property(lambda self: self.worker.agent_socket)
    cni_conf_dir = property(lambda self: self.worker.cni_conf_dir)
    cni_conflist = property(lambda self: self.worker.cni_conflist)
    cni_cache_dir = property(lambda self: self.worker.cni_cache_dir)
    cni_plugin_dirs = property(lambda self: self.worker.cni_plugin_dirs)
    cni_runtime = property(lambda self: self.worker.cni_runtime)

    def dataplane(self):
        """The node's :class:`~harness.dataplane.Dataplane` (started or not)."""
        return self.worker.dataplane()

    def build_cni(self) -> tuple[Path, Path]:
        return self.worker.build_cni()

    def write_conflist(self, **kw) -> Path:
        return self.worker.write_conflist(**kw)

    def start_dataplane(self, node: str = NODE) -> None:
        """OVS ovsdb-server + ovs-vswitchd (netdev) + ovn-controller for `node` in the node netns,
        the CNI binaries, the conflist and the node agent. Starts only what is not running."""
        multi = self.node_count > 1
        self.worker.start(node, underlay=multi)
        for other in self.workers[1:]:
            other.start()
        if multi:
            self.wait_mesh()
        self.write_env()

    def wait_mesh(self, timeout: float = 30) -> None:
        """Until every running node's br-int has its Geneve tunnel port to every other node (made
        by ovn-controller once it sees the other chassis), so the overlay is whole on return."""
        nodes = [n for n in self.workers if n.dataplane().running()]
        want = {n.name: {o.encap_ip for o in nodes if o is not n} for n in nodes}

        def tunnels(node: Node) -> set[str]:
            out = node.dataplane().vsctl("--format=json", "--columns=options,ofport", "find", "Interface",
                                         "type=geneve")
            rows = json.loads(out)["data"]
            return {dict(r[0][1]).get("remote_ip", "") for r in rows if isinstance(r[1], int) and r[1] > 0}

        wait_for(lambda: all(want[n.name] <= tunnels(n) for n in nodes), timeout,
                 "the Geneve tunnels between the nodes")
        # one ping between the nodes' underlay addresses (inside the stack's namespaces): OVS learns
        # the other chassis' MACs (tnl/neigh) from the ARP, so no pod's first packet is lost to it
        for n in nodes:
            for ip in want[n.name]:
                subprocess.run(["ip", "netns", "exec", n.netns, "ping", "-n", "-q", "-c", "1", "-W", "1", ip],
                               capture_output=True)

    def start_agent(self, *, wait: bool = True) -> None:
        self.worker.start_agent(wait=wait)

    def stop_agent(self, sig: int = signal.SIGTERM) -> None:
        self.worker.stop_agent(sig)

    def stack_netns(self) -> list[str]:
        return self.worker.stack_netns()

    def stop_dataplane(self) -> None:
        """Agent, then OVS/ovn-controller; removes the node and pod network namespaces (of every
        node of a multi-node stack, and its underlay)."""
        for node in self.workers[1:]:
            node.stop()
        self.worker.stop()
        self.worker.underlay.remove()


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ovnvnet-stack", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["up", "down", "status", "env"])
    ap.add_argument("--dir", default=".stack", help="state directory (default .stack)")
    ap.add_argument("--no-operator", action="store_true", help="start the stack without the operator")
    ap.add_argument("--dataplane", action="store_true",
                    help=f"also start the data plane of {NODE} (OVS, ovn-controller) and the CNI node agent")
    ap.add_argument("--nodes", type=int, default=None,
                    help="how many nodes (node-1..node-N, each with its data plane and agent, joined by a "
                         "private underlay: Geneve between them); implies --dataplane")
    args = ap.parse_args(argv)
    stack = Stack(args.dir)
    if args.command == "up":
        t0 = time.monotonic()
        stack.up(operator=not args.no_operator, dataplane=args.dataplane or "dataplane" in stack.state,
                 nodes=args.nodes)
        print(f"stack up in {time.monotonic() - t0:.1f}s; state and logs in {stack.root}")
        print(f"  source {stack.root / 'env'}   # KUBECONFIG, OVN_NB_DB, PATH with kubectl 1.20")
    elif args.command == "down":
        stack.down()
        print(f"stack stopped; {stack.root} removed")
    elif args.command == "status":
        for name, up in stack.status().items():
            print(f"{name:25} {'running' if up else 'stopped'}")
    else:
        print((stack.root / "env").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
