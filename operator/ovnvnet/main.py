"""Kopf registrations only; the logic lives in reconcile/.

Importing this module registers handlers and does nothing else. `python -m ovnvnet` (__main__.py)
reads the settings once and hands them to Kopf's memo: `memo.settings` (config.Settings) and
`memo.connection` (kube/connection.Connection, the process's one set of API credentials: Kopf
logs in with it through `login` below, the operator's KubeClient and the leader elector use it
too). The admission handlers are registered by `enable_admission()` when the webhook is enabled.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

import kopf

from ovnvnet import webhook
from ovnvnet.config import Settings
from ovnvnet.health import start_health_server
from ovnvnet.kube.client import ApiError, KubeClient
from ovnvnet.kube.connection import Connection
from ovnvnet.kube.seal import operator_seal_key
from ovnvnet.model.annotation import SealKeyError
from ovnvnet.ovn.nb import NbClient
from ovnvnet.reconcile import claims as claims_rec
from ovnvnet.reconcile import nad as nad_rec
from ovnvnet.reconcile import network as network_rec
from ovnvnet.reconcile import pod as pod_rec
from ovnvnet.reconcile import recovery
from ovnvnet.reconcile.errors import RetryLater
from ovnvnet.reconcile.podwatch import PodWatch, needs_handling
from ovnvnet.reconcile.state import State

log = logging.getLogger("ovnvnet")
# set once a startup has completed (the state rebuilt): `python -m ovnvnet` re-executes itself
# after a reactor failure only then; a failed startup (no seal key, ...) exits with its error
started = False
GROUP, VERSION, PLURAL = "ovnvnet.io", "v1", "virtualnetworks"


def plain(obj: Any) -> Any:
    """Kopf's bodies are read-only views: take a plain JSON-like copy."""
    if hasattr(obj, "items"):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


# A login a little before a bound token expires (the kubelet has rotated its file by then); a 401
# makes Kopf log in again at any time.
TOKEN_REFRESH_MARGIN = datetime.timedelta(minutes=5)


def connection_info(conn: Connection) -> kopf.ConnectionInfo:
    """Kopf's credentials from the process's Connection, the token read afresh."""
    token, expiration = None, None
    if conn.token is not None:
        conn.token.refresh(force=True)
        token = conn.token.current()
        expiry = conn.token.expiry() if conn.token.path else None
        now = datetime.datetime.now(datetime.UTC)
        if expiry is not None and expiry - TOKEN_REFRESH_MARGIN > now + datetime.timedelta(seconds=30):
            expiration = expiry - TOKEN_REFRESH_MARGIN
    return kopf.ConnectionInfo(
        server=conn.server, ca_path=conn.ca_file, ca_data=conn.ca_data, insecure=conn.insecure or None,
        certificate_path=conn.cert_file, certificate_data=conn.cert_data,
        private_key_path=conn.key_file, private_key_data=conn.key_data,
        token=token, default_namespace=conn.namespace, expiration=expiration)


