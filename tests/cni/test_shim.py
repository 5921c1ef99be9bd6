"""The compiled shim (cni/shim/ovn-k8s-cni-overlay.c) against agents that misbehave or are not
to be trusted, and the real agent's socket server at the input limit.

Every failure must print a CNI error object (cniVersion, code, msg, details) and exit 1: an agent
closing early never kills the shim with SIGPIPE; the raw input limit is checked before connecting
and any input under it passes the agent's limit however it escapes; the shim sends nothing to a
socket not served by root (SO_PEERCRED of the connected peer, not the path's owner); one total
deadline (``agentTimeout``) covers connect, send and receive, and the error names the phase.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ovnvnet.cni import protocol as p
from ovnvnet.cni.agent import Agent, serve
from ovnvnet.cni.pods import StaticPodSource

from .conftest import REPO

pytestmark = pytest.mark.timeout(120)

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c0ffee", "CNI_NETNS": "/var/run/netns/x",
       "CNI_IFNAME": "net0", "CNI_ARGS": "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod",
       "CNI_PATH": "/usr/lib/cni"}
ANSWER = b'0\n{"cniVersion": "1.0.0", "supportedVersions": ["1.0.0"]}'


def conf(**kw) -> bytes:
    return json.dumps({"cniVersion": "0.4.0", "name": "n", "type": "ovn-k8s-cni-overlay",
                       **kw}).encode()


@dataclass
class Run:
    code: int
    out: str
    err: str
    elapsed: float

    @property
    def error(self) -> dict:
        """The CNI error object; asserts the spec's shape."""
        obj = json.loads(self.out)
        assert set(obj) == {"cniVersion", "code", "msg", "details"}, obj
        assert self.code == 1, (self.code, obj)
        return obj


def shim(binaries, sock: Path, stdin: bytes, env: dict | None = None, timeout: float = 30) -> Run:
    full = {"PATH": os.environ["PATH"], **ENV, **(env or {}), "OVNVNET_AGENT_SOCKET": str(sock)}
    started = time.monotonic()
    r = subprocess.run([str(binaries["shim"])], input=stdin, capture_output=True, env=full,
                       timeout=timeout)
    return Run(r.returncode, r.stdout.decode(), r.stderr.decode(), time.monotonic() - started)


def env_bytes(env: dict) -> int:
    """What the shim counts against its limit for the environment: every CNI_*=VALUE entry."""
    return sum(len(f"{k}={v}".encode()) for k, v in {**ENV, **env}.items() if k.startswith("CNI_"))


class FakeAgent:
    """A root unix server whose ``handler(self, conn)`` plays the agent on each connection."""

    def __init__(self, path: Path, handler: Callable | None, backlog: int = 8) -> None:
        self.path = path
        self.handler = handler
        self.accepted = 0
        self.received = 0
        self.stop = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        os.chmod(path, 0o600)
        self.sock.listen(backlog)
        self.sock.settimeout(0.1)
        self.thread = threading.Thread(target=self._run, daemon=True)
        if handler is not None:
            self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            conn.settimeout(None)
            with conn:
                try:
                    self.handler(self, conn)
                except OSError:
                    pass

    def read_all(self, conn: socket.socket) -> None:
        while chunk := conn.recv(65536):
            self.received += len(chunk)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5) if self.thread.is_alive() else None
        self.sock.close()
        self.path.unlink(missing_ok=True)


@pytest.fixture
def sockdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="ovnvshim-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def fake(sockdir) -> Iterator[Callable[..., FakeAgent]]:
    made: list[FakeAgent] = []

    def make(handler: Callable | None, **kw) -> FakeAgent:
        a = FakeAgent(sockdir / f"agent{len(made)}.sock", handler, **kw)
        made.append(a)
        return a

    yield make
    for a in made:
        a.close()


# --- an agent that closes early: never SIGPIPE, always an error object ------------------------


def test_agent_closing_early_gives_an_error_object_not_sigpipe(binaries, fake):
    def hang_up(agent, conn):
        conn.recv(100)  # then close with most of the request unread

    agent = fake(hang_up)
    r = shim(binaries, agent.path, conf(pad="x" * 900_000))
    assert r.code != -13, "killed by SIGPIPE"
    err = r.error
    assert err["cniVersion"] == "0.4.0" and err["code"] == 11
    assert "closed the connection while we sent the request" in err["msg"]
    assert str(agent.path) in err["details"]


