"""The one async Kubernetes client of ovnvnet (aiohttp, which Kopf already uses), for every call
Kopf's own `patch` cannot make: status merge patches coalesced per network, pod annotation patches
guarded by the pod's UID, paginated lists for recovery and sweeps, events for objects read outside a
handler, the leader's Lease (leader.py) and the node agent's pod cache (cni/pods.py).

Credentials come from a `Connection` (kube/connection.py), shared with Kopf's login so that the
process logs in one way. A bearer token read from a file is re-read when the file changes; a 401
re-reads it at once and the request is retried once with the new token."""
from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from ovnvnet import metrics
from ovnvnet.kube.connection import Connection

CONNECTIONS = 24
"""At most this many connections to the API server (watches included). Each new one costs a TLS
handshake (the largest single item of a burst's profile with 64); a burst of pods queues for a
connection instead of opening one per concurrent write."""
KEEPALIVE = 120.0
"""Seconds an idle connection is kept (aiohttp's default, 15 s, closes them between bursts)."""
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


RESOURCES = frozenset(("pods", "ipblocks", "virtualnetworks", "ipclaims", "events", "namespaces", "leases",
                       "secrets", "network-attachment-definitions", "nodes"))


def resource_of(path: str) -> str:
    """The resource a request path names (its last known resource segment, ``/status`` kept), for
    the request counter."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in RESOURCES and not (i > 0 and parts[i - 1] == "namespaces"):
            return parts[i] + ("/status" if parts[-1] == "status" and i < len(parts) - 1 else "")
    return "other"


def count(method: str, path: str) -> None:
    metrics.API_REQUESTS.labels(method, resource_of(path)).inc()


def _message(text: str) -> str:
    try:
        return json.loads(text).get("message", text)
    except (ValueError, AttributeError):
        return text


class KubeClient:
    """One aiohttp session (bound to the event loop that first uses it) over a shared Connection."""

    def __init__(self, connection: Connection):
        self.connection = connection
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _headers(self, accept: str | None = None) -> dict[str, str]:
        return {"Accept": accept or "application/json", **self.connection.headers()}

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.connection.ssl_context(), limit=CONNECTIONS,
                                               keepalive_timeout=KEEPALIVE),
                timeout=aiohttp.ClientTimeout(total=60),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _url(self, path: str) -> str:
        return self.connection.server.rstrip("/") + path

    async def request(self, method: str, path: str, *, body: Any = None, params: dict | None = None,
                      content_type: str = "application/json", accept: str | None = None,
                      decode: bool = True) -> Any:
        """One request; the answer's JSON, or None with ``decode`` False (the body is read, not
        parsed: a write whose answer, the whole object, nobody reads)."""
        data = json.dumps(body).encode() if body is not None else None   # bytes: no text payload to re-encode
        for attempt in (1, 2):
            count(method, path)
            headers = self._headers(accept)
            if data is not None:
                headers["Content-Type"] = content_type
            async with self.session().request(method, self._url(path), data=data, params=params,
                                              headers=headers) as resp:
                raw = await resp.read()
            if resp.status == 401 and attempt == 1 and self.connection.refresh_token():
                continue   # the token was rotated: once more with the new one
            if resp.status >= 400:
                raise ApiError(resp.status, _message(raw.decode("utf-8", "replace")))
            return json.loads(raw) if raw and decode else None

    async def watch(self, path: str, resource_version: str, *, timeout: int = 300,
                    params: dict | None = None) -> AsyncIterator[dict]:
        """The events of one watch request from `resource_version` (ends when the server closes
        it); an ERROR event (e.g. 410 Gone) is yielded like the others."""
        query = {**(params or {}), "watch": "1", "resourceVersion": resource_version,
                 "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout)}
        for attempt in (1, 2):
            count("WATCH", path)
            async with self.session().get(self._url(path), params=query, headers=self._headers(),
                                          timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout + 30)) as resp:
                if resp.status == 401 and attempt == 1 and self.connection.refresh_token():
                    continue
                if resp.status >= 400:
                    raise ApiError(resp.status, _message(await resp.text()))
                async for line in resp.content:
                    if line.strip():
                        yield json.loads(line)
                return

    # ---------------------------------------------------------------- helpers
    async def get(self, path: str) -> Any:
        return await self.request("GET", path)

    async def list_all(self, path: str, *, page: int = 500, accept: str | None = None,
                       meta: dict | None = None, params: dict | None = None) -> AsyncIterator[dict]:
        """Every item, page by page; `accept=METADATA_LIST` for metadata only (much smaller).
        `meta`, if given, receives the list's metadata (its resourceVersion, to watch from);
        `params` are further query parameters (e.g. a fieldSelector)."""
        cont: str | None = None
        while True:
            query = {**(params or {}), "limit": str(page)}
            if cont:
                query["continue"] = cont
            out = await self.request("GET", path, params=query, accept=accept)
            for item in out.get("items") or []:
                yield item
            if meta is not None:
                meta.update(out.get("metadata") or {})
            cont = out.get("metadata", {}).get("continue")
            if not cont:
                return

    async def merge_patch(self, path: str, body: dict, *, decode: bool = True) -> Any:
        return await self.request("PATCH", path, body=body, content_type="application/merge-patch+json",
                                  decode=decode)

    async def json_patch(self, path: str, ops: list[dict]) -> Any:
        return await self.request("PATCH", path, body=ops, content_type="application/json-patch+json")

    # ---------------------------------------------------------------- objects
    @staticmethod
    def pod_path(namespace: str, name: str) -> str:
        return f"/api/v1/namespaces/{namespace}/pods/{name}"

    @staticmethod
    def vnet_path(name: str, status: bool = False) -> str:
        return f"/apis/ovnvnet.io/v1/virtualnetworks/{name}" + ("/status" if status else "")

    async def patch_pod_annotations(self, namespace: str, name: str, uid: str,
                                    set_: dict[str, str], remove: tuple[str, ...] = ()) -> None:
        """Set/remove pod annotations in one merge patch, only if the pod still has `uid`: the UID
        in the patch is a precondition (a same-name successor is never annotated with its
        predecessor's addresses; the API server answers 409/422 instead)."""
        annotations: dict[str, str | None] = {**set_, **{k: None for k in remove}}
        await self.merge_patch(self.pod_path(namespace, name), {"metadata": {"uid": uid, "annotations": annotations}},
                               decode=False)

    async def post_event(self, obj: dict, *, type_: str, reason: str, message: str,
                         component: str = "ovnvnet") -> None:
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'ovnvnet')}.", "namespace": namespace},
            "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                               "name": meta.get("name"), "namespace": meta.get("namespace"),
                               "uid": meta.get("uid")},
            "reason": reason, "message": message[:1024], "type": type_,
            "source": {"component": component}, "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "reportingComponent": component, "reportingInstance": component,
        }
        await self.request("POST", f"/api/v1/namespaces/{namespace}/events", body=event)


async def retry(coro_fn, *, attempts: int = 5, delay: float = 0.2):
    """Retry transient API failures (connection errors, 429, 5xx)."""
    for i in range(attempts):
        try:
            return await coro_fn()
        except ApiError as exc:
            if exc.status not in (429, 500, 502, 503, 504) or i == attempts - 1:
                raise
        except (TimeoutError, aiohttp.ClientError):
            if i == attempts - 1:
                raise
        await asyncio.sleep(delay * (2 ** i))
