"""The ovnvnet operator of a local stack, as a process (``python -m ovnvnet``).

Contract: :meth:`OperatorProcess.start` starts it unless it is running and, with ``wait``,
returns once its health port answers ``/leader`` 200 (it holds the Lease and works; ``/readyz``
is 200 on a standby too). Settings given to ``start`` are kept in the state, so a later ``up``
(after a kill) restarts it with the same ones. Its environment is the stack's (kubeconfig, NB/SB
remotes) plus the health port, the kept settings and any ``extra`` on top.
"""
from __future__ import annotations

import signal
import sys
import urllib.request
from collections.abc import Callable

from .proc import Workdir

__all__ = ["OperatorProcess"]


class OperatorProcess:
    PROCESSES = ("operator",)
    NAME = "operator"

    def __init__(self, wd: Workdir, base_env: Callable[[], dict[str, str]]):
        """`base_env`: the stack's environment for the operator, asked for at each start."""
        self.wd, self.base_env = wd, base_env

    @property
    def health_port(self) -> int:
        return self.wd.port("operator-health")

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = self.base_env()
        env.update({"OVNVNET_HEALTH_PORT": str(self.health_port), "PYTHONUNBUFFERED": "1"})
        env.update(self.wd.state.get("operator_env", {}))
        env.update(extra or {})
        return env

    def start(self, extra_env: dict[str, str] | None = None, *, wait: bool = True) -> None:
        if self.wd.running(self.NAME):
            return
        if extra_env is not None:
            self.wd.state["operator_env"] = extra_env
            self.wd.save()
        self.wd.spawn(self.NAME, [sys.executable, "-m", "ovnvnet"], env=self.env())
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        url = f"http://127.0.0.1:{self.health_port}/leader"
        self.wd.wait_started(self.NAME, lambda: urllib.request.urlopen(url, timeout=1).status == 200,
                             timeout, "operator /leader", interval=0.2)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.wd.kill(self.NAME, sig)
