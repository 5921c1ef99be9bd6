"""`python -m ovnvnet`: run the operator cluster-wide.

The environment is read here, once (config.Settings), and the API credentials are loaded once
(kube/connection.py); both are handed to Kopf's memo and to the leader elector. A bad setting
stops the process at once with a message naming the variable (exit code 2).

With OVNVNET_LEADER_ELECT=true (several replicas), only the holder of a Lease runs; see leader.py.
"""
import logging
import sys

import kopf

import ovnvnet.main  # registers the handlers (no other effect)
from ovnvnet.config import ConfigError, Settings
from ovnvnet.kube.connection import Connection, connect


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
    try:
        kopf.run(clusterwide=True, standalone=True,
                 memo=kopf.Memo(settings=settings, connection=connection))
    finally:
        if elector is not None:
            elector.release()
            logging.getLogger("ovnvnet").info("operator stopped")


if __name__ == "__main__":
    run()
