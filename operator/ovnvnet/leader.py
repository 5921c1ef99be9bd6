"""Leader election with a coordination.k8s.io Lease, for running several operator replicas.

Only the holder of the Lease runs the operator; the others wait, serving /healthz and /readyz
(200 "standby": a standby is healthy and must not stall a rolling update) and /leader (503; the
leader's own server answers 200 there once it has rebuilt its state). The Lease is read and written
through the project's one API client (kube/client.py) with the process's one set of credentials.
The holder renews every `renew` seconds from a thread (and event loop) of its own; if it
cannot renew for `duration` seconds it exits at once (crash-only: it may no longer be the leader,
and two actors must never allocate), and its supervisor restarts it as a candidate. A replica
stopped with SIGTERM releases the Lease so that a standby takes over immediately; one killed
outright is replaced once the Lease expires (`duration` seconds).
"""
from __future__ import annotations

import asyncio
import datetime
import http.server
import logging
import os
import threading
import time
from typing import Any

from ovnvnet.config import LeaseSettings
from ovnvnet.kube.client import ApiError, KubeClient
from ovnvnet.kube.connection import Connection

log = logging.getLogger("ovnvnet.leader")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _fmt(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(raw: str | None) -> datetime.datetime | None:
    if not raw:
        return None
    try:
        t = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=datetime.UTC)


class LeaderElector:
    """The Lease through the project's KubeClient. Acquiring blocks the calling thread (it runs its
    own event loop, before Kopf's starts); renewing runs in a thread with an event loop of its own,
    so that a busy operator loop never delays a renewal."""

    def __init__(self, cfg: LeaseSettings, connection: Connection):
        self.cfg = cfg
        self.connection = connection
        self._last_renew = 0.0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.cfg.namespace}/leases/{self.cfg.name}"

    # ------------------------------------------------------------------ one attempt
    async def try_acquire_or_renew(self, kube: KubeClient) -> bool:
        c = self.cfg
        now = _now()
        try:
            lease = await kube.get(self.path)
        except ApiError as exc:
            if exc.status != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": c.name, "namespace": c.namespace},
                    "spec": {"holderIdentity": c.identity, "leaseDurationSeconds": int(c.duration),
                             "acquireTime": _fmt(now), "renewTime": _fmt(now), "leaseTransitions": 0}}
            try:
                await kube.request("POST", self.path.rsplit("/", 1)[0], body=body)
            except ApiError as exc2:
                if exc2.status == 409:
                    return False
                raise
            return True
        spec: dict[str, Any] = lease.setdefault("spec", {})
        holder = spec.get("holderIdentity") or ""
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        expired = (renewed is None or
                   (now - renewed).total_seconds() > (spec.get("leaseDurationSeconds") or c.duration))
        if holder and holder != c.identity and not expired:
            return False
        if holder != c.identity:
            spec["acquireTime"] = _fmt(now)
            spec["leaseTransitions"] = (spec.get("leaseTransitions") or 0) + 1
        spec["holderIdentity"] = c.identity
        spec["renewTime"] = _fmt(now)
        spec["leaseDurationSeconds"] = int(c.duration)
        try:  # the resourceVersion in `lease` makes this a compare-and-swap
            await kube.request("PUT", self.path, body=lease)
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    # ------------------------------------------------------------------ lifecycle
    def acquire(self) -> None:
        """Block until this replica holds the Lease."""
        asyncio.run(self._acquire())

    async def _acquire(self) -> None:
        announced = False
        async with KubeClient(self.connection) as kube:
            while True:
                try:
                    if await self.try_acquire_or_renew(kube):
                        self._last_renew = time.monotonic()
                        log.info("acquired lease %s/%s as %s", self.cfg.namespace, self.cfg.name, self.cfg.identity)
                        return
                except Exception as exc:  # noqa: BLE001 - API unavailable: keep trying
                    log.warning("lease attempt failed: %s", exc)
                if not announced:
                    log.info("standby: lease %s/%s is held by another replica", self.cfg.namespace, self.cfg.name)
                    announced = True
                await asyncio.sleep(self.cfg.retry)

    def start_renewing(self) -> threading.Thread:
        started = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._renew_loop(started)),
                                        name="lease-renewer", daemon=True)
        self._thread.start()
        started.wait()
        return self._thread

    async def _renew_loop(self, started: threading.Event) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        started.set()
        async with KubeClient(self.connection) as kube:
            while True:
                try:
                    await asyncio.wait_for(self._stop.wait(), self.cfg.renew)
                    break   # release() was called
                except TimeoutError:
                    pass
                try:
                    if await asyncio.wait_for(self.try_acquire_or_renew(kube), self.cfg.renew):
                        self._last_renew = time.monotonic()
                    else:
                        log.error("lease %s lost to another replica: exiting", self.cfg.name)
                        os._exit(3)
                except Exception as exc:  # noqa: BLE001 - the lease deadline below decides
                    log.warning("lease renewal failed: %s", exc or type(exc).__name__)
                if time.monotonic() - self._last_renew > self.cfg.duration:
                    log.error("lease not renewed for %.0fs: exiting so that no two replicas act", self.cfg.duration)
                    os._exit(3)
            await self._release(kube)

    def release(self) -> None:
        """Stop renewing and give the Lease up, so that a standby takes over at once."""
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(self.cfg.renew + 10)
            return

        async def once() -> None:
            async with KubeClient(self.connection) as kube:
                await self._release(kube)
        asyncio.run(once())

    async def _release(self, kube: KubeClient) -> None:
        try:
            lease = await kube.get(self.path)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") == self.cfg.identity:
                spec["holderIdentity"] = ""
                spec.pop("renewTime", None)
                await kube.request("PUT", self.path, body=lease)
                log.info("released lease %s", self.cfg.name)
        except Exception as exc:  # noqa: BLE001 - it expires anyway
            log.warning("releasing lease failed: %s", exc)


class StandbyHealthServer:
    """Probes while waiting for the Lease (the operator's own server takes the port over once it
    leads): /healthz and /readyz 200, /leader 503."""

    def __init__(self, port: int):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code, text = {"/healthz": (200, b"ok\n"), "/readyz": (200, b"standby\n")}.get(
                    self.path, (503, b"standby\n"))
                self.send_response(code)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args: object) -> None:
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
