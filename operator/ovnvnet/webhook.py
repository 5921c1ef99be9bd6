"""Validating admission: the operator's own checks, answered at `kubectl apply` time, and the rule
that only the operator writes the annotations it owns.

Two ways to register (settings: config.WebhookSettings, read once at start):

- **As installed** (`OVNVNET_WEBHOOK_SERVICE=<namespace>/<name>`): the manifests ship the
  ValidatingWebhookConfiguration (`OVNVNET_WEBHOOK_CONFIGURATION`, default `ovnvnet.io`) whose
  webhooks name that Service. The operator serves TLS with a certificate for the Service's DNS
  name (self-signed at start unless `OVNVNET_WEBHOOK_CERT/KEY` are given), patches its CA into the
  `caBundle` of every webhook of that configuration that names the Service, and labels its own pod
  `ovnvnet.io/webhook=serving` (removing the label from any other pod of its namespace), so the
  Service sends requests to the Lease holder only: a standby does not serve. Needs `get, patch` on
  that one configuration (RBAC restricted by resourceNames), never `create`.
- **By URL** (development, the local stack: `OVNVNET_WEBHOOK_HOST`, or a specific
  `OVNVNET_WEBHOOK_ADDR`): Kopf creates and fills the configuration with `https://HOST:PORT/...`.
  Listening on 0.0.0.0 without a HOST is refused: there is no address to register.

Either way every webhook has failurePolicy Ignore: an operator that is down or not the leader never
blocks a pod, and the operator's own validation still answers with an Event and `ovnNetworkError`.
The ownership rule is then backed by the result seal (the agent and the rebuild act only on a sealed
result), which the webhook does not replace.

Ownership rule: on CREATE and UPDATE of a pod (and of `pods/status`), an identity that is not the
operator's (`OVNVNET_OPERATOR_USERS`, comma-separated usernames; by default the ServiceAccount
`system:serviceaccount:$POD_NAMESPACE:$OVNVNET_SERVICE_ACCOUNT`) may not set, change or remove
`ovnIfaceList`, `ovnNetworkError`, `ovnNetworkErrorRetry`, `ovnvnet.io/seal`, nor an `ovn`
annotation that holds a result (has `gateway_ip`). `ovn` as a request and `ovnNetwork` are the
creator's.
"""
from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovnvnet.config import WebhookSettings
from ovnvnet.model.annotation import LEGACY_ANNOTATION as LEGACY
from ovnvnet.model.annotation import (
    NETWORKS_ANNOTATION,
    OPERATOR_ANNOTATIONS,
    REQUEST_ANNOTATION,
    AnnotationError,
    is_legacy_result,
    parse_network_selection,
    pod_requests,
)
from ovnvnet.model.network import SpecError, parse_network_spec, spec_conflicts
from ovnvnet.model.selector import SelectorError, parse_selector
from ovnvnet.reconcile.network import overlapping
from ovnvnet.reconcile.pod import RequestRefused, describe, plan_change, validate_request
from ovnvnet.reconcile.state import PodRecord, State

log = logging.getLogger("ovnvnet.webhook")

# Refusals that are final for a new pod. A network that is not ready yet or is full is not a reason
# to refuse a pod: it waits and is attached when that changes.
REFUSED_AT_ADMISSION = {"InvalidRequest", "InvalidAddress", "UnknownNetwork", "AddressUnavailable",
                        "NamespaceNotAllowed", "MultusDisabled"}

# Annotations only the operator writes (the contract, model/annotation.py); `ovn` is owned only
# while it holds a result.
OWNED = OPERATOR_ANNOTATIONS
SERVING_LABEL = "ovnvnet.io/webhook"
SERVING_VALUE = "serving"
RECHECK_INTERVAL = 60.0