@kopf.on.login(id="ovnvnet")
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    if "connection" not in memo:
        raise kopf.PermanentError("no API credentials in the memo: start the operator with `python -m ovnvnet`")
    return connection_info(memo.connection)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    if "settings" not in memo:
        raise kopf.PermanentError("no settings in the memo: start the operator with `python -m ovnvnet`")
    cfg: Settings = memo.settings
    settings.persistence.finalizer = "ovnvnet.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="ovnvnet.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="ovnvnet.io", key="last-handled-configuration")
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.watching.chunk_size = 500   # paginated initial listing: bounded memory with many pods
    if cfg.webhook is not None:
        if "webhook" not in memo:   # the TLS files: a certificate may be minted here, once
            memo.webhook = await asyncio.to_thread(webhook.WebhookConfig.prepare, cfg.webhook)
        hook: webhook.WebhookConfig = memo.webhook
        settings.admission.server = hook.server()
        if hook.service is None:   # URL registration: Kopf creates the configuration
            settings.admission.managed = hook.configuration
    if "state" not in memo:
        kube = KubeClient(memo.connection)
        try:
            seal_key = await operator_seal_key(cfg.seal_key_file, cfg.seal_secret, kube)
        except SealKeyError as exc:
            await kube.close()
            raise kopf.PermanentError(str(exc)) from exc
        except ApiError as exc:
            await kube.close()
            raise kopf.TemporaryError(f"reading the seal key Secret {cfg.seal_secret} failed: {exc}",
                                      delay=2) from exc
        nb = NbClient(cfg.nb_remote, timeout=cfg.nb_timeout, ssl_key=cfg.ssl_key, ssl_cert=cfg.ssl_cert,
                      ssl_ca=cfg.ssl_ca)
        memo.state = State(cfg, kube, nb, seal_key=seal_key)
        memo.health = await start_health_server(memo.state, cfg.health_port)
    state: State = memo.state
    # the NB replica syncs (seconds with many ports) while the API records are read
    connecting = asyncio.create_task(asyncio.to_thread(state.nb.connect)) if state.nb.api is None else None
    try:
        resource_version, candidates, nb_read, deferred = await recovery.rebuild(state, nb_ready=connecting)
    except ConnectionError as exc:
        raise kopf.TemporaryError(str(exc), delay=2) from exc
    except Exception as exc:
        raise kopf.TemporaryError(f"rebuild from records failed: {exc}", delay=2) from exc
    # the records are reserved: new pods are served now, each once the networks it names have
    # their pods' results restored (recovery.finish_rebuild, State.wait_rebuilt)
    watch = PodWatch(state)
    memo.tasks = [asyncio.create_task(watch.run(resource_version))]
    for body in candidates:
        if needs_handling(state, body):
            watch.dispatch(body, None)
    try:
        candidates = await recovery.finish_rebuild(state, deferred, candidates)
    except Exception as exc:
        for task in memo.tasks:
            task.cancel()
        raise kopf.TemporaryError(f"rebuild from records failed: {exc}", delay=2) from exc
    state.ready.set()
    global started
    started = True
    state.claims_dirty.clear()   # the rebuild's holds: the claim watch's first list compares every claim
    memo.tasks += [asyncio.create_task(_retry_loop(state)), asyncio.create_task(_sweep_loop(state)),
                   asyncio.create_task(_first_repair(state, nb_read)),
                   asyncio.create_task(claims_rec.ClaimWatch(state).run()),
                   asyncio.create_task(claims_rec.report_loop(state))]
    if memo.get("insights") is not None and memo.get("restart") is not None:   # `python -m ovnvnet`
        memo.tasks.append(asyncio.create_task(_watch_served(memo.insights, memo.restart)))
    if cfg.webhook is not None and cfg.webhook.service is not None:   # the manifests' registration
        memo.tasks.append(asyncio.create_task(webhook.keep_registered(state.kube, memo.webhook)))
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
        except TimeoutError:
            pass
        state.wake.clear()
        if state.claim_problems:   # claims waiting for their requested addresses (woken by releases)
            await claims_rec.rebind(state)
        if state.pending:
            try:
                await pod_rec.retry_pending(state)
            except Exception:  # next round (logged)
                log.exception("retrying pending pods failed")


async def _first_repair(state: State, nb_read: Any) -> None:
    await nad_rec.sweep_nads(state)
    try:
        await recovery.repair_nb(state, nb_read)
    except Exception:  # the periodic sweep repairs what is left (logged)
        log.exception("NB repair at start failed")


