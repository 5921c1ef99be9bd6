"""One node of a local stack: its data plane and its CNI node agent.

Contract: :meth:`Node.start` makes the node whole and starts only what is missing: the CNI
binaries (``hack/build-cni.sh``, rebuilt when stale), the node's conflist, OVS ovsdb-server +
ovs-vswitchd (netdev) + ovn-controller in the node's own network namespace (all three restarted
if one died; see :mod:`harness.dataplane`) and the agent process (``python -m ovnvnet.cni.agent``)
serving ``agent_socket``. Every network namespace of the node and its pods starts with
``netns_prefix`` (unique per stack directory), which is how :meth:`stop` finds and removes them.
The stack's first node (``index`` 1, the default) is the one every single-node test uses; its
name is kept in the state once chosen. A multi-node stack (issue 18) adds ``node-2`` ... ``node-N``
(``index`` 2..N): each its own namespace (``<prefix>n<i>-node``), OVS, ovn-controller (chassis =
node name), agent (``cni-agent-node-<i>``, socket ``cni-node-<i>.sock``), conflist and CNI cache
(``cni/node-<i>/``), and pod namespaces (``<prefix>n<i>-pod-*``); with ``underlay`` every node,
the first included, joins the stack's :class:`~harness.underlay.Underlay` with its own encap IP.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from . import REPO
from .central import OvnCentral
from .dataplane import DAEMONS, Dataplane, configure_underlay, dataplane_env, start_dataplane, wait_encap
from .prereq import explain, node_missing
from .proc import Workdir, pid_alive
from .underlay import NODE_PORT, Underlay, encap_ip

__all__ = ["BUILD_CNI", "NODE", "Node", "SYSTEM_CNI_DIR"]

BUILD_CNI = REPO / "hack" / "build-cni.sh"
NODE = "node-1"
SYSTEM_CNI_DIR = Path("/usr/lib/cni")


class Node:
    AGENT = "cni-agent"

    def __init__(self, wd: Workdir, central: OvnCentral, kubeconfig: Path,
                 agent_env: Callable[[], dict[str, str]] = dict, *, index: int = 1):
        """`agent_env`: extra environment of the agent process, asked for at each start.
        `index`: 1 for the stack's first node, 2..N for the others of a multi-node stack."""
        self.wd, self.central, self.kubeconfig, self.agent_env = wd, central, kubeconfig, agent_env
        self.index = index
        if index != 1:
            self.AGENT = f"cni-agent-node-{index}"

    # ------------------------------------------------------------------ names and paths
    @property
    def configured(self) -> bool:
        """A data plane was started in this stack once (it may be stopped now)."""
        if self.index != 1:
            return self.name in self.wd.state.get("extra_nodes", [])
        return "dataplane" in self.wd.state

    @property
    def name(self) -> str:
        if self.index != 1:
            return f"node-{self.index}"
        return self.wd.state.get("dataplane", {}).get("node", NODE)

    @property
    def netns_prefix(self) -> str:
        """Every network namespace this stack creates starts with this (unique per root)."""
        return "ovnvnet-" + hashlib.sha256(str(self.wd.root).encode()).hexdigest()[:8] + "-"

    @property
    def own_prefix(self) -> str:
        """The prefix of this node's own namespaces (the first node's: the stack's, minus the
        other nodes' and the underlay's, see :meth:`foreign`)."""
        return self.netns_prefix + ("" if self.index == 1 else f"n{self.index}-")

    @property
    def pod_netns_prefix(self) -> str:
        """What the played kubelet names this node's pod namespaces with."""
        return self.own_prefix + "pod-"

    def foreign(self, netns: str) -> bool:
        """A namespace of this stack that another node (or the underlay) owns."""
        rest = netns[len(self.netns_prefix):]
        if self.index != 1:
            return not rest.startswith(f"n{self.index}-")
        head = rest.split("-", 1)[0]
        return rest == "underlay" or (head[:1] == "n" and head[1:].isdigit() and "-" in rest)

    @property
    def netns(self) -> str:
        """The "host" network namespace of the node: ovs-vswitchd, br-int, the pods' host veths."""
        return self.own_prefix + "node"

    @property
    def underlay(self) -> Underlay:
        """The stack's underlay (shared by every node; used only by a multi-node stack)."""
        return Underlay(self.netns_prefix + "underlay")

    @property
    def encap_ip(self) -> str:
        return encap_ip(self.index)

    @property
    def dir(self) -> Path:
        return self.wd.root / self.name

    @property
    def build_dir(self) -> Path:
        return Path(os.environ.get("OVNVNET_BUILD_DIR", REPO / "build"))

    @property
    def agent_socket(self) -> Path:
        return self.wd.root / ("cni.sock" if self.index == 1 else f"cni-{self.name}.sock")

    @property
    def cni_conf_dir(self) -> Path:
        if self.index != 1:
            return self.wd.root / "cni" / self.name / "net.d"
        return self.wd.root / "cni" / "net.d"

    @property
    def cni_conflist(self) -> Path:
        return self.cni_conf_dir / "10-ovnvnet.conflist"

    @property
    def cni_cache_dir(self) -> Path:
        if self.index != 1:
            return self.wd.root / "cni" / self.name / "cache"
        return self.wd.root / "cni" / "cache"

    @property
    def cni_plugin_dirs(self) -> list[Path]:
        return [self.build_dir, SYSTEM_CNI_DIR]

    @property
    def cni_runtime(self) -> Path:
        return self.build_dir / "ovnvnet-cni-runtime"

    def env(self) -> dict[str, str]:
        """What a shell needs to reach this node: its OVS, its netns, a CNI runtime's variables."""
        if not self.configured:
            return {}
        return {
            "OVS_RUNDIR": str(self.dir),
            "OVNVNET_NODE_NETNS": self.netns,
            "CNI_PATH": ":".join(str(d) for d in self.cni_plugin_dirs),
            "NETCONFPATH": str(self.cni_conf_dir),
        }

    # ------------------------------------------------------------------ pieces
    def dataplane(self) -> Dataplane:
        """The node's :class:`~harness.dataplane.Dataplane` (started or not)."""
        return Dataplane(root=self.dir, node=self.name, sb_remote=self.central.sb_unix,
                         netns=self.netns, env=dataplane_env(self.dir))

    def build_cni(self) -> tuple[Path, Path]:
        """hack/build-cni.sh: the shim and the libcni runtime helper (rebuilt only when stale)."""
        out = subprocess.run([str(BUILD_CNI)], capture_output=True, text=True,
                             env={**os.environ, "OVNVNET_BUILD_DIR": str(self.build_dir)})
        if out.returncode != 0:
            raise RuntimeError(f"hack/build-cni.sh failed:\n{out.stderr.strip() or out.stdout.strip()}")
        shim, runtime = out.stdout.split()[-2:]
        return Path(shim), Path(runtime)

    def write_conflist(self, *, annotation_timeout: float = 30, name: str = "ovn-network",
                       path: Path | None = None) -> Path:
        """The node's CNI configuration: ours, then Debian's ``tuning`` fed our result as prevResult.
        `path` writes a variant elsewhere (tests with a short annotation timeout)."""
        path = path or self.cni_conflist
        path.parent.mkdir(parents=True, exist_ok=True)
        conf = {
            "cniVersion": "1.0.0", "name": name,
            "plugins": [
                {"type": "ovn-k8s-cni-overlay", "agentSocket": str(self.agent_socket),
                 "annotationTimeout": annotation_timeout},
                {"type": "tuning", "sysctl": {"net.ipv4.conf.all.arp_notify": "1"}},
            ],
        }
        path.write_text(json.dumps(conf, indent=1) + "\n")
        return path

    # ------------------------------------------------------------------ lifecycle
    def start(self, node: str = NODE, *, underlay: bool = False) -> None:
        """`underlay`: join the stack's underlay (a multi-node stack; always for index > 1)."""
        if self.index != 1:
            node, underlay = self.name, True
        if lacking := node_missing():
            raise RuntimeError(explain(f"the data plane of {node}", lacking))
        if self.index == 1:
            if self.wd.state.get("dataplane", {}).get("node", node) != node:
                raise RuntimeError(f"this stack's data plane is for {self.name}, not {node}")
            self.wd.state["dataplane"] = {"node": node, "netns": self.netns}
        elif self.name not in self.wd.state.setdefault("extra_nodes", []):
            self.wd.state["extra_nodes"].append(self.name)
        self.wd.save()
        self.build_cni()
        self.write_conflist()
        self.cni_cache_dir.mkdir(parents=True, exist_ok=True)
        dp = self.dataplane()
        port = self.underlay.attach(self.netns, self.index) if underlay else None
        if not dp.running():
            dp.stop()  # a partial data plane (one daemon died): restart all three
            start_dataplane(self.dir, self.central.sb_unix, node, netns=self.netns,
                            underlay=(NODE_PORT, self.encap_ip) if port else None)
        elif port:  # a running node joining (a one-node stack grown to N)
            configure_underlay(dp, port, self.encap_ip)
            wait_encap(dp, self.encap_ip)
        self.start_agent()

    def start_agent(self, *, wait: bool = True) -> None:
        if self.wd.running(self.AGENT):
            return
        self.agent_socket.unlink(missing_ok=True)
        self.wd.spawn(self.AGENT, [
            sys.executable, "-m", "ovnvnet.cni.agent", "--node", self.name,
            "--socket", str(self.agent_socket), "--kubeconfig", str(self.kubeconfig),
            "--ovs-db", self.dataplane().ovs_remote, "--host-netns", self.netns,
        ], env={"PYTHONUNBUFFERED": "1", **self.agent_env()})
        if wait:
            self.wd.wait_started(self.AGENT, self.agent_socket.is_socket, 30, "CNI node agent socket")

    def stop_agent(self, sig: int = signal.SIGTERM) -> None:
        self.wd.kill(self.AGENT, sig)

    def stack_netns(self) -> list[str]:
        """Network namespaces of this stack (node and pods) that exist now."""
        try:
            return sorted(n for n in os.listdir("/var/run/netns") if n.startswith(self.netns_prefix))
        except FileNotFoundError:
            return []

    def stop(self) -> None:
        """Agent, then OVS/ovn-controller; removes the node and pod network namespaces (this
        node's only: never another node's or the underlay's)."""
        self.stop_agent()
        if not self.configured:
            return
        self.dataplane().stop()
        for ns in self.stack_netns():  # pod netns first, the node's last
            if ns != self.netns and not self.foreign(ns):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)

    def status(self) -> dict[str, bool]:
        if not self.configured:
            return {}
        dp = self.dataplane()
        out = {self.AGENT: self.wd.running(self.AGENT)}
        for daemon in DAEMONS:
            out[f"{self.name}/{daemon}"] = (pid := dp.pid(daemon)) is not None and pid_alive(pid)
        return out