@dataclass(frozen=True)
class WebhookConfig:
    """The settings (config.WebhookSettings) with their TLS files in place."""
    addr: str
    port: int
    certfile: str
    pkeyfile: str
    cafile: str
    operator_users: frozenset[str]
    service: tuple[str, str] | None = None       # (namespace, name): registered by the manifests
    configuration: str = "ovnvnet.io"
    host: str | None = None                       # URL registration (Kopf-managed configuration)
    pod: tuple[str, str] | None = None            # this replica's pod, labelled while it serves

    @classmethod
    def prepare(cls, s: WebhookSettings) -> WebhookConfig:
        """The TLS files for settings `s`: theirs, or a self-signed certificate made now for the
        Service's DNS names (installed) or for the registered host."""
        cert, key, ca = s.certfile, s.pkeyfile, s.cafile
        if not (cert and key):
            names = service_dns_names(*s.service) if s.service else [s.host or s.addr]
            cert, key = self_signed(names, Path(tempfile.mkdtemp(prefix="ovnvnet-webhook-")))
            ca = cert
        return cls(s.addr, s.port, cert, key, ca or cert, s.operator_users, s.service, s.configuration,
                   s.host, s.pod)

    def server(self) -> Any:
        import kopf
        # host: what Kopf puts in a URL registration; unused when the manifests register the Service
        return kopf.WebhookServer(addr=self.addr, port=self.port, host=self.host or self.addr,
                                  certfile=self.certfile, pkeyfile=self.pkeyfile, cafile=self.cafile)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def service_dns_names(namespace: str, name: str) -> list[str]:
    """The names the API server may verify: it dials `<name>.<namespace>.svc`."""
    return [f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local", f"{name}.{namespace}", name]


def self_signed(names: list[str] | str, directory: Path) -> tuple[str, str]:
    """A self-signed certificate for `names` (also its own CA: it is the caBundle)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    names = [names] if isinstance(names, str) else names
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    san = [x509.IPAddress(ipaddress.ip_address(n)) if _is_ip(n) else x509.DNSName(n) for n in names]
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return str(cert_path), str(key_path)


class Refused(Exception):
    pass


# ---------------------------------------------------------------------------- ownership
def _annotations(obj: Mapping | None) -> Mapping:
    meta = (obj or {}).get("metadata") or {}
    ann = meta.get("annotations") if isinstance(meta, Mapping) else None
    return ann if isinstance(ann, Mapping) else {}


def _holds_result(raw: Any) -> bool:
    try:
        return is_legacy_result(raw)   # total already; kept safe for the webhook's sake
    except Exception:  # noqa: BLE001 - a value the parser cannot read is not a result
        return False


def owned_changes(body: Mapping, old: Mapping | None) -> list[str]:
    """The operator-owned annotations that `body` sets, changes or removes relative to `old`."""
    new_ann, old_ann = _annotations(body), _annotations(old)
    changed = [k for k in OWNED if new_ann.get(k) != old_ann.get(k)]
    new_ovn, old_ovn = new_ann.get(LEGACY), old_ann.get(LEGACY)
    if new_ovn != old_ovn and (_holds_result(new_ovn) or _holds_result(old_ovn)):
        changed.append(f"{LEGACY} (a result)")
    return changed


def check_writer(cfg: WebhookConfig | WebhookSettings, userinfo: Mapping | None, body: Mapping,
                 old: Mapping | None) -> None:
    """Raise Refused if an identity other than the operator's writes what the operator owns."""
    user = str((userinfo or {}).get("username") or "")
    if user in cfg.operator_users:
        return
    changed = owned_changes(body, old)
    if changed:
        verb = "set" if old is None else "set, change or remove"
        raise Refused(f"annotation{'s' if len(changed) > 1 else ''} {', '.join(changed)}: written only by "
                      f"the ovnvnet operator; {user or 'an anonymous user'} may not {verb} "
                      f"{'them' if len(changed) > 1 else 'it'}")


# ---------------------------------------------------------------------------- the operator's checks
async def check_pod(state: State, body: dict, old: dict | None) -> None:
    """Raise Refused with the operator's own message if the pod's request is invalid: its
    ``ovnNetwork``, or its ovnvnet elements of ``k8s.v1.cni.cncf.io/networks`` (a ``networks``
    annotation naming nothing of ovnvnet's is Multus's to judge, never refused here). On UPDATE of
    an attached pod whose request changed, the change is checked as the operator will (hot-plug)."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    raw = (annotations.get(REQUEST_ANNOTATION), annotations.get(NETWORKS_ANNOTATION))
    if old is not None:
        old_ann = (old.get("metadata") or {}).get("annotations") or {}
        old_raw = (old_ann.get(REQUEST_ANNOTATION), old_ann.get(NETWORKS_ANNOTATION))
        if old_raw == raw:
            return  # unchanged
        record = state.attached.get(meta.get("uid") or "")
        if record is not None:
            await _check_change(state, body, record)
            return
    if raw == (None, None):
        return
    namespace = meta.get("namespace") or ""
    nad_namespace = state.settings.nad_namespace
    try:
        asked = pod_requests(annotations, namespace, nad_namespace)
    except AnnotationError as exc:
        if raw[0] is None and not _names_ovnvnet(raw[1], namespace, nad_namespace):
            return
        raise Refused(str(exc)) from None
    if asked is None:
        return
    reqs = asked
    namespace = meta.get("namespace") or ""
    labels = None
    if any((n := state.networks.get(r.network)) is not None and n.selector is not None for r in reqs):
        labels = await state.namespace_labels(namespace)
    try:
        validate_request(state, meta.get("uid") or "", reqs, namespace, labels,
                         via_networks=raw[0] is None)
    except RequestRefused as exc:
        if exc.reason in REFUSED_AT_ADMISSION:
            raise Refused(str(exc)) from None


# A change of an attached pod (hot-plug) is refused for these; an address held may be one the
# change itself frees (moved between the pod's interfaces): the operator judges that one.
REFUSED_CHANGES = (REFUSED_AT_ADMISSION - {"AddressUnavailable"}) | {"ChangeRefused"}


async def _check_change(state: State, body: dict, record: PodRecord) -> None:
    """An attached pod's request changed: refuse what the operator would refuse (the request
    unreadable, a default route moved, the last interface removed, an added interface's network
    or address invalid), with the operator's message. A terminating pod is not changed at all."""
    meta = body.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return
    annotations = meta.get("annotations") or {}
    namespace = meta.get("namespace") or ""
    try:
        asked, problem = pod_requests(annotations, namespace, state.settings.nad_namespace), None
    except AnnotationError as exc:
        asked, problem = None, exc
    if record.legacy and asked is None and problem is None:
        return
    try:
        change = plan_change(record, asked, problem)
        reqs = change.added
        labels = None
        if any((n := state.networks.get(r.network)) is not None and n.selector is not None for r in reqs):
            labels = await state.namespace_labels(namespace)
        validate_request(state, meta.get("uid") or "", reqs, namespace, labels,
                         via_networks=annotations.get(REQUEST_ANNOTATION) is None)
    except RequestRefused as exc:
        if exc.reason in REFUSED_CHANGES:
            raise Refused(f"{exc} (a change of the running pod's interfaces; it keeps {describe(record.results)})"
                          ) from None


