"""Batch the NB writes of concurrently arriving pods into shared transactions.

Each pod still awaits the outcome of its own ports, but while one transaction is in flight every
request that arrives queues, and the next transaction carries them all. A batch holds either port
creations or port deletions, each port name once; if the shared transaction fails, its requests
are retried one by one so that one bad request fails alone.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ovnvnet.ovn.nb import NbClient, PortSpec

log = logging.getLogger(__name__)


@dataclass
class _Request:
    kind: str                       # "ensure" | "delete"
    items: list[Any]                # PortSpec | port name
    future: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def names(self) -> set[str]:
        return {i.name if isinstance(i, PortSpec) else i for i in self.items}


class NbBatcher:
    def __init__(self, nb: NbClient, lock: asyncio.Lock, run: Callable[..., Any], *, max_ports: int = 500):
        self._nb = nb
        self._lock = lock
        self._run = run            # coroutine function running a blocking call off the loop
        self._queue: list[_Request] = []
        self._task: asyncio.Task[None] | None = None
        self._max = max_ports
        self.transactions = 0

    async def ensure_ports(self, ports: list[PortSpec]) -> None:
        if ports:
            await self._submit(_Request("ensure", list(ports)))

    async def delete_ports(self, names: list[str]) -> None:
        if names:
            await self._submit(_Request("delete", list(names)))

    async def _submit(self, req: _Request) -> None:
        self._queue.append(req)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())
        await req.future

    def _take_batch(self) -> list[_Request]:
        batch: list[_Request] = []
        seen: set[str] = set()
        count = 0
        while self._queue:
            req = self._queue[0]
            names = req.names()
            if batch and (req.kind != batch[0].kind or names & seen or count + len(req.items) > self._max):
                break
            batch.append(self._queue.pop(0))
            seen |= names
            count += len(req.items)
        return batch

    def _commit(self, kind: str, items: list[Any]) -> None:
        if kind == "ensure":
            self._nb.ensure_ports(items)
        else:
            self._nb.delete_ports(items)

    async def _drain(self) -> None:
        while self._queue:
            batch = self._take_batch()
            kind = batch[0].kind
            items = [i for r in batch for i in r.items]
            try:
                async with self._lock:
                    await self._run(self._commit, kind, items)
                self.transactions += 1
                for r in batch:
                    if not r.future.done():
                        r.future.set_result(None)
            except Exception as exc:  # noqa: BLE001 - isolate the failing request
                if len(batch) == 1:
                    if not batch[0].future.done():
                        batch[0].future.set_exception(exc)
                    continue
                log.info("shared NB transaction of %d requests failed (%s); retrying them one by one",
                         len(batch), exc)
                for r in batch:
                    try:
                        async with self._lock:
                            await self._run(self._commit, r.kind, r.items)
                        self.transactions += 1
                        if not r.future.done():
                            r.future.set_result(None)
                    except Exception as one:  # noqa: BLE001 - handed to that request's caller
                        if not r.future.done():
                            r.future.set_exception(one)
