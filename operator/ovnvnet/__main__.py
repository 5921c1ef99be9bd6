"""`python -m ovnvnet`: run the operator cluster-wide.

With OVNVNET_LEADER_ELECT=true (several replicas), only the holder of a Lease runs; see leader.py.
"""
import logging
import os

import kopf

import ovnvnet.main  # noqa: F401 - registers the handlers


def run() -> None:
    kopf.configure(verbose=False)
    # Kopf logs every handler success at INFO ("Handler 'pod_event' succeeded."): ~6 % of the CPU
    # per attached pod in the benchmark. Our own INFO lines say what was done.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    elector = None
    if os.environ.get("OVNVNET_LEADER_ELECT", "").lower() in ("1", "true", "yes"):
        from ovnvnet.leader import LeaderElector, LeaseConfig, StandbyHealthServer
        standby = StandbyHealthServer(int(os.environ.get("OVNVNET_HEALTH_PORT", "8080")))
        elector = LeaderElector(LeaseConfig.from_env())
        elector.acquire()
        standby.stop()
        elector.start_renewing()
    try:
        kopf.run(clusterwide=True, standalone=True)
    finally:
        if elector is not None:
            elector.release()
            logging.getLogger("ovnvnet").info("operator stopped")


if __name__ == "__main__":
    run()
