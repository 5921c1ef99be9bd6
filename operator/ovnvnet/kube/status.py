"""Coalesced writes of the operator's records: VirtualNetwork status, and the allocation record
sharded into IPBlock objects (one per /24 block, IPv6: per /120, see model/blocks.py; the objects'
shapes are in model/records.py, this module is only how and when they are written).

Pods attach and detach one at a time, but each record is written as one JSON merge patch per
flush window carrying only the changed `allocations` keys (null deletes a key); a network's
counters are computed at flush time. Writes to one object are strictly ordered (one flusher at a
time); a failed write is merged back and retried.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ovnvnet.kube.client import ApiError, KubeClient
from ovnvnet.model.records import BlockRef, ipblock_object, ipblock_patch, network_status_patch

log = logging.getLogger(__name__)

IPBLOCKS = "/apis/ovnvnet.io/v1/ipblocks"


class StatusWriter:
    def __init__(self, kube: KubeClient, counters: Callable[[str], dict[str, Any]],
                 block_of: Callable[[str, str], BlockRef | None], *, delay: float = 0.05):
        self._kube = kube
        self._counters = counters  # network -> {"usedIPs":..,"availableIPs":..,"cursor":..} or {} if unknown
        self._block_of = block_of
        self._delay = delay
        self._pending: dict[str, dict[str, Any]] = {}      # object key -> patch body
        self._blocks: dict[str, BlockRef] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self.writes = 0

    # keys: "vnet/<name>" for a VirtualNetwork status, "block/<name>" for an IPBlock
    def set_allocation(self, network: str, ip: str, entry: dict[str, str] | None) -> None:
        block = self._block_of(network, ip)
        if block is not None:
            key = f"block/{block.name}"
            self._blocks[key] = block
            self._pending.setdefault(key, {}).setdefault("allocations", {})[ip] = entry
            self._kick(key)
        self.set_fields(network)   # the counters

    def set_fields(self, network: str, **fields: Any) -> None:
        key = f"vnet/{network}"
        self._pending.setdefault(key, {}).update(fields)
        self._kick(key)

    def forget(self, network: str) -> None:
        self._pending.pop(f"vnet/{network}", None)
        for key in [k for k, b in self._blocks.items() if b.network == network]:
            self._pending.pop(key, None)

    def _kick(self, key: str) -> None:
        task = self._tasks.get(key)
        if task is None or task.done():
            self._tasks[key] = asyncio.get_running_loop().create_task(self._flusher(key))

    async def _write(self, key: str, body: dict[str, Any]) -> None:
        kind, _, name = key.partition("/")
        if kind == "vnet":
            body = {**body, **self._counters(name)}
            await self._kube.merge_patch(KubeClient.vnet_path(name, status=True), network_status_patch(body),
                                         decode=False)
            return
        block = self._blocks[key]
        patch = ipblock_patch(body.get("allocations", {}))
        try:
            await self._kube.merge_patch(f"{IPBLOCKS}/{name}", patch, decode=False)
        except ApiError as exc:
            if exc.status != 404:
                raise
            try:
                await self._kube.request("POST", IPBLOCKS, body=ipblock_object(block, body.get("allocations", {})))
            except ApiError as exc2:
                if exc2.status != 409:   # created meanwhile: patch it
                    raise
                await self._kube.merge_patch(f"{IPBLOCKS}/{name}", patch)

    async def _flusher(self, key: str) -> None:
        backoff = 0.2
        while key in self._pending:
            await asyncio.sleep(self._delay)
            body = self._pending.pop(key, None)
            if body is None:
                return
            try:
                await self._write(key, body)
                self.writes += 1
                backoff = 0.2
            except ApiError as exc:
                if exc.status == 404:
                    log.info("%s is gone; dropping its update", key)
                    continue
                if exc.status in (400, 422):  # will never succeed: don't block later writes
                    log.error("write of %s rejected, dropped: %s", key, exc)
                    continue
                self._merge_back(key, body)
                log.warning("write of %s failed (%s); retrying in %.1fs", key, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:  # noqa: BLE001 - connection errors: retry
                self._merge_back(key, body)
                log.warning("write of %s failed (%s); retrying in %.1fs", key, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _merge_back(self, key: str, body: dict[str, Any]) -> None:
        newer = self._pending.get(key, {})
        merged = {**body, **{k: v for k, v in newer.items() if k != "allocations"}}
        allocs = dict(body.get("allocations", {}))
        allocs.update(newer.get("allocations", {}))
        if allocs:
            merged["allocations"] = allocs
        self._pending[key] = merged

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
