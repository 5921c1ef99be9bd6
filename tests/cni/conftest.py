"""Fixtures for the CNI side on a real OVN data plane.

A private OVN central (NB + SB ovsdb-server, ovn-northd), one node's data plane
(:func:`harness.dataplane.start_dataplane`, in its own "node" netns), and the node
agent in a thread of this process, fed by a :class:`StaticPodSource` (no API server here; the
kube watch cache is the production PodSource). Pods are network namespaces the tests create.
Everything lives under a short /tmp directory and is killed by pid at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.dataplane import Dataplane, start_dataplane
from harness.prereq import CENTRAL
from ovnvnet.cni.agent import Agent, serve
from ovnvnet.cni.ovs import OvsPorts
from ovnvnet.cni.pods import PodInfo, StaticPodSource
from ovnvnet.model.annotation import SEAL_ANNOTATION, result_key, seal
from tests.prerequisites import missing, node_missing, require

REPO = Path(__file__).resolve().parents[2]
NB_SCHEMA = "/usr/share/ovn/ovn-nb.ovsschema"
SB_SCHEMA = "/usr/share/ovn/ovn-sb.ovsschema"


@pytest.fixture(scope="session")
def prerequisites() -> None:
    """OVN central and a node's data plane: root and the binaries, or an error naming what is
    missing (a skip only in a run that asked for it, see tests/prerequisites.py)."""
    require("the CNI tests on a real data plane (tests/cni)",
            missing(binaries=CENTRAL) + node_missing())


SEAL_KEY = secrets.token_bytes(32)
"""The operator's seal key in these tests (the agent thread verifies with it)."""


def sealed(uid: str, annotations: dict[str, str], key: bytes = SEAL_KEY) -> dict[str, str]:
    """``annotations`` plus the operator's seal of its result (as the operator writes it)."""
    name = result_key(annotations)
    assert name is not None, f"no result to seal in {annotations}"
    return {**annotations, SEAL_ANNOTATION: seal(key, uid, name, annotations[name])}


def _ovs_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    for k in ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVN_RUNDIR", "OVN_LOGDIR", "OVN_DBDIR"):
        env[k] = str(root)
    return env


def _kill_pidfile(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        pid = int(path.read_text().strip())
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.05)