async def _watch_served(insights: Any, restart: asyncio.Event, grace: float = 3.0) -> None:
    """Kopf resolves the resources it watches from API discovery when it starts, and again only
    when a CRD changes. Started while a restarting API server still answers 404 for ovnvnet.io (it
    has not installed the CRD's routes yet), Kopf logs "Unresolved resources cannot be served" and
    never watches VirtualNetworks, though nothing failed. Level check: VirtualNetworks not watched
    for `grace` seconds after Kopf's first resource scan sets `restart` (Kopf's stop flag);
    `python -m ovnvnet` then waits until discovery serves them and re-executes in place."""
    await insights.ready_resources.wait()
    missing_since: float | None = None
    while True:
        now = asyncio.get_running_loop().time()
        if any(r.group == GROUP and r.plural == PLURAL for r in insights.watched_resources):
            missing_since = None
        elif missing_since is None:
            missing_since = now
        elif now - missing_since >= grace:
            log.error("Kopf does not watch %s.%s (unresolved when it scanned the API: the API server "
                      "did not serve the group); re-executing in place", PLURAL, GROUP)
            restart.set()
            return
        await asyncio.sleep(0.5)


async def _sweep_loop(state: State) -> None:
    while True:
        await asyncio.sleep(state.settings.sweep_interval)
        try:
            await recovery.sweep(state)
        except Exception:  # next round (logged)
            log.exception("sweep failed")


# ---------------------------------------------------------------------------- VirtualNetworks
@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def virtualnetwork_ensure(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    try:
        await network_rec.ensure_network(memo.state, plain(body), logger)
    except RetryLater as exc:   # the project's transient failure, in Kopf's terms
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def virtualnetwork_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    try:
        await network_rec.delete_network(memo.state, plain(body))
    except RetryLater as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc


# ---------------------------------------------------------------------------- pods
# Pods are watched by reconcile/podwatch.py (one list shared with the rebuild, then a watch), not
# through Kopf: see that module for why.


# ---------------------------------------------------------------------------- admission
# Registered by enable_admission() (OVNVNET_WEBHOOK=true), before Kopf runs.
def _check_writer(memo: kopf.Memo, userinfo: Any, body: kopf.Body, old: Any) -> None:
    try:
        webhook.check_writer(memo.settings.webhook, plain(userinfo), plain(body), plain(old) if old else None)
    except webhook.Refused as exc:
        raise kopf.AdmissionError(str(exc), code=403) from exc


async def validate_pod(body: kopf.Body, userinfo: Any, memo: kopf.Memo, old: Any = None, **_: Any) -> None:
    _check_writer(memo, userinfo, body, old)
    state: State | None = memo.get("state")
    if state is None or not state.ready.is_set():
        return
    try:
        await webhook.check_pod(state, plain(body), plain(old) if old else None)
    except webhook.Refused as exc:
        raise kopf.AdmissionError(str(exc), code=400) from exc


async def validate_pod_status(body: kopf.Body, userinfo: Any, memo: kopf.Memo, old: Any = None, **_: Any) -> None:
    """pods/status can change metadata too (the API server keeps only spec and ownerReferences)."""
    _check_writer(memo, userinfo, body, old)


async def validate_virtualnetwork(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    state: State | None = memo.get("state")
    if state is None or not state.ready.is_set():
        return
    try:
        webhook.check_network(state, plain(body))
    except webhook.Refused as exc:
        raise kopf.AdmissionError(str(exc), code=400) from exc


_admission_enabled = False


def enable_admission() -> None:
    """Register the validating handlers in Kopf's default registry (once)."""
    global _admission_enabled
    if _admission_enabled:
        return
    kopf.on.validate("", "v1", "pods", id="ovnnetwork", operations=["CREATE", "UPDATE"],
                     ignore_failures=True)(validate_pod)
    kopf.on.validate("", "v1", "pods", id="ownedannotations", subresource="status", operations=["UPDATE"],
                     ignore_failures=True)(validate_pod_status)
    kopf.on.validate(GROUP, VERSION, PLURAL, id="virtualnetwork", operations=["CREATE", "UPDATE"],
                     ignore_failures=True)(validate_virtualnetwork)
    _admission_enabled = True
