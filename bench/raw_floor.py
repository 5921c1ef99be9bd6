"""The raw API floor: what the API server costs an operator that handles pods the way ovnvnet does.

ovnvnet watches pods itself (`reconcile/podwatch.py`) on its own aiohttp client
(`kube/client.py`), not through Kopf. This floor does the same with the same client and nothing
else: one paginated list of every pod, then a watch from that list's resourceVersion (relisting
after 410 Gone), one task per event, and for each pod that requests networks (`ovnNetwork`) and
does not carry it yet, one UID-guarded merge patch writing a fixed `ovnIfaceList`
(`KubeClient.patch_pod_annotations`, the call ovnvnet answers a pod with). No allocation, no NB,
no seal, no status: the difference between this and the operator is ovnvnet's own work.

Run by the benchmarks as a process: `python -m bench.raw_floor --health-port N` (KUBECONFIG
names the API server); /healthz answers 200 once the first list is done and the watch runs.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "operator") not in sys.path:  # the checkout's package when not installed
    sys.path.append(str(REPO / "operator"))

from ovnvnet.kube.client import ApiError, KubeClient, retry  # noqa: E402
from ovnvnet.kube.connection import from_kubeconfig  # noqa: E402

log = logging.getLogger("bench.raw_floor")

PODS = "/api/v1/pods"
REQUEST, RESULT = "ovnNetwork", "ovnIfaceList"
FIXED = '[{"interface":"net0","name":"floor","ip_address":"192.0.2.1/24","mac_address":"0a:58:c0:00:02:01"}]'
WATCH_TIMEOUT = 60   # as podwatch.py


def needs_patch(body: dict) -> bool:
    """A pod that requests networks and does not carry the fixed answer yet."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return REQUEST in annotations and annotations.get(RESULT) != FIXED


class RawFloor:
    """List+watch pods on one KubeClient; patch the fixed annotation onto those that need it."""

    def __init__(self, kube: KubeClient):
        self.kube = kube
        self.inflight: set[str] = set()
        self.tasks: set[asyncio.Task] = set()
        self.ready = asyncio.Event()
        self.patched = 0

    def dispatch(self, body: dict) -> None:
        uid = (body.get("metadata") or {}).get("uid", "")
        if not needs_patch(body) or uid in self.inflight:
            return
        self.inflight.add(uid)
        task = asyncio.get_running_loop().create_task(self._patch(body))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _patch(self, body: dict) -> None:
        meta = body["metadata"]
        try:
            await retry(lambda: self.kube.patch_pod_annotations(meta["namespace"], meta["name"], meta["uid"],
                                                                {RESULT: FIXED}))
            self.patched += 1
        except ApiError as exc:
            if exc.status not in (404, 409, 422):   # gone, or replaced by a same-name successor
                log.warning("patch %s/%s: %s", meta["namespace"], meta["name"], exc)
        finally:
            self.inflight.discard(meta["uid"])

    async def relist(self) -> str:
        meta: dict[str, Any] = {}
        async for body in self.kube.list_all(PODS, page=500, meta=meta):
            self.dispatch(body)
        return meta.get("resourceVersion", "")

    async def run(self) -> None:
        rv = ""
        while True:
            try:
                if not rv:
                    rv = await self.relist()
                    self.ready.set()
                async for event in self.kube.watch(PODS, rv, timeout=WATCH_TIMEOUT):
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        rv = "" if obj.get("code") == 410 else rv
                        break
                    rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self.dispatch(obj)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - resume, as podwatch.py does
                log.warning("watch interrupted (%s); resuming", exc)
                await asyncio.sleep(0.5)


async def serve(health_port: int) -> None:
    async with KubeClient(from_kubeconfig(os.environ["KUBECONFIG"])) as kube:
        floor = RawFloor(kube)

        async def healthz(_: web.Request) -> web.Response:
            return web.Response(status=200 if floor.ready.is_set() else 503, text=f"patched {floor.patched}\n")

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", health_port).start()
        try:
            await floor.run()
        finally:
            await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--health-port", type=int, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(args.health_port))


if __name__ == "__main__":
    main()