@dataclass
class Central:
    root: Path
    env: dict[str, str]

    @property
    def nb(self) -> str:
        return f"unix:{self.root / 'nb.sock'}"

    @property
    def sb(self) -> str:
        return f"unix:{self.root / 'sb.sock'}"

    def nbctl(self, *args: str) -> str:
        out = subprocess.run(["ovn-nbctl", f"--db={self.nb}", "--timeout=10", *args],
                             capture_output=True, text=True, env=self.env)
        if out.returncode != 0:
            raise RuntimeError(f"ovn-nbctl {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout.strip()


@pytest.fixture(scope="session")
def workdir(prerequisites) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="ovnvcni-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def central(workdir: Path) -> Iterator[Central]:
    root = workdir / "central"
    root.mkdir()
    env = _ovs_env(root)
    c = Central(root, env)
    try:
        for name, schema in (("nb", NB_SCHEMA), ("sb", SB_SCHEMA)):
            subprocess.run(["ovsdb-tool", "create", str(root / f"{name}.db"), schema],
                           check=True, capture_output=True)
            subprocess.run([
                "ovsdb-server", "--detach", "--no-chdir", f"--pidfile={root / f'{name}.pid'}",
                f"--log-file={root / f'{name}.log'}", f"--unixctl={root / f'{name}.ctl'}",
                f"--remote=punix:{root / f'{name}.sock'}", str(root / f"{name}.db"),
            ], check=True, capture_output=True, env=env)
        subprocess.run([
            "ovn-northd", "--detach", "--no-chdir", f"--pidfile={root / 'northd.pid'}",
            f"--log-file={root / 'northd.log'}", f"--unixctl={root / 'northd.ctl'}",
            f"--ovnnb-db={c.nb}", f"--ovnsb-db={c.sb}",
        ], check=True, capture_output=True, env=env)
        yield c
    finally:
        for name in ("northd", "sb", "nb"):
            _kill_pidfile(root / f"{name}.pid")


@pytest.fixture(scope="session")
def dataplane(workdir: Path, central: Central) -> Iterator[Dataplane]:
    netns = f"ovnvcni-node-{secrets.token_hex(3)}"
    dp = start_dataplane(workdir / "node1", central.sb, "node1", netns=netns)
    try:
        yield dp
    finally:
        dp.stop()
        dp.remove_netns()


@pytest.fixture(scope="session")
def binaries(prerequisites) -> dict[str, Path]:
    out = subprocess.run([str(REPO / "hack" / "build-cni.sh")], check=True,
                         capture_output=True, text=True).stdout.split()
    return {"shim": Path(out[0]), "runtime": Path(out[1])}


class AgentThread:
    """The node agent on its own event loop in a thread, serving a unix socket."""

    def __init__(self, socket: Path, dp: Dataplane) -> None:
        self.socket = socket
        self.pods = StaticPodSource()
        self.dp = dp
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="ovnvnet-agent", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
            self._error = e
            self._ready.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        await self.pods.start()
        self.ovs = await asyncio.to_thread(OvsPorts, self.dp.ovs_remote, self.dp.bridge)
        self.agent = Agent("node1", self.pods, self.ovs, host_netns=self.dp.netns, seal_key=SEAL_KEY)
        server = await serve(self.agent, self.socket)
        self._ready.set()
        await self._stop.wait()
        server.close()
        await server.wait_closed()
        self.ovs.close()

    def start(self) -> AgentThread:
        self.thread.start()
        self._ready.wait(30)
        if self._error:
            raise self._error
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)

    def put_pod(self, namespace: str, name: str, uid: str, annotations: dict[str, str]) -> None:
        self.pods.put(PodInfo(namespace=namespace, name=name, uid=uid,
                              annotations=dict(annotations), node="node1"))


@pytest.fixture(scope="session")
def seal_key_file(workdir: Path) -> Path:
    path = workdir / "seal.key"
    path.write_bytes(SEAL_KEY)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def agent(workdir: Path, dataplane: Dataplane) -> Iterator[AgentThread]:
    a = AgentThread(workdir / "agent.sock", dataplane).start()
    yield a
    a.stop()


@dataclass
class CniResult:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict:
        return json.loads(self.out)


def run_shim(shim: Path, socket: Path | None, command: str, *, container_id: str = "",
             netns: str = "", ifname: str = "net0", args: str = "", config: dict | None = None,
             timeout: float = 120) -> CniResult:
    env = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_CONTAINERID": container_id,
           "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_ARGS": args, "CNI_PATH": "/usr/lib/cni"}
    if socket is not None:
        env["OVNVNET_AGENT_SOCKET"] = str(socket)
    conf = config or {"cniVersion": "1.0.0", "name": "ovn", "type": "ovn-k8s-cni-overlay"}
    out = subprocess.run([str(shim)], input=json.dumps(conf), capture_output=True, text=True,
                         env=env, timeout=timeout)
    return CniResult(out.returncode, out.stdout, out.stderr)


class Netns:
    """A network namespace playing a pod; deleted at teardown."""

    def __init__(self) -> None:
        self.name = f"ovnvcni-pod-{secrets.token_hex(4)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)

    @property
    def path(self) -> str:
        return f"/var/run/netns/{self.name}"

    def run(self, *argv: str, check: bool = False, timeout: float = 30
            ) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True,
                              text=True, check=check, timeout=timeout)

    def ping(self, dst: str, *extra: str, count: int = 2) -> bool:
        r = self.run("ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", *extra, dst)
        return r.returncode == 0

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def _netns_maker() -> Iterator:
    created: list[Netns] = []

    def make() -> Netns:
        ns = Netns()
        created.append(ns)
        return ns

    yield make
    for ns in created:
        ns.delete()


@pytest.fixture
def make_netns(prerequisites) -> Iterator:
    yield from _netns_maker()


@pytest.fixture(scope="module")
def module_netns() -> Iterator:
    yield from _netns_maker()
