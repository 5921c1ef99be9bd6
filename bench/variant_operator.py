"""The operator with experimental changes applied from outside, to measure a proposed change before
anyone writes it properly in operator/ovnvnet (these are prototypes for the benchmarks only: they
monkeypatch, and skip safety the real change must keep).

    python -m bench.variant_operator VARIANT [VARIANT...]

Variants:
  lean-diffbase  Kopf's diff-base essence built without deep-copying `status` first (Kopf deep-copies
                 the whole body of every event, so every VirtualNetwork status write costs a deep
                 copy of the whole allocations map in the operator).
  nb-batch       NB port writes of concurrently attaching/releasing pods share one transaction: a
                 committer takes everything queued while the previous commit was in flight (no
                 added delay). The NB lock is dropped for these calls (the prototype ignores the
                 repair race the real change must keep out).
  chunked-list   Kopf lists pods in pages of 500 instead of one list of everything.

The benchmarks start it instead of `python -m ovnvnet` when OVNVNET_BENCH_VARIANTS is set
(comma-separated), e.g. `OVNVNET_BENCH_VARIANTS=nb-batch,lean-diffbase python -m bench s1`.
"""
from __future__ import annotations

import asyncio
import sys
from typing import Any

import kopf

import ovnvnet.main  # noqa: F401 - registers the real handlers first
from ovnvnet.reconcile import state as state_mod

VARIANTS = {"lean-diffbase", "nb-batch", "chunked-list"}
chosen: set[str] = set()


class LeanDiffBase(kopf.AnnotationsDiffBaseStorage):
    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        if "status" in body:
            body = kopf.Body({k: v for k, v in body.items() if k != "status"})
        return super().build(body=body, extra_fields=extra_fields)


@kopf.on.startup()
async def variant_startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    if "lean-diffbase" in chosen:
        settings.persistence.diffbase_storage = LeanDiffBase(prefix="ovnvnet.io", key="last-handled-configuration")
    if "chunked-list" in chosen:
        settings.watching.chunk_size = 500


class _NoLock:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: Any) -> None:
        return None


class _PortBatcher:
    """Coalesce ensure_ports/delete_ports calls arriving while a commit is in flight."""

    def __init__(self, state: Any, real_lock: asyncio.Lock):
        self.state, self.lock = state, real_lock
        self.queue: list[tuple[str, list, asyncio.Future]] = []
        self.task: asyncio.Task | None = None
        self.commits = 0

    async def submit(self, kind: str, items: list) -> None:
        fut = asyncio.get_running_loop().create_future()
        self.queue.append((kind, list(items), fut))
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())
        await fut

    async def _run(self) -> None:
        while self.queue:
            batch, self.queue = self.queue, []
            ensure = [p for kind, items, _ in batch if kind == "ensure" for p in items]
            delete = [n for kind, items, _ in batch if kind == "delete" for n in items]
            try:
                async with self.lock:
                    await asyncio.to_thread(self.state.nb.apply, ensure_ports=ensure, delete_ports=delete)
                self.commits += 1
            except Exception as exc:  # noqa: BLE001 - each caller gets the failure
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_result(None)


def _install_nb_batch() -> None:
    original_init = state_mod.State.__init__
    original_call = state_mod.State.nb_call

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        # every `async with state.nb_lock` now passes at once, so concurrent attaches reach the
        # batcher together; the batcher serialises its own commits (the prototype lets the other
        # NB writers - network ensure, sweep repair - run unserialised)
        self._bench_batcher = _PortBatcher(self, asyncio.Lock())
        self.nb_lock = _NoLock()

    async def nb_call(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(fn, "__name__", "")
        if name == "ensure_ports" and not kwargs:
            return await self._bench_batcher.submit("ensure", args[0])
        if name == "delete_ports" and not kwargs:
            return await self._bench_batcher.submit("delete", args[0])
        return await original_call(self, fn, *args, **kwargs)

    state_mod.State.__init__ = __init__
    state_mod.State.nb_call = nb_call


def main(argv: list[str]) -> None:
    names = {v for arg in argv for v in arg.split(",") if v}
    unknown = names - VARIANTS
    if unknown:
        sys.exit(f"unknown variant(s) {sorted(unknown)}; known: {sorted(VARIANTS)}")
    chosen.update(names)
    if "nb-batch" in chosen:
        _install_nb_batch()
    from ovnvnet.__main__ import run
    run()


if __name__ == "__main__":
    main(sys.argv[1:])
