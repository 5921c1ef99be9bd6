"""The admission webhook as the manifests install it, on the real API server.

The rendered base manifests are applied: the Service `ovnvnet-webhook`, the
ValidatingWebhookConfiguration `ovnvnet.io` naming it (no caBundle), the RBAC. The operator runs as
a process under its ServiceAccount, with the environment the Deployment gives its container
(fieldRefs resolved for a Pod object `ovnvnet-operator-0` that stands for its pod). What the harness
plays, because there is no node: the endpoints controller (an Endpoints object for the pods the
Service selects) and the pod network (podnet.py: an address in a namespace of the test's own,
relayed byte for byte to the operator's webhook port on loopback).

What this proves: the operator patches its CA into the shipped configuration and labels its own pod
(and no other) so the Service selects it; kube-apiserver resolves the Service to the Endpoints
address and calls the webhook over TLS, verifying the certificate for
`ovnvnet-webhook.ovnvnet-system.svc` against that caBundle; a plain user (a ServiceAccount with the
Role with every verb on pods in its namespace) is refused writing any annotation the operator owns, at CREATE and
UPDATE, on pods and pods/status, with the webhook's message; the operator's own writes pass; invalid
`ovnNetwork` is refused with the operator's message; with the webhook unreachable nothing is
blocked; without `patch` on the configuration the registration fails loudly and the webhook is
never called. Not proven here: kube-proxy, a real pod network, the kubelet running the Deployment
(issue 12's real node).
"""
from __future__ import annotations

import base64
import json
import signal
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from harness.stack import Stack, free_port, wait_for

from .conftest import (
    NAMESPACE,
    OVERLAYS,
    container_env,
    find,
    kubectl_as,
    kustomize,
    namespace_with_user,
    objects,
    service_account_kubeconfig,
)
from .podnet import PodAddress

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

OPERATOR_POD = "ovnvnet-operator-0"
TENANT = "tenant-wh"
SERVICE_DNS = "ovnvnet-webhook.ovnvnet-system.svc"
REFUSED = "written only by the ovnvnet operator"
VWC = "validatingwebhookconfiguration"


def _pod(name: str, annotations: dict | None = None, labels: dict | None = None,
         namespace: str = TENANT, node: str | None = None) -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {},
                         "labels": labels or {}}, "spec": spec}


@pytest.fixture(scope="module")
def rendered_base() -> list[dict]:
    return objects(kustomize(OVERLAYS["base"]))


@pytest.fixture(scope="module")
def installed(stack: Stack, rendered_base) -> Stack:
    out = stack.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                              "items": rendered_base}), check=False)
    assert out.returncode == 0, out.stderr
    return stack


@pytest.fixture(scope="module")
def tenant(installed: Stack) -> Path:
    return namespace_with_user(installed, TENANT, "dev")


@pytest.fixture(scope="module")
def pod_network() -> Iterator[PodAddress]:
    relay = PodAddress(target=free_port()).up()
    yield relay
    relay.down()


def _operator_env(stack: Stack, rendered_base, relay: PodAddress, kubeconfig: Path) -> dict[str, str]:
    return container_env(rendered_base, "Deployment", "ovnvnet-operator",
                         {"metadata.name": OPERATOR_POD, "metadata.namespace": NAMESPACE},
                         {"KUBECONFIG": str(kubeconfig), "OVNVNET_WEBHOOK_ADDR": "127.0.0.1",
                          "OVNVNET_WEBHOOK_PORT": str(relay.target), "OVNVNET_NAMESPACE": NAMESPACE,
                          "OVNVNET_HEALTH_PORT": str(stack.health_port), "OVNVNET_RETRY_INTERVAL": "1"})


@pytest.fixture(scope="module")
def operator(installed: Stack, rendered_base, pod_network: PodAddress, tenant: Path) -> Iterator[Stack]:
    """The operator under its ServiceAccount, with the Deployment's env; its pod object and a stale
    one that an earlier leader left labelled as serving."""
    deploy = find(rendered_base, "Deployment", "ovnvnet-operator")
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    for name, extra in ((OPERATOR_POD, {}), ("ovnvnet-operator-stale", {"ovnvnet.io/webhook": "serving"})):
        installed.kubectl("apply", "-f", "-", input=json.dumps(
            _pod(name, labels={**labels, **extra}, namespace=NAMESPACE)))
    kubeconfig = service_account_kubeconfig(installed, "ovnvnet-operator")
    env = _operator_env(installed, rendered_base, pod_network, kubeconfig)
    assert env["OVNVNET_WEBHOOK_SERVICE"] == f"{NAMESPACE}/ovnvnet-webhook"
    assert env["OVNVNET_SERVICE_ACCOUNT"] == "ovnvnet-operator"
    installed.start_operator(env)
    yield installed
    installed.stop_operator()