def _names_ovnvnet(raw: object, namespace: str, nad_namespace: str | None) -> bool:
    """Whether a ``networks`` annotation has an element in the NAD namespace (parsed or not)."""
    if not nad_namespace:
        return False
    try:
        return any(s.namespace == nad_namespace for s in parse_network_selection(raw, namespace))
    except AnnotationError:
        return False


def check_network(state: State, body: dict) -> None:
    name = (body.get("metadata") or {}).get("name") or ""
    try:
        spec = parse_network_spec(body.get("spec") or {})
        parse_selector((body.get("spec") or {}).get("namespaceSelector"))
    except (SpecError, SelectorError) as exc:
        raise Refused(str(exc)) from None
    current = state.networks.get(name)
    if current is not None and current.spec != spec:
        held = {ip: h.pod for ip, h in current.allocator.holders().items()}
        conflicts = spec_conflicts(spec, held, current.spec)
        if conflicts:
            raise Refused("; ".join(conflicts))
    overlap = overlapping(state, name, spec)
    if overlap is not None:
        raise Refused(overlap)


# ---------------------------------------------------------------------------- registration (installed)
def ca_bundle(cfg: WebhookConfig) -> str:
    return base64.b64encode(Path(cfg.cafile).read_bytes()).decode("ascii")


async def patch_ca_bundle(kube: Any, cfg: WebhookConfig) -> int:
    """Put this replica's CA into every webhook of the shipped configuration that names the
    Service; returns how many were changed. A configuration that names the Service nowhere is an
    install error, raised as such."""
    assert cfg.service is not None
    path = f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{cfg.configuration}"
    current = await kube.get(path)
    bundle = ca_bundle(cfg)
    namespace, name = cfg.service
    ops: list[dict] = []
    ours = 0
    for i, hook in enumerate(current.get("webhooks") or []):
        svc = (hook.get("clientConfig") or {}).get("service") or {}
        if (svc.get("namespace"), svc.get("name")) != (namespace, name):
            continue
        ours += 1
        if (hook.get("clientConfig") or {}).get("caBundle") != bundle:
            ops += [{"op": "test", "path": f"/webhooks/{i}/name", "value": hook.get("name")},
                    {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": bundle}]
    if not ours:
        raise LookupError(f"ValidatingWebhookConfiguration {cfg.configuration} has no webhook that names "
                          f"Service {namespace}/{name}")
    if ops:
        await kube.json_patch(path, ops)
    return len(ops) // 2


async def mark_serving(kube: Any, cfg: WebhookConfig) -> None:
    """Label this replica's pod as the one serving, and no other pod of its namespace."""
    if cfg.pod is None:
        return
    namespace, me = cfg.pod
    listed = await kube.request("GET", f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": SERVING_LABEL})
    for pod in (listed or {}).get("items") or []:
        name = (pod.get("metadata") or {}).get("name")
        if name and name != me:
            await kube.merge_patch(f"/api/v1/namespaces/{namespace}/pods/{name}",
                                   {"metadata": {"labels": {SERVING_LABEL: None}}})
    await kube.merge_patch(f"/api/v1/namespaces/{namespace}/pods/{me}",
                           {"metadata": {"labels": {SERVING_LABEL: SERVING_VALUE}}})


async def keep_registered(kube: Any, cfg: WebhookConfig, interval: float = RECHECK_INTERVAL) -> None:
    """Register (caBundle, pod label) now and re-check every `interval` seconds, so a re-applied
    configuration gets its caBundle back; each failure is logged as an error and retried."""
    delay = 1.0
    while True:
        try:
            changed = await patch_ca_bundle(kube, cfg)
            await mark_serving(kube, cfg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the webhook fails open; say why, retry
            log.error("webhook registration in ValidatingWebhookConfiguration %s failed (pods are admitted "
                      "unchecked until it succeeds): %s", cfg.configuration, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        if changed:
            log.info("webhook registered: caBundle set on %d webhook(s) of %s, Service %s",
                     changed, cfg.configuration, "/".join(cfg.service or ()))
        delay = 1.0
        await asyncio.sleep(interval)