def test_agent_answer_sent_before_closing_early_is_printed(binaries, fake):
    answer = {"cniVersion": "0.4.0", "code": 6, "msg": "request refused early", "details": "x"}

    def refuse(agent, conn):
        conn.recv(100)
        conn.sendall(b"1\n" + json.dumps(answer).encode())

    r = shim(binaries, fake(refuse).path, conf(pad="x" * 900_000))
    assert r.error == answer


def test_agent_failing_without_error_object_gets_one(binaries, fake):
    def bare(agent, conn):
        agent.read_all(conn)
        conn.sendall(b"3\n")

    err = shim(binaries, fake(bare).path, conf()).error
    assert err["code"] == 999 and "without an error object" in err["msg"]
    assert "exit code 3" in err["details"]


# --- one input limit, agreed after escaping ---------------------------------------------------


def test_limits_in_the_c_source_match_the_agent():
    src = (REPO / "cni" / "shim" / "ovn-k8s-cni-overlay.c").read_text()
    defines = dict(re.findall(r"^#define (MAX_INPUT|MAX_REQUEST) (.+)$", src, re.M))
    max_input = eval(defines["MAX_INPUT"])
    max_request = eval(defines["MAX_REQUEST"].replace("MAX_INPUT", str(max_input)))
    assert (max_input, max_request) == (p.MAX_INPUT_BYTES, p.MAX_REQUEST_BYTES)


class RealAgentServer:
    """The agent's own socket server (agent.serve) on a loop in a thread; no OVS needed for
    requests that fail in parsing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def run() -> None:
            self.done = asyncio.Event()
            agent = Agent("node1", StaticPodSource(), ovs=None,  # type: ignore[arg-type]
                          seal_key=b"k" * 32)
            server = await serve(agent, self.path)
            self.ready.set()
            await self.done.wait()
            server.close()
            await server.wait_closed()

        self.loop.run_until_complete(run())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.done.set)
        self.thread.join(10)


def test_worst_case_escaping_at_the_limit_reaches_the_real_agent(binaries, sockdir):
    """1 MiB of control characters escapes to 6 MiB: the agent reads it all and answers about
    the configuration itself (not JSON), not about the request's size. Before, 3 MiB of them
    escaped past the agent's 8 MiB limit and the shim died of SIGPIPE (rc 141)."""
    server = RealAgentServer(sockdir / "real.sock")
    try:
        stdin = b"\x01" * (p.MAX_INPUT_BYTES - env_bytes({}))
        at_limit = shim(binaries, server.path, stdin, timeout=60)
        issue_case = shim(binaries, server.path, b"\x01" * (3 << 20), timeout=60)
    finally:
        server.close()
    err = at_limit.error
    assert err["code"] == p.ERR_DECODE, err
    assert err["msg"] == "network configuration is not valid JSON"
    err = issue_case.error
    assert err["code"] == p.ERR_INVALID_CONFIG and "too large" in err["msg"], err


def test_input_over_the_limit_is_refused_before_connecting(binaries, fake):
    agent = fake(lambda a, conn: a.read_all(conn))
    r = shim(binaries, agent.path, b"\x01" * (p.MAX_INPUT_BYTES - env_bytes({}) + 1))
    err = r.error
    assert err["code"] == p.ERR_INVALID_CONFIG and "too large" in err["msg"]
    assert str(p.MAX_INPUT_BYTES) in err["details"]
    # the environment counts against the same limit
    big_env = {f"CNI_PAD{i}": "\x01" * 110_000 for i in range(10)}
    r = shim(binaries, agent.path, conf(), env=big_env)
    err = r.error
    assert err["code"] == p.ERR_INVALID_ENV and "CNI_* environment is too large" in err["msg"]
    time.sleep(0.3)
    assert agent.accepted == 0


# --- trust the connected peer, not the path ----------------------------------------------------

NOBODY_SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(1)
print("ready", flush=True)
conn, _ = s.accept()
got = 0
while chunk := conn.recv(65536):
    got += len(chunk)