def _labels(stack: Stack, name: str) -> dict:
    out = stack.kubectl("get", "pod", name, "-n", NAMESPACE, "-o", "json")
    return json.loads(out.stdout)["metadata"].get("labels", {})


def _ca_bundles(stack: Stack) -> list[str]:
    cfg = json.loads(stack.kubectl("get", VWC, "ovnvnet.io", "-o", "json").stdout)
    return [h["clientConfig"].get("caBundle", "") for h in cfg["webhooks"]]


def _play_endpoints_controller(stack: Stack, relay: PodAddress) -> None:
    """What the endpoints controller does: the Service's selected pods, at their pod address."""
    svc = json.loads(stack.kubectl("get", "service", "ovnvnet-webhook", "-n", NAMESPACE, "-o", "json").stdout)
    selector = ",".join(f"{k}={v}" for k, v in svc["spec"]["selector"].items())
    pods = json.loads(stack.kubectl("get", "pods", "-n", NAMESPACE, "-l", selector, "-o", "json").stdout)["items"]
    assert [p["metadata"]["name"] for p in pods] == [OPERATOR_POD], "the Service selects the serving replica only"
    (port,) = svc["spec"]["ports"]
    endpoints = {"apiVersion": "v1", "kind": "Endpoints",
                 "metadata": {"name": "ovnvnet-webhook", "namespace": NAMESPACE},
                 "subsets": [{"addresses": [{"ip": relay.address, "targetRef": {
                     "kind": "Pod", "name": OPERATOR_POD, "namespace": NAMESPACE}}],
                              "ports": [{"name": port["name"], "port": relay.port, "protocol": "TCP"}]}]}
    stack.kubectl("apply", "-f", "-", input=json.dumps(endpoints))


@pytest.fixture(scope="module")
def serving(operator: Stack, pod_network: PodAddress, tenant: Path) -> Stack:
    wait_for(lambda: all(_ca_bundles(operator)), 30, "the operator to patch the caBundle")
    _play_endpoints_controller(operator, pod_network)
    # the webhook answers once Kopf's server is up: a forged create is refused
    last: list = []

    def refused() -> bool:
        out = _create(tenant, _pod("probe", {"ovnIfaceList": "[]"}))
        last[:] = [out]
        assert "AlreadyExists" not in out.stderr, "the probe pod was admitted"
        return out.returncode != 0 and "denied the request" in out.stderr
    try:
        wait_for(refused, 30, "the webhook to answer through the Service")
    except TimeoutError:
        raise AssertionError(f"{last[0].stdout} {last[0].stderr}\n{operator.log_tail('operator', 30)}\n"
                             f"{operator.log_tail('kube-apiserver', 30)}") from None
    return operator


def _create(kubeconfig: Path, body: dict):
    return kubectl_as(kubeconfig, "create", "-f", "-", input=json.dumps(body), check=False)


def _annotate(kubeconfig: Path, pod: str, *pairs: str, namespace: str = TENANT):
    return kubectl_as(kubeconfig, "annotate", "pod", pod, "-n", namespace, "--overwrite", *pairs, check=False)


def _refused(out, *words: str) -> str:
    assert out.returncode != 0, f"admitted: {out.stdout}"
    assert 'admission webhook "' in out.stderr and "denied the request" in out.stderr, out.stderr
    for word in words:
        assert word in out.stderr, (word, out.stderr)
    return out.stderr


# ---------------------------------------------------------------------------- registration
def test_registration_patches_the_shipped_configuration(serving: Stack, pod_network: PodAddress):
    cfg = json.loads(serving.kubectl("get", VWC, "ovnvnet.io", "-o", "json").stdout)
    for hook in cfg["webhooks"]:
        cc = hook["clientConfig"]
        assert "url" not in cc and cc["service"]["name"] == "ovnvnet-webhook"
        cert = x509.load_pem_x509_certificate(base64.b64decode(cc["caBundle"]))
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
        assert SERVICE_DNS in names, names
    assert _labels(serving, OPERATOR_POD).get("ovnvnet.io/webhook") == "serving"
    assert "ovnvnet.io/webhook" not in _labels(serving, "ovnvnet-operator-stale"), "a stale replica still selected"
    assert pod_network.connections > 0, "the API server never dialled the Endpoints address"


# ---------------------------------------------------------------------------- ownership
OWNED_VALUES = {
    "ovnIfaceList": json.dumps([{"interface": "net0", "ip_address": "10.1.0.5/24", "mac_address": "0a:58:0a:01:00:05",
                                 "gateway_ip": "10.1.0.1", "name": "victim"}]),
    "ovnNetworkError": "nothing wrong here",
    "ovnNetworkErrorRetry": "true",
    "ovnvnet.io/seal": "v1:AAAA",
}
LEGACY_RESULT = json.dumps({"ip_address": "10.1.0.5/24", "mac_address": "0a:58:0a:01:00:05",
                            "gateway_ip": "10.1.0.1", "port": "zeta_victim_net1"})


