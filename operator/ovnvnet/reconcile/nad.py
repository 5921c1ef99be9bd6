"""NetworkAttachmentDefinitions: one per VirtualNetwork, published for Multus.

Where and under which name: in ONE namespace, ``Settings.nad_namespace`` (default: the operator's
own, ``ovnvnet-system``), named after the network. Why one namespace: a VirtualNetwork is cluster
scoped, and who may attach is its ``namespaceSelector``'s business (checked by the operator on
every request, whatever the form), not the NAD's placement; one namespace needs no namespace watch,
no copy per namespace to keep in step, and RBAC on NADs in that namespace only (a Role, not a
ClusterRole). It is also what makes a ``k8s.v1.cni.cncf.io/networks`` element ovnvnet's without
any lookup: ``<nad_namespace>/<name>`` is the VirtualNetwork ``<name>``
(``model/annotation.selection_requests``). Multus must be allowed to read it: with Multus's
``namespaceIsolation`` add the namespace to its ``globalNamespaces``.

Ownership: the operator only ever changes or deletes a NAD carrying its labels
(label ``app.kubernetes.io/managed-by=ovnvnet`` and annotation ``ovnvnet.io/network=<name>``); it also carries an
ownerReference to the VirtualNetwork (the API server's garbage collector removes it if the
operator is gone when the network is deleted). A NAD of that name it does not own is left as it
is, and the network says so in a Warning Event. The CNI configuration names the network:
``{"cniVersion": "0.4.0", "name": <network>, "type": "ovn-k8s-cni-overlay", "capabilities":
{"ips": true, "mac": true}}`` (so Multus passes an element's ``ips``/``mac`` as ``runtimeConfig``, which
the agent checks against the operator's result).

Converged on every network create/resume/update (a NAD edited by hand is put back), deleted
with the network, and at start NADs the operator owns whose network is gone are deleted. A
missing NAD CRD (Multus not installed) is logged and skipped, never an error of the network.

Opt-out per network: ``spec.multus: false`` (model/network.py; absent means true). The operator
then publishes no NAD and deletes the one it published (owned, by UID, as above; a NAD it does
not own is still left alone), and a ``k8s.v1.cni.cncf.io/networks`` element naming the network is
refused in ``ovnNetworkError`` + Event (reconcile/pod.validate_request). Setting it back to true
publishes the NAD again.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from ovnvnet.kube.client import ApiError, retry
from ovnvnet.reconcile.errors import RetryLater
from ovnvnet.reconcile.state import State

log = logging.getLogger(__name__)

GROUP = "k8s.cni.cncf.io"
MANAGED_BY = "app.kubernetes.io/managed-by"
NETWORK_ANNOTATION = "ovnvnet.io/network"   # an annotation: label values stop at 63 characters
CNI_TYPE = "ovn-k8s-cni-overlay"
CNI_VERSION = "0.4.0"


def nad_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{GROUP}/v1/namespaces/{namespace}/network-attachment-definitions"
    return f"{base}/{name}" if name else base


def cni_config(network: str) -> str:
    return json.dumps({"cniVersion": CNI_VERSION, "name": network, "type": CNI_TYPE,
                       "capabilities": {"ips": True, "mac": True}})


def desired(namespace: str, network: dict) -> dict[str, Any]:
    meta = network["metadata"]
    return {
        "apiVersion": f"{GROUP}/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {
            "name": meta["name"], "namespace": namespace,
            "labels": {MANAGED_BY: "ovnvnet"}, "annotations": {NETWORK_ANNOTATION: meta["name"]},
            "ownerReferences": [{"apiVersion": "ovnvnet.io/v1", "kind": "VirtualNetwork",
                                 "name": meta["name"], "uid": meta.get("uid", "")}],
        },
        "spec": {"config": cni_config(meta["name"])},
    }


def owned(nad: dict, network: str) -> bool:
    meta = nad.get("metadata") or {}
    return ((meta.get("labels") or {}).get(MANAGED_BY) == "ovnvnet"
            and (meta.get("annotations") or {}).get(NETWORK_ANNOTATION) == network)


def _crd_missing(exc: ApiError) -> bool:
    return exc.status == 404 and "the server could not find the requested resource" in str(exc)


async def ensure_nad(state: State, network: dict) -> None:
    """Create or converge the network's NAD (never one the operator does not own)."""
    namespace = state.settings.nad_namespace
    name = network["metadata"]["name"]
    if not namespace or not network["metadata"].get("uid"):
        return
    applied = state.networks.get(name)
    if applied is not None and not applied.spec.multus:
        await delete_nad(state, name)
        return
    want = desired(namespace, network)
    try:
        try:
            have = await retry(lambda: state.kube.get(nad_path(namespace, name)))
        except ApiError as exc:
            if exc.status != 404 or _crd_missing(exc):
                raise
            await retry(lambda: state.kube.request("POST", nad_path(namespace), body=want))
            log.info("network %s: NetworkAttachmentDefinition %s/%s created", name, namespace, name)
            return
        if not owned(have, name):
            message = (f"NetworkAttachmentDefinition {namespace}/{name} exists and is not ovnvnet's (no label "
                       f"{MANAGED_BY}=ovnvnet): left as it is; Multus requests for {namespace}/{name} still "
                       f"ask for this network")
            await _warn(state, network, message)
            return
        meta = have.get("metadata") or {}
        if (have.get("spec") or {}).get("config") == want["spec"]["config"] and \
                meta.get("ownerReferences") == want["metadata"]["ownerReferences"]:
            return
        patch = {"metadata": {"uid": meta.get("uid"), "ownerReferences": want["metadata"]["ownerReferences"],
                              "labels": want["metadata"]["labels"],
                              "annotations": want["metadata"]["annotations"]},
                 "spec": want["spec"]}
        await retry(lambda: state.kube.merge_patch(nad_path(namespace, name), patch))
        log.info("network %s: NetworkAttachmentDefinition %s/%s updated", name, namespace, name)
    except ApiError as exc:
        if _crd_missing(exc):
            log.warning("network %s: no NetworkAttachmentDefinition published: the CRD is not installed "
                        "(Multus)", name)
            return
        raise RetryLater(f"publishing NetworkAttachmentDefinition {namespace}/{name} failed: {exc}",
                         delay=2) from exc


