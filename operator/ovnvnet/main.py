"""Kopf registrations only; the logic lives in reconcile/."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from ovnvnet.config import ConfigError, Settings
from ovnvnet.health import start_health_server
from ovnvnet.kube.client import KubeClient
from ovnvnet.ovn.nb import NbClient
from ovnvnet.reconcile import gc
from ovnvnet.reconcile import network as network_rec
from ovnvnet.reconcile import pod as pod_rec
from ovnvnet.reconcile.podwatch import PodWatch, needs_handling
from ovnvnet.reconcile.state import State
from ovnvnet import webhook

WEBHOOK = webhook.WebhookConfig.from_env()

log = logging.getLogger("ovnvnet")
GROUP, VERSION, PLURAL = "ovnvnet.io", "v1", "virtualnetworks"


def plain(obj: Any) -> Any:
    """Kopf's bodies are read-only views: take a plain JSON-like copy."""
    if hasattr(obj, "items"):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = "ovnvnet.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="ovnvnet.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="ovnvnet.io", key="last-handled-configuration")
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.watching.chunk_size = 500   # paginated initial listing: bounded memory with many pods
    if WEBHOOK is not None:
        settings.admission.server = WEBHOOK.server()
        if WEBHOOK.service is None:   # URL registration: Kopf creates the configuration
            settings.admission.managed = WEBHOOK.configuration
    try:
        cfg = Settings.from_env()
    except ConfigError as exc:
        raise kopf.PermanentError(str(exc)) from exc
    if "state" not in memo:
        nb = NbClient(cfg.nb_remote, timeout=cfg.nb_timeout, ssl_key=cfg.ssl_key, ssl_cert=cfg.ssl_cert,
                      ssl_ca=cfg.ssl_ca)
        memo.state = State(cfg, KubeClient(), nb)
        memo.health = await start_health_server(memo.state, cfg.health_port)
    state: State = memo.state
    # the NB replica syncs (seconds with many ports) while the API records are read
    connecting = asyncio.create_task(asyncio.to_thread(state.nb.connect)) if state.nb.api is None else None
    try:
        resource_version, candidates, nb_read = await gc.rebuild(state, nb_ready=connecting)
    except ConnectionError as exc:
        raise kopf.TemporaryError(str(exc), delay=2) from exc
    except Exception as exc:
        raise kopf.TemporaryError(f"rebuild from records failed: {exc}", delay=2) from exc
    state.ready.set()
    watch = PodWatch(state)
    memo.tasks = [asyncio.create_task(_retry_loop(state)), asyncio.create_task(_sweep_loop(state)),
                  asyncio.create_task(watch.run(resource_version)),
                  asyncio.create_task(_first_repair(state, nb_read))]
    if WEBHOOK is not None and WEBHOOK.service is not None:   # the manifests' registration
        memo.tasks.append(asyncio.create_task(webhook.keep_registered(state.kube, WEBHOOK)))
    for body in candidates:
        if needs_handling(state, body):
            watch.dispatch(body, None)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.get("tasks", []):
        task.cancel()
    state: State | None = memo.get("state")
    if state is not None:
        await state.status.drain(timeout=5)
        await state.status.close()
        await state.kube.close()
        await asyncio.to_thread(state.nb.close)
    if memo.get("health") is not None:
        await memo.health.cleanup()


async def _retry_loop(state: State) -> None:
    while True:
        try:
            await asyncio.wait_for(state.wake.wait(), timeout=state.settings.retry_interval)
        except asyncio.TimeoutError:
            pass
        state.wake.clear()
        if state.pending:
            try:
                await pod_rec.retry_pending(state)
            except Exception:  # noqa: BLE001 - next round
                log.exception("retrying pending pods failed")


async def _first_repair(state: State, nb_read: Any) -> None:
    try:
        await gc.repair_nb(state, nb_read)
    except Exception:  # noqa: BLE001 - the periodic sweep repairs what is left
        log.exception("NB repair at start failed")


async def _sweep_loop(state: State) -> None:
    while True:
        await asyncio.sleep(state.settings.sweep_interval)
        try:
            await gc.sweep(state)
        except Exception:  # noqa: BLE001 - next round
            log.exception("sweep failed")


# ---------------------------------------------------------------------------- VirtualNetworks
@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def virtualnetwork_ensure(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    await network_rec.ensure_network(memo.state, plain(body), logger)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def virtualnetwork_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await network_rec.delete_network(memo.state, plain(body))


# ---------------------------------------------------------------------------- pods
# Pods are watched by reconcile/podwatch.py (one list shared with the rebuild, then a watch), not
# through Kopf: see that module for why.


# ---------------------------------------------------------------------------- admission
if WEBHOOK is not None:
    @kopf.on.validate("", "v1", "pods", id="ovnnetwork", operations=["CREATE", "UPDATE"], ignore_failures=True)
    async def validate_pod(body: kopf.Body, old: Any, userinfo: Any, memo: kopf.Memo, **_: Any) -> None:
        try:
            webhook.check_writer(WEBHOOK, plain(userinfo), plain(body), plain(old) if old else None)
        except webhook.Refused as exc:
            raise kopf.AdmissionError(str(exc), code=403)
        state: State | None = memo.get("state")
        if state is None or not state.ready.is_set():
            return
        try:
            await webhook.check_pod(state, plain(body), plain(old) if old else None)
        except webhook.Refused as exc:
            raise kopf.AdmissionError(str(exc), code=400)

    # pods/status can change metadata too (the API server keeps only spec and ownerReferences)
    @kopf.on.validate("", "v1", "pods", id="ownedannotations", subresource="status", operations=["UPDATE"],
                      ignore_failures=True)
    async def validate_pod_status(body: kopf.Body, old: Any, userinfo: Any, **_: Any) -> None:
        try:
            webhook.check_writer(WEBHOOK, plain(userinfo), plain(body), plain(old) if old else None)
        except webhook.Refused as exc:
            raise kopf.AdmissionError(str(exc), code=403)

    @kopf.on.validate(GROUP, VERSION, PLURAL, id="virtualnetwork", operations=["CREATE", "UPDATE"],
                      ignore_failures=True)
    async def validate_virtualnetwork(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        state: State | None = memo.get("state")
        if state is None or not state.ready.is_set():
            return
        try:
            webhook.check_network(state, plain(body))
        except webhook.Refused as exc:
            raise kopf.AdmissionError(str(exc), code=400)