@pytest.mark.parametrize("key", sorted(OWNED_VALUES))
def test_plain_user_cannot_create_a_pod_with_an_operator_annotation(serving, tenant, key):
    out = _create(tenant, _pod(f"forged-{key.replace('/', '-').replace('.', '-').lower()}", {key: OWNED_VALUES[key]}))
    _refused(out, key, REFUSED, f"system:serviceaccount:{TENANT}:dev may not set it")


def test_legacy_ovn_is_refused_as_a_result_and_admitted_as_a_request(serving, tenant):
    _refused(_create(tenant, _pod("forged-legacy", {"ovn": LEGACY_RESULT})), "ovn (a result)", REFUSED)
    request = json.dumps({"ip_address": "10.1.0.9", "mac_address": "0a:58:0a:01:00:09"})
    out = _create(tenant, _pod("legacy-request", {"ovn": request}))
    assert out.returncode == 0, out.stderr
    # nor may a request be turned into a result afterwards
    _refused(_annotate(tenant, "legacy-request", f"ovn={LEGACY_RESULT}"), "ovn (a result)",
             "may not set, change or remove")


def test_operator_writes_pass_and_a_plain_user_cannot_change_them(serving, tenant):
    net = {"apiVersion": "ovnvnet.io/v1", "kind": "VirtualNetwork", "metadata": {"name": "wh-net"},
           "spec": {"subnet": "172.30.7.0/24"}}
    serving.kubectl("apply", "-f", "-", input=json.dumps(net))
    request = json.dumps([{"name": "wh-net", "interface": "net0"}])
    assert _create(tenant, _pod("attached", {"ovnNetwork": request})).returncode == 0

    def annotations(name: str) -> dict:
        out = serving.kubectl("get", "pod", name, "-n", TENANT, "-o", "json")
        return json.loads(out.stdout)["metadata"].get("annotations", {})
    # a /30 holds one pod: the second waits, with the operator's ovnNetworkError (admitted: not final)
    serving.kubectl("apply", "-f", "-", input=json.dumps(
        {**net, "metadata": {"name": "wh-tiny"}, "spec": {"subnet": "172.30.8.0/30"}}))
    tiny = json.dumps([{"name": "wh-tiny", "interface": "net0"}])
    assert _create(tenant, _pod("first", {"ovnNetwork": tiny})).returncode == 0
    wait_for(lambda: annotations("first").get("ovnIfaceList"), 30, "the first pod on wh-tiny attached")
    out = _create(tenant, _pod("refused", {"ovnNetwork": tiny}))
    assert out.returncode == 0, out.stderr
    # the operator (its ServiceAccount) wrote its result and its refusal through the webhook
    result = wait_for(lambda: annotations("attached").get("ovnIfaceList"), 30, "the operator's ovnIfaceList")
    error = wait_for(lambda: annotations("refused").get("ovnNetworkError"), 30, "the operator's ovnNetworkError")
    # the pod's creator may not touch them: change, add, remove
    _refused(_annotate(tenant, "attached", f"ovnIfaceList={OWNED_VALUES['ovnIfaceList']}"), "ovnIfaceList", REFUSED)
    _refused(_annotate(tenant, "attached", "ovnvnet.io/seal=v1:forged"), "ovnvnet.io/seal")
    _refused(_annotate(tenant, "refused", "ovnNetworkError-"), "ovnNetworkError", "may not set, change or remove")
    # what is the creator's stays the creator's
    assert _annotate(tenant, "attached", "note=mine").returncode == 0
    assert annotations("attached")["ovnIfaceList"] == result and annotations("refused")["ovnNetworkError"] == error


def test_pods_status_cannot_carry_an_operator_annotation(serving, tenant):
    """pods/status can change metadata: a writer of status (a node, here a ServiceAccount given
    `patch pods/status`) is refused an operator annotation there too, and may write status."""
    writer = namespace_with_user(serving, TENANT, "node-ish", rules=[
        {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["get", "patch"]}])
    assert _create(tenant, _pod("status-target")).returncode == 0
    path = f"/api/v1/namespaces/{TENANT}/pods/status-target/status"
    # kubectl 1.20 has no --subresource: PATCH the subresource directly, as a kubelet does
    status, message = _raw_patch(writer, path, {"metadata": {"annotations": {
        "ovnIfaceList": OWNED_VALUES["ovnIfaceList"]}}})
    assert status == 403 and REFUSED in message and "ownedannotations.ovnvnet.io" in message, (status, message)
    status, message = _raw_patch(writer, path, {"status": {"message": "fine"}})
    assert status == 200, message