print("received", got, flush=True)
conn.sendall(b'0\n{"cniVersion": "1.0.0", "interfaces": []}')
"""


def test_socket_served_by_non_root_is_refused_even_when_the_path_is_root_only(binaries):
    d = Path(tempfile.mkdtemp(prefix="ovnvnobody-", dir="/tmp"))
    os.chown(d, 65534, 65534)
    path = d / "agent.sock"
    proc = subprocess.Popen(["/usr/bin/python3", "-c", NOBODY_SERVER, str(path)],
                            stdout=subprocess.PIPE, text=True, user=65534, group=65534,
                            extra_groups=[])
    try:
        assert proc.stdout.readline().strip() == "ready"
        # what the old check looked at: a socket file owned by root, mode 0600
        os.chown(path, 0, 0)
        os.chmod(path, 0o600)
        r = shim(binaries, path, conf())
        err = r.error
        assert err["code"] == p.ERR_UNTRUSTED_AGENT and "not served by root" in err["msg"]
        assert "uid 65534" in err["details"] and f"pid {proc.pid}" in err["details"]
        # nothing of the request (pod identity) went to that server
        assert proc.stdout.readline().split() == ["received", "0"]
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)


# --- one total deadline, naming the phase ----------------------------------------------------


def deadline_error(r: Run, timeout: float, phase: str) -> dict:
    err = r.error
    assert err["code"] == 11, err
    assert f"timed out {phase} the ovnvnet node agent" in err["msg"], err
    assert f"agentTimeout {timeout:g}s" in err["details"]
    assert timeout <= r.elapsed < timeout + 2.0, r.elapsed
    return err


def test_deadline_while_connecting(binaries, fake):
    agent = fake(None, backlog=0)  # listens, never accepts
    queued = []
    for _ in range(8):  # fill the backlog so the shim's connect cannot complete
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(str(agent.path))
        except BlockingIOError:
            c.close()
            break
        queued.append(c)
    try:
        r = shim(binaries, agent.path, conf(agentTimeout=1), timeout=20)
        deadline_error(r, 1, "connecting to")
    finally:
        for c in queued:
            c.close()


def test_deadline_while_sending_to_a_slow_reader(binaries, fake):
    """The agent reads byte by byte: every write makes progress, the total still runs out."""
    def slow_reader(agent, conn):
        while not agent.stop.is_set() and conn.recv(1):
            agent.received += 1
            time.sleep(0.001)

    agent = fake(slow_reader)
    r = shim(binaries, agent.path, conf(agentTimeout=1.5, pad="x" * 900_000), timeout=20)
    err = deadline_error(r, 1.5, "sending the request to")
    assert re.search(r"\(\d+ of \d+ bytes sent\)", err["details"]), err
    assert agent.received > 0


def test_deadline_while_waiting_for_an_answer_that_never_comes(binaries, fake):
    def silent(agent, conn):
        agent.read_all(conn)
        agent.stop.wait(10)

    r = shim(binaries, fake(silent).path, conf(agentTimeout=1), timeout=20)
    err = deadline_error(r, 1, "waiting for the answer of")
    assert "(0 bytes of answer received)" in err["details"]


def test_deadline_is_total_not_per_read(binaries, fake):
    """The answer trickles in a byte every 0.1 s: no single read waits long, the whole takes
    ~6 s, and the 1.5 s deadline ends it (a per-read timeout never would)."""
    def trickle(agent, conn):
        agent.read_all(conn)
        for b in ANSWER:
            if agent.stop.is_set():
                return
            conn.sendall(bytes([b]))
            time.sleep(0.1)

    r = shim(binaries, fake(trickle).path, conf(agentTimeout=1.5), timeout=30)
    err = deadline_error(r, 1.5, "waiting for the answer of")
    assert re.search(r"\(([1-9]\d*) bytes of answer received\)", err["details"]), err


def test_fast_answer_within_the_deadline_is_printed(binaries, fake):
    def answer(agent, conn):
        agent.read_all(conn)
        conn.sendall(ANSWER)

    r = shim(binaries, fake(answer).path, conf(agentTimeout=1))
    assert r.code == 0 and json.loads(r.out)["supportedVersions"] == ["1.0.0"]


@pytest.mark.parametrize("value", ['"soon"', "0", "-1", "1e9"])
def test_bad_agent_timeout_is_a_config_error(binaries, sockdir, value):
    stdin = b'{"cniVersion": "1.0.0", "agentTimeout": ' + value.encode() + b"}"
    err = shim(binaries, sockdir / "none.sock", stdin).error
    assert err["code"] == p.ERR_INVALID_CONFIG and "agentTimeout" in err["msg"]
    assert err["cniVersion"] == "1.0.0"
