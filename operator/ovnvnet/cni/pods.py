"""Where the node agent learns about pods: a :class:`PodSource`.

Production uses :class:`KubePodSource`, a watch-based cache of the pods scheduled on this node
(``fieldSelector=spec.nodeName=NODE``): one list at start, then a watch; a CNI call never lists
pods. It uses the operator's API client (kube/client.py), tokens re-read as they rotate. Tests
without an API server use :class:`StaticPodSource`, fed directly.

Both keep a dict of :class:`PodInfo` owned by the agent's event loop; writers on other threads
go through ``call_soon_threadsafe``. Waiters (ADD waiting for ``ovnIfaceList``) are woken on
every change and re-check their predicate. Subscribers (:meth:`PodSource.subscribe`, the
hot-plug converge of cni/hotplug.py) are called on the loop with the key of every pod that was
put, changed or removed (every key, old and new, on a relist).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..kube.client import ApiError, KubeClient
from ..kube.connection import Connection

__all__ = ["KubePodSource", "PodInfo", "PodSource", "StaticPodSource"]

log = logging.getLogger(__name__)

PODS = "/api/v1/pods"


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    uid: str
    annotations: Mapping[str, str] = field(default_factory=dict)
    node: str = ""
    deleting: bool = False


PodKey = tuple[str, str]


class PodSource:
    """A cache of this node's pods that can be awaited for a change (base: the subclasses fill it)."""

    def __init__(self) -> None:
        self._pods: dict[PodKey, PodInfo] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Condition | None = None
        self._listeners: list[Callable[[PodKey], None]] = []
        self.synced = False

    def subscribe(self, listener: Callable[[PodKey], None]) -> None:
        """Call ``listener((namespace, name))`` on the loop after each change of that pod."""
        self._listeners.append(listener)

    def _fire(self, keys: list[PodKey]) -> None:
        for key in keys:
            for listener in self._listeners:
                try:
                    listener(key)
                except Exception:
                    log.exception("pod change listener failed for %s/%s", *key)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Condition()

    async def stop(self) -> None:
        pass

    def get(self, namespace: str, name: str) -> PodInfo | None:
        return self._pods.get((namespace, name))

    async def lookup(self, namespace: str, name: str) -> PodInfo | None:
        """The pod wherever it is bound (the cache holds only this node's): here, the cache."""
        return self.get(namespace, name)

    async def wait_for(
        self,
        namespace: str,
        name: str,
        ready: Callable[[PodInfo | None], bool],
        timeout: float,
    ) -> tuple[PodInfo | None, bool]:
        """Wait until ``ready(pod)``; returns (last seen pod, whether ready) after ``timeout``."""
        assert self._changed is not None, "PodSource.start() was not awaited"
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                pod = self.get(namespace, name)
                if ready(pod):
                    return pod, True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return pod, False
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    pass

    # --- mutation: safe from any thread -------------------------------------------------

    def _call(self, fn: Callable[[], object]) -> None:
        loop = self._loop
        if loop is None:
            fn()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn()
            self._notify()
        else:
            def apply() -> None:
                fn()
                self._notify()

            loop.call_soon_threadsafe(apply)

    def _notify(self) -> None:
        cond = self._changed
        if cond is None:
            return

        async def wake() -> None:
            async with cond:
                cond.notify_all()

        asyncio.ensure_future(wake())

    def _set(self, pod: PodInfo) -> None:
        def apply() -> None:
            self._pods[(pod.namespace, pod.name)] = pod
            self._fire([(pod.namespace, pod.name)])

        self._call(apply)

    def _remove(self, namespace: str, name: str) -> None:
        def apply() -> None:
            self._pods.pop((namespace, name), None)
            self._fire([(namespace, name)])

        self._call(apply)

    def _replace_all(self, pods: list[PodInfo]) -> None:
        def apply() -> None:
            old = list(self._pods)
            self._pods = {(p.namespace, p.name): p for p in pods}
            self.synced = True
            self._fire(sorted(set(old) | set(self._pods)))

        self._call(apply)


