"""Validating admission: the same checks the operator makes, answered at `kubectl apply` time.

The webhook never makes the cluster unusable: its configuration has failurePolicy Ignore, so if
it is unreachable pods are still admitted and the operator's own validation still answers with an
Event and `ovnNetworkError`. Enabled with OVNVNET_WEBHOOK=true; served over TLS with the files in
OVNVNET_WEBHOOK_CERT/KEY, or a self-signed certificate made at start.
"""
from __future__ import annotations

import datetime
import ipaddress
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ovnvnet.config import WebhookSettings
from ovnvnet.model.annotation import REQUEST_ANNOTATION, AnnotationError, parse_ovn_network
from ovnvnet.model.network import SpecError, parse_network_spec, spec_conflicts
from ovnvnet.model.selector import SelectorError, parse_selector
from ovnvnet.reconcile.network import overlapping
from ovnvnet.reconcile.pod import RequestRefused, validate_request
from ovnvnet.reconcile.state import State

# Refusals that are final for a new pod. A network that is not ready yet or is full is not a reason
# to refuse a pod: it waits and is attached when that changes.
REFUSED_AT_ADMISSION = {"InvalidRequest", "InvalidAddress", "UnknownNetwork", "AddressUnavailable",
                        "NamespaceNotAllowed"}


@dataclass(frozen=True)
class WebhookConfig:
    addr: str
    port: int
    host: str
    certfile: str
    pkeyfile: str

    @classmethod
    def prepare(cls, s: WebhookSettings) -> WebhookConfig:
        """The TLS files for settings `s` (config.py): theirs, or a self-signed certificate made now."""
        cert, key = s.certfile, s.pkeyfile
        if not (cert and key):
            cert, key = self_signed(s.host, Path(tempfile.mkdtemp(prefix="ovnvnet-webhook-")))
        return cls(s.addr, s.port, s.host, cert, key)


def self_signed(host: str, directory: Path) -> tuple[str, str]:
    """A self-signed certificate for `host` (also its own CA: kopf hands it to the API server)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        san: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(host))]
    except ValueError:
        san = [x509.DNSName(host)]
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
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


async def check_pod(state: State, body: dict, old: dict | None) -> None:
    """Raise Refused with the operator's own message if the pod's request is invalid."""
    meta = body.get("metadata") or {}
    raw = (meta.get("annotations") or {}).get(REQUEST_ANNOTATION)
    if raw is None:
        return
    if old is not None:
        old_raw = ((old.get("metadata") or {}).get("annotations") or {}).get(REQUEST_ANNOTATION)
        if old_raw == raw or meta.get("uid") in state.attached:
            return  # unchanged, or attached (a later change is reported by an Event, not refused)
    try:
        reqs = parse_ovn_network(raw)
    except AnnotationError as exc:
        raise Refused(str(exc)) from None
    namespace = meta.get("namespace") or ""
    labels = None
    if any((n := state.networks.get(r.network)) is not None and n.selector is not None for r in reqs):
        labels = await state.namespace_labels(namespace)
    try:
        validate_request(state, meta.get("uid") or "", reqs, namespace, labels)
    except RequestRefused as exc:
        if exc.reason in REFUSED_AT_ADMISSION:
            raise Refused(str(exc)) from None


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
    other = overlapping(state, name, spec)
    if other is not None:
        raise Refused(f"subnet {spec.subnet} overlaps network {other} ({state.networks[other].spec.subnet})")
