"""A fault-injecting front for the real API server: the response to a write is lost after the
write has landed, deterministically (what an API server that dies right after its commit, or a
connection cut on the way back, does by chance).

:class:`LossyProxy` listens on plain HTTP on loopback and forwards every request to the API
server (headers, body, watch streams chunk by chunk). For the pods named in `lose`, a PATCH
that writes `ovnIfaceList` is forwarded, its answer read, and the client's connection then
dropped without an answer, for `window` seconds from the first such PATCH; afterwards those
PATCHes pass. The writer sees a broken connection each time, though every write is in etcd.
:meth:`hide` answers `404 page not found` (as a starting API server does before it has
installed a CRD's routes) to every request under a path prefix for some seconds.

    with LossyProxy(stack, lose={"victim"}, window=12) as proxy:
        stack.start_operator({"KUBECONFIG": str(proxy.kubeconfig)})
"""
from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

# hop-by-hop or re-computed headers: not copied across the proxy
_DROP = {"host", "content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive"}
_POD = re.compile(r"^/api/v1/namespaces/[^/]+/pods/([^/?]+)$")


class LossyProxy:
    def __init__(self, stack: Any, *, lose: set[str] = frozenset(), window: float = 0):
        self.upstream = stack.kube.api_url
        self.token = stack.kube.token
        self.lose, self.window = set(lose), window
        self.root = Path(stack.root)
        self.dropped: list[tuple[str, float]] = []   # (pod, when) of every answer withheld
        self.first_drop: dict[str, float] = {}
        self.port = 0
        self._streams: set[tuple[str, asyncio.Transport]] = set()
        self.hidden: tuple[str, float, bool] | None = None   # (path prefix, until, exact)
        self.not_found = 0                                 # requests answered 404 by hide()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LossyProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the lossy proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop serving; open watch streams are cut (stop their client first to end cleanly)."""
        try:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(20)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    @property
    def kubeconfig(self) -> Path:
        """A kubeconfig (the stack's admin token) whose server is this proxy."""
        path = self.root / f"kubeconfig-lossy-{self.port}"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "lossy",
            "clusters": [{"name": "lossy", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "lossy", "context": {"cluster": "lossy", "user": "admin"}}],
        }))
        return path

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False),
                                              timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _close(self) -> None:
        if self._session is not None:
            await self._session.close()   # ends every forwarded stream
        if self._runner is not None:
            await self._runner.cleanup()

    def hide(self, prefix: str, seconds: float, *, exact: bool = False) -> None:
        """404 under `prefix` (`exact`: that path only, e.g. a group's discovery document) for
        `seconds`; the streams open under it (watches) are cut now, so that their clients
        reconnect into the 404s (an API server restart cuts every stream)."""
        self.hidden = (prefix, time.monotonic() + seconds, exact)

        def cut() -> None:
            for path, transport in list(self._streams):
                if path.startswith(prefix):
                    transport.abort()
        self._loop.call_soon_threadsafe(cut)

    def reveal(self) -> None:
        """End a `hide` now."""
        self.hidden = None

    # ------------------------------------------------------------------ forwarding
    def _withhold(self, request: web.Request, body: bytes) -> str | None:
        """The pod whose answer to withhold now, if any."""
        m = _POD.match(request.path)
        if request.method != "PATCH" or not m or m.group(1) not in self.lose or b"ovnIfaceList" not in body:
            return None
        pod = m.group(1)
        first = self.first_drop.setdefault(pod, time.monotonic())
        return pod if time.monotonic() - first < self.window else None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        if self.hidden and time.monotonic() < self.hidden[1] and \
                (request.path == self.hidden[0] if self.hidden[2] else request.path.startswith(self.hidden[0])):
            self.not_found += 1
            return web.Response(status=404, text="404 page not found\n", content_type="text/plain")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=body or None, allow_redirects=False) as up:
            withhold = self._withhold(request, body)
            if withhold is not None:
                await up.read()                # the write has landed
                self.dropped.append((withhold, time.monotonic()))
                if request.transport is not None:
                    request.transport.abort()  # ...and its writer never hears so
                return web.Response(status=204)
            resp = web.StreamResponse(status=up.status, reason=up.reason,
                                      headers={k: v for k, v in up.headers.items() if k.lower() not in _DROP})
            await resp.prepare(request)
            key = (request.path, request.transport)
            if request.transport is not None:
                self._streams.add(key)   # type: ignore[arg-type]
            try:
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
            finally:
                self._streams.discard(key)   # type: ignore[arg-type]
            return resp
