"""Process bookkeeping shared by every part of a local stack.

A :class:`Workdir` is the stack's private directory: ``state.json`` (ports picked once, settings
that must survive between runs), ``pids/<name>.pid`` and ``logs/<name>.log``. Every process a part
starts goes through :meth:`Workdir.spawn` (its own session, output into its log, a pidfile) and
is stopped by that pid only (:meth:`Workdir.kill`), never by name. A part asks
:meth:`Workdir.running` before starting anything, which is what makes ``up`` start only what is
missing.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["ProcessDied", "Workdir", "free_port", "pid_alive", "tcp_open", "wait_for"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0): look at its state
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


class ProcessDied(RuntimeError):
    pass


def wait_for(check, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except ProcessDied:
            raise
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}" + (f": {last_exc}" if last_exc else ""))


class Workdir:
    """The directory `root` of one stack (created if missing) and the processes tracked in it."""

    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()
        self.pids = self.root / "pids"
        self.logs = self.root / "logs"
        self.state_file = self.root / "state.json"
        self.state: dict = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def create(self) -> None:
        for d in (self.root, self.pids, self.logs):
            d.mkdir(parents=True, exist_ok=True)

    def save(self) -> None:
        self.state_file.write_text(json.dumps(self.state, indent=1))

    def port(self, name: str) -> int:
        """A loopback port for `name`, picked free once and kept in the state."""
        if name not in self.state.setdefault("ports", {}):
            self.state["ports"][name] = free_port()
            self.save()
        return self.state["ports"][name]

    def pidfile(self, name: str) -> Path:
        return self.pids / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        try:
            return int(self.pidfile(name).read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self, name: str) -> bool:
        pid = self.pid(name)
        return pid is not None and pid_alive(pid)

    def spawn(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        """Start `argv` as `name`: our environment updated with `env`, cwd the root."""
        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True, cwd=self.root,
        )
        log.close()
        self.pidfile(name).write_text(str(proc.pid))
        return proc

    def wait_started(self, name: str, check, timeout: float, what: str, interval: float = 0.1) -> None:
        """wait_for, but fail at once with the log's tail if the process died."""
        def probe():
            if not self.running(name):
                raise ProcessDied(f"{name} exited; last log lines:\n{self.log_tail(name)}")
            return check()
        try:
            wait_for(probe, timeout, what, interval)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\nlast log lines of {name}:\n{self.log_tail(name)}") from None

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join((self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self, name: str, sig: int = signal.SIGTERM, wait: float = 10.0) -> None:
        """Stop `name` by its pid (`sig`, SIGKILL after `wait` s) and forget it; idempotent."""
        pid = self.pid(name)
        if pid is None:
            return
        if pid_alive(pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + wait
            while pid_alive(pid) and time.monotonic() < deadline:
                try:  # reap if it is our child
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                time.sleep(0.05)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                time.sleep(0.1)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        self.pidfile(name).unlink(missing_ok=True)

    def tracked(self) -> list[str]:
        """Names of every process with a pidfile here."""
        return sorted(p.stem for p in self.pids.glob("*.pid")) if self.pids.exists() else []
