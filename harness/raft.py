"""A 3-member OVN Northbound RAFT cluster on loopback, part of a stack's OVN central.

Its members live in ``<root>/raft`` and are tracked (pidfiles, logs) like every other process of
the stack, so ``Stack.down`` stops them too. The operator connects with the comma-separated member
list (OVN_NB_DB=tcp:...,tcp:...,tcp:...); ovsdbapp's IDL follows the leader."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass

from .central import OVN_NB_SCHEMA, OvnCentral
from .proc import free_port, tcp_open, wait_for


@dataclass
class RaftMember:
    name: str
    client_port: int
    raft_port: int
    ctl: str

    @property
    def remote(self) -> str:
        return f"tcp:127.0.0.1:{self.client_port}"


class NbRaftCluster:
    def __init__(self, central, size: int = 3):
        """`central`: the stack's :class:`OvnCentral`, or the Stack itself."""
        self.central: OvnCentral = getattr(central, "central", central)
        self.wd = self.central.wd
        self.dir = self.wd.root / "raft"
        self.members = [RaftMember(f"nb-raft{i}", free_port(), free_port(), str(self.dir / f"nb-raft{i}.ctl"))
                        for i in range(size)]

    @property
    def remote(self) -> str:
        return ",".join(m.remote for m in self.members)

    def _db(self, m: RaftMember) -> str:
        return str(self.dir / f"{m.name}.db")

    def start(self) -> NbRaftCluster:
        self.dir.mkdir(parents=True, exist_ok=True)
        first = self.members[0]
        subprocess.run(["ovsdb-tool", "create-cluster", self._db(first), OVN_NB_SCHEMA,
                        f"tcp:127.0.0.1:{first.raft_port}"], check=True, capture_output=True)
        for m in self.members[1:]:
            subprocess.run(["ovsdb-tool", "join-cluster", self._db(m), "OVN_Northbound",
                            f"tcp:127.0.0.1:{m.raft_port}", f"tcp:127.0.0.1:{first.raft_port}"],
                           check=True, capture_output=True)
        for m in self.members:
            self.start_member(m)
        wait_for(lambda: self.leader() is not None, 30, "a RAFT leader")
        return self

    def start_member(self, m: RaftMember) -> None:
        self.wd.spawn(m.name, [
            "ovsdb-server", "--no-chdir", f"--log-file={self.wd.logs / (m.name + '.vlog')}",
            f"--unixctl={m.ctl}", f"--remote=ptcp:{m.client_port}:127.0.0.1", self._db(m),
        ], env=self.central.ovs_env())
        wait_for(lambda: tcp_open(m.client_port), 20, f"{m.name} listening")

    def role(self, m: RaftMember) -> str | None:
        out = subprocess.run(["ovs-appctl", "-t", m.ctl, "cluster/status", "OVN_Northbound"],
                             capture_output=True, text=True)
        for line in out.stdout.splitlines():
            if line.startswith("Role:"):
                return line.split(":", 1)[1].strip()
        return None

    def leader(self) -> RaftMember | None:
        for m in self.members:
            if self.wd.running(m.name) and self.role(m) == "leader":
                return m
        return None

    def stop(self) -> None:
        for m in self.members:
            self.wd.kill(m.name)
