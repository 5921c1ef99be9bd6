"""Coalesced VirtualNetwork status writes.

Pods attach and detach one at a time, but a network's status is written as one JSON merge patch
per flush window carrying only the changed `allocations` keys (null deletes a key) plus the
counters computed at flush time. Writes for one network are strictly ordered (one flusher at a
time); a failed write is merged back and retried.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from ovnvnet.kube.client import ApiError, KubeClient

log = logging.getLogger(__name__)


class StatusWriter:
    def __init__(self, kube: KubeClient, counters: Callable[[str], dict[str, Any]], *, delay: float = 0.05):
        self._kube = kube
        self._counters = counters  # network -> {"usedIPs":..,"availableIPs":..,"cursor":..} or {} if unknown
        self._delay = delay
        self._pending: dict[str, dict[str, Any]] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self.writes = 0

    def set_allocation(self, network: str, ip: str, entry: dict[str, str] | None) -> None:
        self._pending.setdefault(network, {}).setdefault("allocations", {})[ip] = entry
        self._kick(network)

    def set_fields(self, network: str, **fields: Any) -> None:
        self._pending.setdefault(network, {}).update(fields)
        self._kick(network)

    def forget(self, network: str) -> None:
        self._pending.pop(network, None)

    def _kick(self, network: str) -> None:
        task = self._tasks.get(network)
        if task is None or task.done():
            self._tasks[network] = asyncio.get_running_loop().create_task(self._flusher(network))

    async def _flusher(self, network: str) -> None:
        backoff = 0.2
        while network in self._pending:
            await asyncio.sleep(self._delay)
            body = self._pending.pop(network, None)
            if body is None:
                return
            body = {**body, **self._counters(network)}
            try:
                await self._kube.merge_patch(KubeClient.vnet_path(network, status=True), {"status": body})
                self.writes += 1
                backoff = 0.2
            except ApiError as exc:
                if exc.status == 404:
                    log.info("network %s is gone; dropping its status update", network)
                    continue
                if exc.status in (400, 422):  # will never succeed: don't block later writes
                    log.error("status write for %s rejected, dropped: %s", network, exc)
                    continue
                self._merge_back(network, body)
                log.warning("status write for %s failed (%s); retrying in %.1fs", network, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:  # noqa: BLE001 - connection errors: retry
                self._merge_back(network, body)
                log.warning("status write for %s failed (%s); retrying in %.1fs", network, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _merge_back(self, network: str, body: dict[str, Any]) -> None:
        newer = self._pending.get(network, {})
        merged = {**body, **{k: v for k, v in newer.items() if k != "allocations"}}
        allocs = dict(body.get("allocations", {}))
        allocs.update(newer.get("allocations", {}))
        if allocs:
            merged["allocations"] = allocs
        self._pending[network] = merged

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every pending write has gone out (used at shutdown and by tests)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._pending or any(not t.done() for t in self._tasks.values()):
            if asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        for t in self._tasks.values():
            t.cancel()
