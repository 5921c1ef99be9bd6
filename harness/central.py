"""OVN central of a local stack: the Northbound and Southbound ovsdb-servers and ovn-northd.

Contract: :meth:`OvnCentral.start` starts whichever of the three is not running and returns once
both databases accept connections (northd needs no wait: it follows the databases). The databases
live in ``<root>/ovn`` and survive restarts; :meth:`start_ovsdb` with ``wipe=True`` restarts one
empty (the NB-loss tests). Clients on the host reach them on loopback TCP (``nb_remote``,
``sb_remote``); the node's data plane, in its own network namespace, reaches the SB through the
unix socket ``sb_unix``. A 3-member NB RAFT cluster for the failover tests is
:meth:`nb_raft` (see :mod:`harness.raft`), in the same directory and bookkeeping.
"""
from __future__ import annotations

import os
import subprocess

from .proc import Workdir, tcp_open

__all__ = ["OVN_NB_SCHEMA", "OVN_SB_SCHEMA", "OvnCentral"]

OVN_NB_SCHEMA = "/usr/share/ovn/ovn-nb.ovsschema"
OVN_SB_SCHEMA = "/usr/share/ovn/ovn-sb.ovsschema"


class OvnCentral:
    PROCESSES = ("ovn-northd", "ovsdb-sb", "ovsdb-nb")  # stop order

    def __init__(self, wd: Workdir):
        self.wd = wd
        self.dir = wd.root / "ovn"

    @property
    def nb_remote(self) -> str:
        return f"tcp:127.0.0.1:{self.wd.port('nb')}"

    @property
    def sb_remote(self) -> str:
        return f"tcp:127.0.0.1:{self.wd.port('sb')}"

    @property
    def sb_unix(self) -> str:
        # the data plane runs in its own netns: 127.0.0.1 there is not ours, a unix socket is shared
        return f"unix:{self.dir / 'sb.sock'}"

    def ovs_env(self) -> dict[str, str]:
        """OVS/OVN run, log and db directories pointed here (unixctl sockets, default paths)."""
        return {k: str(self.dir)
                for k in ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVN_RUNDIR", "OVN_LOGDIR", "OVN_DBDIR")}

    def start(self) -> None:
        if not self.wd.running("ovsdb-nb"):
            self.start_ovsdb("nb", OVN_NB_SCHEMA, self.wd.port("nb"))
        if not self.wd.running("ovsdb-sb"):
            self.start_ovsdb("sb", OVN_SB_SCHEMA, self.wd.port("sb"))
        if not self.wd.running("ovn-northd"):
            self.wd.spawn("ovn-northd", [
                "ovn-northd", "--no-chdir", f"--ovnnb-db={self.nb_remote}", f"--ovnsb-db={self.sb_remote}",
                f"--log-file={self.wd.logs / 'ovn-northd.vlog'}", f"--unixctl={self.dir / 'northd.ctl'}",
            ], env=self.ovs_env())

    def stop(self) -> None:
        for name in self.PROCESSES:
            self.wd.kill(name)

    def start_ovsdb(self, name: str, schema: str, port: int, *, wipe: bool = False) -> None:
        """Start one OVN database server (`nb` or `sb`). `wipe` recreates its database empty."""
        self.dir.mkdir(exist_ok=True)
        db = self.dir / f"{name}.db"
        if wipe:
            db.unlink(missing_ok=True)
        if not db.exists():
            subprocess.run(["ovsdb-tool", "create", str(db), schema], check=True, capture_output=True)
        self.wd.spawn(f"ovsdb-{name}", [
            "ovsdb-server", "--no-chdir", f"--log-file={self.wd.logs / f'ovsdb-{name}.vlog'}",
            f"--unixctl={self.dir / f'ovsdb-{name}.ctl'}",
            f"--remote=punix:{self.dir / f'{name}.sock'}", f"--remote=ptcp:{port}:127.0.0.1", str(db),
        ], env=self.ovs_env())
        self.wd.wait_started(f"ovsdb-{name}", lambda: tcp_open(port), 30, f"ovsdb-server {name}")

    def nbctl(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(["ovn-nbctl", f"--db={self.nb_remote}", "--timeout=10", *args],
                             capture_output=True, text=True, env={**os.environ, **self.ovs_env()})
        if check and out.returncode != 0:
            raise RuntimeError(f"ovn-nbctl {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def nb_raft(self, size: int = 3):
        """A :class:`harness.raft.NbRaftCluster` of `size` members here (not started)."""
        from .raft import NbRaftCluster

        return NbRaftCluster(self, size)
