"""Where the node agent learns about pods: a :class:`PodSource`.

Production uses :class:`KubePodSource`, a watch-based cache of the pods scheduled on this node
(``fieldSelector=spec.nodeName=NODE``): one list at start, then a watch; a CNI call never lists
pods. Tests without an API server use :class:`StaticPodSource`, fed directly.

Both keep a dict of :class:`PodInfo` owned by the agent's event loop; writers on other threads
go through ``call_soon_threadsafe``. Waiters (ADD waiting for ``ovnIfaceList``) are woken on
every change and re-check their predicate.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KubePodSource", "PodInfo", "PodSource", "StaticPodSource"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    uid: str
    annotations: Mapping[str, str] = field(default_factory=dict)
    node: str = ""
    deleting: bool = False


PodKey = tuple[str, str]


class PodSource(abc.ABC):
    """A cache of this node's pods that can be awaited for a change."""

    def __init__(self) -> None:
        self._pods: dict[PodKey, PodInfo] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Condition | None = None
        self.synced = False

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Condition()

    async def stop(self) -> None:
        pass

    def get(self, namespace: str, name: str) -> PodInfo | None:
        return self._pods.get((namespace, name))

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
                except asyncio.TimeoutError:
                    pass

    # --- mutation: safe from any thread -------------------------------------------------

    def _call(self, fn: Callable[[], None]) -> None:
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
        self._call(lambda: self._pods.__setitem__((pod.namespace, pod.name), pod))

    def _remove(self, namespace: str, name: str) -> None:
        self._call(lambda: self._pods.pop((namespace, name), None))

    def _replace_all(self, pods: list[PodInfo]) -> None:
        def apply() -> None:
            self._pods = {(p.namespace, p.name): p for p in pods}
            self.synced = True

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


def _pod_info(obj: Any) -> PodInfo:
    meta = obj.metadata
    return PodInfo(
        namespace=meta.namespace,
        name=meta.name,
        uid=meta.uid or "",
        annotations=dict(meta.annotations or {}),
        node=(obj.spec.node_name or "") if obj.spec else "",
        deleting=meta.deletion_timestamp is not None,
    )


class KubePodSource(PodSource):
    """A list+watch cache of the pods on one node, fed by a thread running the kube client."""

    def __init__(self, node: str, kubeconfig: str | None, watch_timeout: int = 300) -> None:
        super().__init__()
        self.node = node
        self.kubeconfig = kubeconfig
        self.watch_timeout = watch_timeout
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: Any = None

    async def start(self) -> None:
        await super().start()
        from kubernetes import client, config  # imported here: tests without kube skip it

        if self.kubeconfig:
            api_client = config.new_client_from_config(config_file=self.kubeconfig)
        else:
            config.load_incluster_config()
            api_client = client.ApiClient()
        self._api = client.CoreV1Api(api_client)
        self._thread = threading.Thread(
            target=self._run, name=f"pod-watch-{self.node}", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        if self._watch is not None:
            self._watch.stop()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        selector = f"spec.nodeName={self.node}"
        resource_version: str | None = None
        while not self._stopping.is_set():
            try:
                if resource_version is None:
                    listing = self._api.list_pod_for_all_namespaces(field_selector=selector)
                    self._replace_all([_pod_info(p) for p in listing.items])
                    resource_version = listing.metadata.resource_version
                    log.info("pod cache for node %s synced: %d pods", self.node, len(listing.items))
                self._watch = watch.Watch()
                for event in self._watch.stream(
                    self._api.list_pod_for_all_namespaces,
                    field_selector=selector,
                    resource_version=resource_version,
                    timeout_seconds=self.watch_timeout,
                    allow_watch_bookmarks=True,
                ):
                    if self._stopping.is_set():
                        break
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":
                        resource_version = None  # typically 410 Gone: relist
                        break
                    resource_version = obj.metadata.resource_version or resource_version
                    if kind == "BOOKMARK":
                        continue
                    pod = _pod_info(obj)
                    if kind == "DELETED":
                        self._remove(pod.namespace, pod.name)
                    else:
                        self._set(pod)
            except ApiException as e:
                if e.status == 410:
                    resource_version = None
                    continue
                log.warning("pod watch for node %s failed: %s; retrying", self.node, e.reason)
                self._stopping.wait(2)
            except Exception as e:  # noqa: BLE001 - the watch must survive API hiccups
                if self._stopping.is_set():
                    break
                log.warning("pod watch for node %s failed: %s; retrying", self.node, e)
                self._stopping.wait(2)