async def delete_nad(state: State, name: str) -> None:
    """Delete the network's NAD if the operator owns it (by UID: never a successor)."""
    namespace = state.settings.nad_namespace
    if not namespace:
        return
    try:
        have = await retry(lambda: state.kube.get(nad_path(namespace, name)))
        if not owned(have, name):
            return
        uid = (have.get("metadata") or {}).get("uid")
        await retry(lambda: state.kube.request("DELETE", nad_path(namespace, name),
                                               body={"preconditions": {"uid": uid}}))
        log.info("network %s: NetworkAttachmentDefinition %s/%s deleted", name, namespace, name)
    except ApiError as exc:
        if exc.status in (404, 409):
            return
        raise RetryLater(f"deleting NetworkAttachmentDefinition {namespace}/{name} failed: {exc}",
                         delay=2) from exc


async def sweep_nads(state: State) -> None:
    """Delete the NADs the operator owns whose VirtualNetwork no longer exists (deleted while
    the operator was down)."""
    namespace = state.settings.nad_namespace
    if not namespace:
        return
    try:
        async for nad in state.kube.list_all(nad_path(namespace),
                                             params={"labelSelector": f"{MANAGED_BY}=ovnvnet"}):
            name = (nad.get("metadata") or {}).get("name", "")
            if owned(nad, name) and name not in state.known_networks:
                await delete_nad(state, name)
    except (ApiError, RetryLater) as exc:
        log.warning("NetworkAttachmentDefinitions in %s not swept: %s", namespace, exc)


async def _warn(state: State, network: dict, message: str) -> None:
    log.warning("network %s: %s", network["metadata"]["name"], message)
    body = {"apiVersion": "ovnvnet.io/v1", "kind": "VirtualNetwork", "metadata": network["metadata"]}
    try:
        await state.kube.post_event(body, type_="Warning", reason="NetworkAttachmentNotOwned", message=message)
    except Exception as exc:  # noqa: BLE001 - an event is best effort
        log.warning("could not post event on network %s: %s", network["metadata"]["name"], exc)
