"""HTTP endpoints for probes and metrics: /healthz (the loop answers), /readyz (rebuild done,
NB connected), /leader (the same here: this process acts; see leader.py for standbys),
/metrics (Prometheus)."""
from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ovnvnet.reconcile.state import State


async def start_health_server(state: State, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if not state.ready.is_set():
            return web.Response(status=503, text="rebuilding allocations\n")
        if not state.nb.connected():
            return web.Response(status=503, text="OVN NB not connected\n")
        return web.Response(text="ready\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/leader", readyz),
                    web.get("/metrics", metrics)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