class StaticPodSource(PodSource):
    """Pods given by the caller (tests, demos without an API server)."""

    def __init__(self, pods: list[PodInfo] | None = None) -> None:
        super().__init__()
        for pod in pods or []:
            self._pods[(pod.namespace, pod.name)] = pod
        self.synced = True

    def put(self, pod: PodInfo) -> None:
        self._set(pod)

    def delete(self, namespace: str, name: str) -> None:
        self._remove(namespace, name)


def _pod_info(obj: Mapping[str, Any]) -> PodInfo:
    meta = obj.get("metadata") or {}
    return PodInfo(
        namespace=meta.get("namespace") or "",
        name=meta.get("name") or "",
        uid=meta.get("uid") or "",
        annotations=dict(meta.get("annotations") or {}),
        node=(obj.get("spec") or {}).get("nodeName") or "",
        deleting=meta.get("deletionTimestamp") is not None,
    )


class KubePodSource(PodSource):
    """A list+watch cache of the pods on one node, fed by a task of the agent's event loop through
    the project's API client (kube/client.py): one list, then watches resumed from the last
    resourceVersion seen; a 410 Gone (or any ERROR event) relists; any other failure is retried
    after `retry` seconds from where it stopped."""

    def __init__(self, node: str, connection: Connection, watch_timeout: int = 300,
                 retry: float = 2.0) -> None:
        super().__init__()
        self.node = node
        self.connection = connection
        self.watch_timeout = watch_timeout
        self.retry = retry
        self._kube: KubeClient | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        self._kube = KubeClient(self.connection)
        self._task = asyncio.create_task(self._run(self._kube), name=f"pod-watch-{self.node}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._kube is not None:
            await self._kube.close()

    async def lookup(self, namespace: str, name: str) -> PodInfo | None:
        """One read of the pod, for a pod not in the cache (bound to another node, or not yet
        seen): a list by ``metadata.name`` (the agent's RBAC grants list, not get). None when it
        does not exist or the read fails (the caller waits as before)."""
        if self._kube is None:
            return self.get(namespace, name)
        try:
            out = await self._kube.request(
                "GET", f"/api/v1/namespaces/{namespace}/pods",
                params={"fieldSelector": f"metadata.name={name}"})
        except Exception as e:  # noqa: BLE001 - a lookup is advisory: the wait decides
            log.debug("lookup of pod %s/%s failed: %s", namespace, name, e)
            return None
        items = out.get("items") or []
        return _pod_info(items[0]) if items else None

    async def _run(self, kube: KubeClient) -> None:
        params = {"fieldSelector": f"spec.nodeName={self.node}"}
        resource_version: str | None = None
        while True:
            try:
                if resource_version is None:
                    meta: dict[str, Any] = {}
                    pods = [_pod_info(p) async for p in kube.list_all(PODS, params=params, meta=meta)]
                    self._replace_all(pods)
                    resource_version = meta.get("resourceVersion") or "0"
                    log.info("pod cache for node %s synced: %d pods", self.node, len(pods))
                async for event in kube.watch(PODS, resource_version, timeout=self.watch_timeout,
                                              params=params):
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        log.info("pod watch for node %s: %s; relisting", self.node, obj.get("message"))
                        resource_version = None  # typically 410 Gone: relist
                        break
                    resource_version = (obj.get("metadata") or {}).get("resourceVersion") or resource_version
                    if kind == "BOOKMARK":
                        continue
                    pod = _pod_info(obj)
                    if kind == "DELETED":
                        self._remove(pod.namespace, pod.name)
                    else:
                        self._set(pod)
            except ApiError as e:
                if e.status == 410:
                    resource_version = None
                    continue
                log.warning("pod watch for node %s failed: %s; retrying", self.node, e)
                await asyncio.sleep(self.retry)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the watch must survive API hiccups
                log.warning("pod watch for node %s failed: %s; retrying", self.node, e or type(e).__name__)
                await asyncio.sleep(self.retry)
