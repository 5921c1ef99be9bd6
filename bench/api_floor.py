"""The Kopf API floor: a minimal Kopf operator that only writes a fixed `ovnIfaceList` onto the pods
that request networks: what the API server and Kopf cost alone.

ovnvnet no longer handles pods through Kopf (reconcile/podwatch.py watches them on its own
client), so the floor the targets are measured against is bench/raw_floor.py; this one is kept as
a second reference (what a Kopf-based operator could reach at best).

Run by the benchmarks as a process: `python -m bench.api_floor --health-port N`.
"""
from __future__ import annotations

import argparse
import logging
from typing import Any

import kopf

FIXED = '[{"interface":"net0","name":"floor","ip_address":"192.0.2.1/24","mac_address":"0a:58:c0:00:02:01"}]'


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    # the same settings the real operator uses (ovnvnet.main.startup)
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="bench.floor")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="bench.floor")
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10


@kopf.on.event("", "v1", "pods", annotations={"ovnNetwork": kopf.PRESENT})
def pod_event(event: kopf.RawEvent, patch: kopf.Patch, **_: Any) -> None:
    if event.get("type") == "DELETED":
        return
    annotations = event["object"].get("metadata", {}).get("annotations") or {}
    if annotations.get("ovnIfaceList") != FIXED:
        patch.metadata.annotations["ovnIfaceList"] = FIXED


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--health-port", type=int, required=True)
    args = ap.parse_args()
    kopf.configure(verbose=False)
    kopf.run(clusterwide=True, standalone=True, liveness_endpoint=f"http://127.0.0.1:{args.health_port}/healthz")


if __name__ == "__main__":
    main()
