"""Where the operator's seal key comes from (the seal itself: ``model/annotation.py``).

``OVNVNET_SEAL_KEY_FILE`` names a file holding the key (the agents always read it so). Otherwise
``OVNVNET_SEAL_SECRET=<namespace>/<name>`` names a Secret the operator gets, or creates with 32
random bytes under data key ``key`` if it does not exist yet (so a fresh install needs no manual
step; the agents mount that Secret). Neither set is a start-up error: an operator that cannot seal
would write results no agent acts on.
"""
from __future__ import annotations

import base64
import binascii
import logging
import secrets

from ovnvnet.kube.client import ApiError, KubeClient
from ovnvnet.model.annotation import SealKeyError, decode_seal_key, read_seal_key

__all__ = ["SECRET_KEY", "operator_seal_key", "secret_seal_key"]

log = logging.getLogger(__name__)

SECRET_KEY = "key"
KEY_BYTES = 32


async def secret_seal_key(kube: KubeClient, ref: tuple[str, str]) -> bytes:
    """Get the key from Secret ``ref`` (namespace, name; parsed by config.py), creating the Secret
    first if it does not exist."""
    namespace, name = ref
    path = f"/api/v1/namespaces/{namespace}/secrets/{name}"
    try:
        body = await kube.get(path)
    except ApiError as exc:
        if exc.status != 404:
            raise
        body = await _create(kube, namespace, name, path)
    encoded = ((body or {}).get("data") or {}).get(SECRET_KEY)
    where = f"Secret {namespace}/{name} (data key {SECRET_KEY!r})"
    if not isinstance(encoded, str):
        raise SealKeyError(f"{where} has no seal key; delete the Secret to have a new one made, "
                           f"or put {KEY_BYTES} random bytes there")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SealKeyError(f"{where} is not base64") from None
    return decode_seal_key(data, where)


async def _create(kube: KubeClient, namespace: str, name: str, path: str) -> dict:
    secret = {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": "ovnvnet", "app.kubernetes.io/component": "seal"}},
        "data": {SECRET_KEY: base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")},
    }
    try:
        created = await kube.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body=secret)
    except ApiError as exc:
        if exc.status != 409:   # another replica created it first: use theirs
            raise
        return await kube.get(path)
    log.info("created the seal key Secret %s/%s", namespace, name)
    return created


async def operator_seal_key(key_file: str | None, secret: tuple[str, str] | None, kube: KubeClient) -> bytes:
    """The key from the file if one is given, else from the Secret; neither is a SealKeyError."""
    if key_file or not secret:
        if not key_file:
            raise SealKeyError(
                "no seal key: set OVNVNET_SEAL_KEY_FILE to a file holding the key, or "
                "OVNVNET_SEAL_SECRET=<namespace>/<name> for a Secret the operator keeps it in "
                "(installed: <operator namespace>/ovnvnet-seal); the agents read the same key")
        return read_seal_key(key_file)
    return await secret_seal_key(kube, secret)