def _raw_patch(kubeconfig: Path, path: str, body: dict) -> tuple[int, str]:
    """A merge PATCH with the kubeconfig's token; (HTTP status, message)."""
    cfg = json.loads(kubeconfig.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    req = urllib.request.Request(cluster["server"] + path, data=json.dumps(body).encode(), method="PATCH",
                                 headers={"Authorization": f"Bearer {cfg['users'][0]['user']['token']}",
                                          "Content-Type": "application/merge-patch+json"})
    ctx = ssl.create_default_context(cafile=cluster["certificate-authority"])
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read().decode()).get("message", "")


# ---------------------------------------------------------------------------- validation
def test_invalid_request_is_refused_with_the_operators_message(serving, tenant):
    out = _create(tenant, _pod("bad-iface", {"ovnNetwork": json.dumps([{"name": "wh-net", "interface": "eth"}])}))
    _refused(out, 'interface "eth": name must end with a digit 0-9')


# ---------------------------------------------------------------------------- failing open
def test_unreachable_webhook_blocks_nothing(serving, tenant, pod_network: PodAddress):
    """The operator gone (killed: its address still listed, then no endpoint at all): writes are
    admitted at once, as if there were no webhook; the result seal, not the webhook, is what keeps
    such a forgery harmless."""
    names = iter(f"while-down-{i}" for i in range(1000))

    def admitted_fast() -> None:
        for _ in range(3):
            started = time.monotonic()
            out = _create(tenant, _pod(next(names), {"ovnvnet.io/seal": "v1:unchecked"}))
            assert out.returncode == 0, out.stderr
            assert time.monotonic() - started < 5, "an unreachable webhook delayed a pod write"
    env = dict(serving.state["operator_env"])
    serving.stop_operator(signal.SIGKILL)
    try:
        admitted_fast()
        serving.kubectl("delete", "endpoints", "ovnvnet-webhook", "-n", NAMESPACE)
        admitted_fast()
    finally:
        serving.kubectl("delete", "pods", "--all", "-n", TENANT, "--wait=false", check=False)
        serving.start_operator(env)
        _play_endpoints_controller(serving, pod_network)


def test_without_patch_on_its_configuration_the_registration_fails_loudly(serving, tenant, rendered_base,
                                                                         pod_network: PodAddress):
    """The rule is necessary: a copy of the operator's ClusterRole without it, a fresh caBundle-less
    configuration, and the operator logs the failure while the API server never calls it."""
    stack = serving
    role = find(rendered_base, "ClusterRole", "ovnvnet-operator")
    reduced = {**role, "metadata": {"name": "ovnvnet-operator-no-vwc"},
               "rules": [r for r in role["rules"] if "admissionregistration.k8s.io" not in r["apiGroups"]]}
    stack.stop_operator()
    stack.kubectl("apply", "-f", "-", input=json.dumps(reduced))
    stack.kubectl("delete", "clusterrolebinding", "ovnvnet-operator")
    binding = find(rendered_base, "ClusterRoleBinding", "ovnvnet-operator")
    stack.kubectl("apply", "-f", "-", input=json.dumps({**binding, "roleRef": {**binding["roleRef"],
                                                                             "name": "ovnvnet-operator-no-vwc"}}))
    cfg = find(rendered_base, "ValidatingWebhookConfiguration", "ovnvnet.io")
    stack.kubectl("delete", VWC, "ovnvnet.io")
    stack.kubectl("apply", "-f", "-", input=json.dumps(cfg))  # as shipped: no caBundle
    _play_endpoints_controller(stack, pod_network)
    log = stack.logs / "operator.log"
    mark = log.stat().st_size
    try:
        kubeconfig = service_account_kubeconfig(stack, "ovnvnet-operator")
        stack.start_operator(_operator_env(stack, rendered_base, pod_network, kubeconfig))
        wait_for(lambda: "webhook registration in ValidatingWebhookConfiguration ovnvnet.io failed"
                 in log.read_text(errors="replace")[mark:], 30, "the registration error in the log")
        assert "forbidden" in log.read_text(errors="replace")[mark:].lower()
        assert not any(_ca_bundles(stack))
        out = _create(tenant, _pod("forged-unregistered", {"ovnIfaceList": "[]"}))
        assert out.returncode == 0, "admitted: without a caBundle the API server cannot call the webhook"
    finally:
        stack.stop_operator()
        stack.kubectl("delete", "clusterrolebinding", "ovnvnet-operator")
        stack.kubectl("apply", "-f", "-", input=json.dumps(binding))
        stack.kubectl("delete", "clusterrole", "ovnvnet-operator-no-vwc")
