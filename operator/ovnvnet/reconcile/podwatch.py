"""Pods are watched by ovnvnet itself, not through Kopf: one list at start (the same list the
allocator is rebuilt from), then a watch from that list's resourceVersion.

Kopf would list every pod a second time and replay each one through a worker of its own before a
new pod's event got its turn (seconds at 10k pods), and it deep-copies every body. Here a listed
pod that is already attached costs nothing; only pods that need something (a request not yet
served, a finished pod still holding addresses) are handled. Events for one pod are handled in
order (handle_pod takes the pod's lock; asyncio locks are FIFO). An update of an attached pod
that asks nothing (`pod.settled`: the echo of the operator's own result write, a status update)
is dropped on the watch itself when no handling of that pod is in flight: no task, no parse.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from ovnvnet import metrics
from ovnvnet.kube.client import ApiError
from ovnvnet.reconcile import pod as pod_rec
from ovnvnet.reconcile.state import State

log = logging.getLogger(__name__)

PODS = "/api/v1/pods"
WATCH_TIMEOUT = 60   # the server ends each watch after this; a silently dead connection is noticed


def needs_handling(state: State, body: dict, event_type: str | None = None) -> bool:
    """The one test of whether a pod asks anything of the operator: a listed pod (`event_type`
    None: the rebuild's candidates, a relist, the sweep) or a watch event (ADDED/MODIFIED/DELETED).

    A pod matters when it holds addresses or is refused for life (something to release or to
    keep refused), or asks for networks (`ovnNetwork`, ovnvnet elements in Multus's `networks`
    annotation, or any pod with a legacy default network).
    A listed pod that is already attached (or finished and holding nothing) needs nothing unless
    its request changed (hot-plug: e.g. changed while the operator was down); an event for an
    attached pod is handled (a change is served, a removed result is re-written, a deletion
    releases)."""
    meta = body.get("metadata") or {}
    uid = meta.get("uid", "")
    if uid in state.holdings or uid in state.refused:
        return (event_type is not None or pod_rec.is_terminal(body) or uid not in state.attached
                or pod_rec.request_changed(state, body))
    annotations = meta.get("annotations") or {}
    wants = (bool(state.settings.default_network)
             or pod_rec.asks_ovnvnet(state, annotations, meta.get("namespace", "")))
    if event_type is not None:
        return wants
    return wants and not pod_rec.is_terminal(body) and uid not in state.attached


class PodWatch:
    def __init__(self, state: State):
        self.state = state
        self.tasks: set[asyncio.Task] = set()
        self.events = 0
        self.settled = 0                       # MODIFIED events dropped as asking nothing
        self.busy: dict[str, int] = {}         # pod uid -> handlings dispatched and not done

    def dispatch(self, body: dict, event_type: str | None) -> None:
        body.setdefault("kind", "Pod")
        body.setdefault("apiVersion", "v1")
        uid = (body.get("metadata") or {}).get("uid", "")
        self.busy[uid] = self.busy.get(uid, 0) + 1
        task = asyncio.get_running_loop().create_task(self._handle(body, event_type))
        self.tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, uid))

    def _done(self, task: asyncio.Task, uid: str) -> None:
        self.tasks.discard(task)
        left = self.busy.get(uid, 1) - 1
        if left > 0:
            self.busy[uid] = left
        else:
            self.busy.pop(uid, None)

    async def _handle(self, body: dict, event_type: str | None) -> None:
        try:
            # at start, a pod naming a network whose pods' results are not restored yet waits
            # (recovery.finish_rebuild); it may need nothing by then (its own result restored)
            if (self.state.rebuilding
                    and await self.state.wait_rebuilt((body.get("metadata") or {}).get("annotations") or {})
                    and not needs_handling(self.state, body, event_type)):
                return
            await pod_rec.handle_pod(self.state, body, event_type)
        except Exception as exc:  # noqa: BLE001 - isolated per pod; retried by the pending loop
            ns, name, uid = pod_rec.pod_ident(body)
            metrics.ISOLATED_FAILURES.labels("pod").inc()
            log.warning("pod %s/%s: %s: %s (will retry)", ns, name, type(exc).__name__, str(exc)[:300])
            if uid:
                self.state.pending[uid] = (ns, name)

    async def relist(self) -> str:
        """List every pod; handle those that need it; return the resourceVersion to watch from."""
        meta: dict[str, Any] = {}
        async for body in self.state.kube.list_all(PODS, page=500, meta=meta):
            if needs_handling(self.state, body, None):
                self.dispatch(body, None)
        return meta.get("resourceVersion", "")

    async def run(self, resource_version: str) -> None:
        """Watch forever from `resource_version` (relisting after 410 Gone)."""
        rv = resource_version
        backoff = 0.5
        while True:
            try:
                if not rv:
                    rv = await self.relist()
                async for event in self.state.kube.watch(PODS, rv, timeout=WATCH_TIMEOUT):
                    kind = event.get("type")
                    obj = event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            log.info("pod watch expired (410 Gone): relisting")
                            rv = ""
                            break
                        raise ApiError(obj.get("code", 500), obj.get("message", "watch error"))
                    rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                    if kind == "BOOKMARK":
                        continue
                    self.events += 1
                    if (kind == "MODIFIED" and not self.busy.get((obj.get("metadata") or {}).get("uid", ""))
                            and pod_rec.settled(self.state, obj)):
                        self.settled += 1
                        continue
                    if needs_handling(self.state, obj, kind):
                        self.dispatch(obj, kind)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure (connection reset, API restart...): resume
                if isinstance(exc, ApiError) and exc.status == 410:
                    rv = ""
                log.warning("pod watch interrupted (%s); resuming in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)   # an API server coming back is found within 2 s
