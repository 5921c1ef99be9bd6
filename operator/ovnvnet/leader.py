"""Leader election with a coordination.k8s.io Lease, for running several operator replicas.

Only the holder of the Lease runs the operator; the others wait, serving /healthz and /readyz
(200 "standby": a standby is healthy and must not stall a rolling update) and /leader (503; the
leader's own server answers 200 there once it has rebuilt its state). The holder renews every `renew` seconds from a thread of its own; if it
cannot renew for `duration` seconds it exits at once (crash-only: it may no longer be the leader,
and two actors must never allocate), and its supervisor restarts it as a candidate. A replica
stopped with SIGTERM releases the Lease so that a standby takes over immediately; one killed
outright is replaced once the Lease expires (`duration` seconds).
"""
from __future__ import annotations

import datetime
import http.server
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

import kubernetes
from kubernetes.client.rest import ApiException

log = logging.getLogger("ovnvnet.leader")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _fmt(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaseConfig:
    namespace: str
    name: str = "ovnvnet-operator"
    identity: str = ""
    duration: float = 15.0
    renew: float = 5.0
    retry: float = 1.0

    @classmethod
    def from_env(cls) -> "LeaseConfig":
        return cls(
            namespace=os.environ.get("OVNVNET_NAMESPACE") or os.environ.get("POD_NAMESPACE") or "default",
            name=os.environ.get("OVNVNET_LEASE_NAME", "ovnvnet-operator"),
            identity=os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
            duration=float(os.environ.get("OVNVNET_LEASE_DURATION", "15")),
            renew=float(os.environ.get("OVNVNET_LEASE_RENEW", "5")),
        )


class LeaderElector:
    def __init__(self, cfg: LeaseConfig, api: kubernetes.client.CoordinationV1Api | None = None):
        self.cfg = cfg
        if api is None:
            try:
                kubernetes.config.load_incluster_config()
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config()
            api = kubernetes.client.CoordinationV1Api()
        self.api = api
        self._last_renew = 0.0
        self._stop = threading.Event()

    # ------------------------------------------------------------------ one attempt
    def try_acquire_or_renew(self) -> bool:
        c = self.cfg
        now = _now()
        try:
            lease = self.api.read_namespaced_lease(c.name, c.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {"metadata": {"name": c.name, "namespace": c.namespace},
                    "spec": {"holderIdentity": c.identity, "leaseDurationSeconds": int(c.duration),
                             "acquireTime": _fmt(now), "renewTime": _fmt(now), "leaseTransitions": 0}}
            try:
                self.api.create_namespaced_lease(c.namespace, body)
            except ApiException as exc2:
                if exc2.status == 409:
                    return False
                raise
            return True
        spec = lease.spec
        holder = spec.holder_identity or ""
        renewed = spec.renew_time or spec.acquire_time
        expired = (renewed is None or
                   (now - renewed).total_seconds() > (spec.lease_duration_seconds or c.duration))
        if holder and holder != c.identity and not expired:
            return False
        if holder != c.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = c.identity
        spec.renew_time = now
        spec.lease_duration_seconds = int(c.duration)
        try:  # the resourceVersion in `lease` makes this a compare-and-swap
            self.api.replace_namespaced_lease(c.name, c.namespace, lease)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    # ------------------------------------------------------------------ lifecycle
    def acquire(self) -> None:
        """Block until this replica holds the Lease."""
        announced = False
        while True:
            try:
                if self.try_acquire_or_renew():
                    self._last_renew = time.monotonic()
                    log.info("acquired lease %s/%s as %s", self.cfg.namespace, self.cfg.name, self.cfg.identity)
                    return
            except Exception as exc:  # noqa: BLE001 - API unavailable: keep trying
                log.warning("lease attempt failed: %s", exc)
            if not announced:
                log.info("standby: lease %s/%s is held by another replica", self.cfg.namespace, self.cfg.name)
                announced = True
            time.sleep(self.cfg.retry)

    def start_renewing(self) -> threading.Thread:
        def loop() -> None:
            while not self._stop.wait(self.cfg.renew):
                try:
                    if self.try_acquire_or_renew():
                        self._last_renew = time.monotonic()
                    else:
                        log.error("lease %s lost to another replica: exiting", self.cfg.name)
                        os._exit(3)
                except Exception as exc:  # noqa: BLE001
                    log.warning("lease renewal failed: %s", exc)
                if time.monotonic() - self._last_renew > self.cfg.duration:
                    log.error("lease not renewed for %.0fs: exiting so that no two replicas act", self.cfg.duration)
                    os._exit(3)

        t = threading.Thread(target=loop, name="lease-renewer", daemon=True)
        t.start()
        return t

    def release(self) -> None:
        self._stop.set()
        try:
            lease = self.api.read_namespaced_lease(self.cfg.name, self.cfg.namespace)
            if lease.spec.holder_identity == self.cfg.identity:
                lease.spec.holder_identity = ""
                lease.spec.renew_time = None
                self.api.replace_namespaced_lease(self.cfg.name, self.cfg.namespace, lease)
                log.info("released lease %s", self.cfg.name)
        except Exception as exc:  # noqa: BLE001 - it expires anyway
            log.warning("releasing lease failed: %s", exc)


class StandbyHealthServer:
    """Probes while waiting for the Lease (the operator's own server takes the port over once it
    leads): /healthz and /readyz 200, /leader 503."""

    def __init__(self, port: int):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
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
