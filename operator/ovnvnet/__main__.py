"""`python -m ovnvnet`: run the operator cluster-wide.

The environment is read here, once (config.Settings), and the API credentials are loaded once
(kube/connection.py); both are handed to Kopf's memo and to the leader elector. A bad setting
stops the process at once with a message naming the variable (exit code 2).

With OVNVNET_LEADER_ELECT=true (several replicas), only the holder of a Lease runs; see leader.py.

Crash-only: if Kopf's reactor stops with an error after a completed startup (Kopf 1.45 treats
some answers as fatal, e.g. a 404 on a VirtualNetwork watch while a restarting API server has
not yet installed the CRD's routes), the process releases its Lease and re-executes itself in
place after a second (doubling, up to 30 s, while re-executions repeat within a minute):
the state is rebuilt from the records exactly as on any start, the pid
(and a Pod's container) stays, and no one has to restart it. A failed startup (no seal key...)
and a requested stop (SIGTERM/SIGINT) exit as before. The same re-execution follows when Kopf,
started while the API server did not serve ovnvnet.io, never watched VirtualNetworks (it does not
fail then; main._watch_served notices it from Kopf's insights and raises Kopf's stop flag).
"""
import asyncio
import logging
import os
import sys
import time

# Kopf imports the `kubernetes` client when it is installed, only for its optional model types;
# the operator never uses it and the image does not install it, but a development venv has it
# (for the tests): importing it cost ~0.5 s of CPU and 18 MB at every start (a restart's first
# attach waits for it). Hidden from this process only.
sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]

import kopf  # noqa: E402
from kopf._cogs.structs.references import Insights  # noqa: E402  (not re-exported by Kopf 1.45)

import ovnvnet.main  # noqa: E402  (registers the handlers, no other effect)
from ovnvnet.config import ConfigError, Settings, reexec_marker, set_reexec_marker  # noqa: E402
from ovnvnet.kube.connection import Connection, connect  # noqa: E402


def load() -> tuple[Settings, Connection]:
    try:
        settings = Settings.from_env()
        return settings, connect(settings.kube)
    except ConfigError as exc:
        sys.stderr.write(f"ovnvnet: configuration error: {exc}\n")
        sys.exit(2)


def configure_logging(settings: Settings) -> None:
    kopf.configure(verbose=False)
    # Kopf logs every handler success at INFO ("Handler 'pod_event' succeeded."): ~6 % of the CPU
    # per attached pod in the benchmark. Our own INFO lines say what was done.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("ovnvnet").setLevel(settings.log_level)   # OVNVNET_LOG_LEVEL


def run() -> None:
    settings, connection = load()
    configure_logging(settings)
    if settings.webhook is not None:
        ovnvnet.main.enable_admission()
    elector = None
    if settings.lease is not None:
        from ovnvnet.leader import LeaderElector, StandbyHealthServer
        standby = StandbyHealthServer(settings.health_port)
        elector = LeaderElector(settings.lease, connection)
        elector.acquire()
        standby.stop()
        elector.start_renewing()
    log = logging.getLogger("ovnvnet")
    failed = False
    insights = Insights()        # what Kopf watches: main._watch_served checks it
    restart = asyncio.Event()    # Kopf's stop flag, set by main._watch_served
    try:
        kopf.run(clusterwide=True, standalone=True, insights=insights, stop_flag=restart,
                 memo=kopf.Memo(settings=settings, connection=connection, insights=insights, restart=restart))
    except Exception:
        if not ovnvnet.main.started:
            raise   # the startup itself failed (its error is logged): exit, as before
        log.exception("the Kopf reactor stopped on an error; re-executing in place")
        failed = True
    finally:
        if elector is not None:
            elector.release()
            log.info("operator stopped")
    if failed or restart.is_set():
        time.sleep(_reexec_delay())
        _wait_for_served(connection, log)
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, "-m", "ovnvnet"])




def _reexec_delay(now: float | None = None) -> float:
    """1 s before the first re-execution, doubling for each one that follows within a minute of
    the last (up to 30 s), so a failure that repeats at once does not spin; a minute of running
    resets it. The count travels in the environment, which execv keeps."""
    now = time.time() if now is None else now
    count, _, last = reexec_marker().partition(":")
    try:
        recent = int(count) if now - float(last) < 60 else 0
    except ValueError:
        recent = 0
    set_reexec_marker(f"{recent + 1}:{now:.0f}")
    return float(min(30, 2 ** recent))


def _wait_for_served(connection: Connection, log: logging.Logger) -> None:
    """Before re-executing: wait until API discovery serves virtualnetworks again. Kopf resolves
    its resources from discovery once, when it starts; started while a restarting API server
    still answers 404 for the group, it would never watch VirtualNetworks."""
    started = time.monotonic()
    while (answer := connection.serves("ovnvnet.io/v1", "virtualnetworks")) is not True:
        if time.monotonic() - started > 10:
            log.warning("waiting for the API server to serve virtualnetworks.ovnvnet.io again: %s", answer)
            started = time.monotonic()
        time.sleep(0.5)

if __name__ == "__main__":
    run()
