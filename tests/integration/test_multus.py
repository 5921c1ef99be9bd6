"""Issue 14, operator side, on the real stack: Multus's `k8s.v1.cni.cncf.io/networks` requests in
both forms are served like `ovnNetwork` (result, NB ports, IPBlocks, refusals, recovery), other
plugins' elements are ignored, and every VirtualNetwork is published as a
NetworkAttachmentDefinition in the operator's NAD namespace (created, converged, deleted with it;
a foreign NAD is never touched), unless its `spec.multus` is false (no NAD, the one published is
deleted, Multus requests for it refused, `ovnNetwork` still served)."""
from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from harness.kit import Cluster, check_invariant, wait_until
from harness.stack import Stack, free_port
from ovnvnet.model import names
from tests.integration.conftest import OPERATOR_ENV

NAD_NS = "ovnvnet-nads"
MULTUS_ENV = {**OPERATOR_ENV, "OVNVNET_NAD_NAMESPACE": NAD_NS}
NAD_CRD = Path(__file__).parents[1] / "install" / "nad-crd.yaml"
NETWORKS = "k8s.v1.cni.cncf.io/networks"
G, V, P = "k8s.cni.cncf.io", "v1", "network-attachment-definitions"


@pytest.fixture(scope="module")
def multus(stack: Stack):
    stack.kubectl("apply", "-f", str(NAD_CRD))
    stack.kubectl("wait", "--for=condition=Established", "--timeout=30s", "-f", str(NAD_CRD))
    Cluster(stack).ensure_namespace(NAD_NS)
    stack.stop_operator()
    stack.start_operator(MULTUS_ENV)
    yield stack
    # every Multus-way pod goes (released by the Multus-aware operator) before the operator is
    # started again without a NAD namespace: later modules' invariant checks do not read them
    c = Cluster(stack)
    for pod in c.core.list_pod_for_all_namespaces().items:
        if NETWORKS in (pod.metadata.annotations or {}):
            c.core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
    wait_until(lambda: not any(NETWORKS in (p.metadata.annotations or {})
                               for p in c.core.list_pod_for_all_namespaces().items),
               60, 0.3, what="every Multus-way pod deleted")
    stack.stop_operator()
    stack.start_operator(OPERATOR_ENV)


@pytest.fixture
def mc(multus: Stack) -> Cluster:
    if not multus.running("operator"):
        multus.start_operator(MULTUS_ENV)
    return Cluster(multus, nad_namespace=NAD_NS)


@pytest.fixture
def mns(mc: Cluster):
    """A namespace for one test; its pods are deleted (and released) while the Multus-aware
    operator still runs, so later modules' invariant checks (whose clusters do not read Multus
    requests) never meet a Multus-way pod."""
    name = "m-" + uuid.uuid4().hex[:8]
    mc.ensure_namespace(name)
    yield name
    mc.core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
    wait_until(lambda: not mc.core.list_namespaced_pod(name).items, 60, 0.3, what=f"the pods of {name} deleted")


def nad(c: Cluster, name: str, ns: str = NAD_NS) -> dict | None:
    try:
        return c.custom.get_namespaced_custom_object(G, V, ns, P, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def create_pod(c: Cluster, ns: str, name: str, networks: str | list, **extra: str) -> None:
    value = networks if isinstance(networks, str) else json.dumps(networks)
    c.core.create_namespaced_pod(ns, {
        "metadata": {"name": name, "annotations": {NETWORKS: value, **extra}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox"}]}})


def ports_of(c: Cluster, ns: str, pod: str) -> dict[str, dict]:
    return {n: p for n, p in c.nb_pod_ports().items() if n.startswith(f"{ns}_{pod}_")}


def test_both_forms_attach_like_ovnnetwork(mc: Cluster, mns: str, subnet, net_name) -> None:
    a, b = net_name("ma"), net_name("mb")
    mc.create_vnet(a, subnet())
    mc.create_vnet(b, subnet())
    mc.wait_ready(a)
    mc.wait_ready(b)
    prefix_a = mc.vnet(a)["spec"]["subnet"].rsplit(".", 1)[0]
    gw_b = mc.vnet(b)["status"]["gateway"]
    # comma form: net<position> as Multus names them; default/other is another plugin's
    create_pod(mc, mns, "comma", f"default/macvlan-conf, {NAD_NS}/{a}, {NAD_NS}/{b}@data5")
    # JSON form: every field of a network-selection element
    create_pod(mc, mns, "json", [
        {"name": a, "namespace": NAD_NS, "interface": "blue1", "ips": [f"{prefix_a}.77/24"],
         "mac": "0A:00:00:00:07:07"},
        {"name": "sriov-net", "namespace": "default"},
        {"name": b, "namespace": NAD_NS, "default-route": [gw_b]}])
    comma = mc.iface_list(mns, "comma")
    assert [(i["interface"], i["name"], i["defaultGateway"]) for i in comma] == \
        [("net2", a, False), ("data5", b, False)]
    js = mc.iface_list(mns, "json")
    assert [(i["interface"], i["name"]) for i in js] == [("blue1", a), ("net3", b)]
    assert (js[0]["ip_address"], js[0]["mac_address"], js[0]["defaultGateway"]) == \
        (f"{prefix_a}.77", "0a:00:00:00:07:07", False)
    assert js[1]["defaultGateway"] is True and js[1]["gateway_ip"] == gw_b
    assert set(ports_of(mc, mns, "comma")) == {names.port_name(mns, "comma", "net2"),
                                                names.port_name(mns, "comma", "data5")}
    record = wait_until(lambda: mc.allocations(a).get(f"{prefix_a}.77"), what="the IPBlock entry")  # coalesced
    assert (record["interface"], record["pod"]) == ("blue1", f"{mns}/json")
    check_invariant(mc, [a, b])
    for pod in ("comma", "json"):
        mc.delete_pod(mns, pod)
    wait_until(lambda: not ports_of(mc, mns, "comma") and not ports_of(mc, mns, "json"), what="ports gone")
    check_invariant(mc, [a, b])


def test_only_foreign_elements_is_not_ovnvnets(mc: Cluster, mns: str, subnet, net_name) -> None:
    a = net_name("mf")
    mc.create_vnet(a, subnet())
    mc.wait_ready(a)
    create_pod(mc, mns, "foreign", f"default/{a}, macvlan@net1")   # same name, not the NAD namespace
    create_pod(mc, mns, "marker", f"{NAD_NS}/{a}")                 # handled after the first
    mc.iface_list(mns, "marker")
    time.sleep(2.5)   # two sweeps (1 s apart here): the sweep does not pick it up either
    ann = mc.annotations(mns, "foreign")
    assert "ovnIfaceList" not in ann and "ovnNetworkError" not in ann
    assert not ports_of(mc, mns, "foreign")


@pytest.mark.parametrize("case", ["unknown", "bad-ips", "bad-prefix", "bad-route", "both-forms"])
def test_refusals_say_why_and_leave_nothing(mc: Cluster, mns: str, subnet, net_name, case: str) -> None:
    a = net_name("mr")
    mc.create_vnet(a, subnet())
    mc.wait_ready(a)
    prefix = mc.vnet(a)["spec"]["subnet"].rsplit(".", 1)[0]
    extra: dict[str, str] = {}
    request: str | list = {
        "unknown": f"{NAD_NS}/nope-{uuid.uuid4().hex[:6]}",
        "bad-ips": [{"name": a, "namespace": NAD_NS, "ips": [f"{prefix}.9"]}],
        "bad-prefix": [{"name": a, "namespace": NAD_NS, "ips": [f"{prefix}.9/16"]}],
        "bad-route": [{"name": a, "namespace": NAD_NS, "default-route": [f"{prefix}.254"]}],
        "both-forms": f"{NAD_NS}/{a}",
    }[case]
    if case == "both-forms":
        extra["ovnNetwork"] = json.dumps([{"name": a, "interface": "net0"}])
    want = {
        "unknown": "does not exist (no VirtualNetwork named nope-",
        "bad-ips": f'ips[0] "{prefix}.9" is not "address/prefix"',
        "bad-prefix": f"ips {prefix}.9/16 on {a}: the network's IPv4 prefix is /24",
        "bad-route": f"default-route {prefix}.254 on {a}: its gateway is {prefix}.1",
        "both-forms": "both in ovnNetwork and in k8s.v1.cni.cncf.io/networks",
    }[case]
    create_pod(mc, mns, "refused", request, **extra)
    error = mc.pod_error(mns, "refused")
    assert want in error, error
    wait_until(lambda: any(want in m for m in mc.event_messages(mns, "refused")), what="the Event")
    assert "ovnIfaceList" not in mc.annotations(mns, "refused")
    assert not ports_of(mc, mns, "refused")
    assert mc.vnet(a)["status"].get("usedIPs", 0) == 0 and not mc.allocations(a)


def test_namespace_not_admitted_is_refused(mc: Cluster, subnet, net_name) -> None:
    a = net_name("ms")
    blue, red = "mb-" + uuid.uuid4().hex[:6], "mr-" + uuid.uuid4().hex[:6]
    mc.core.create_namespace({"metadata": {"name": red, "labels": {"team": "red"}}})
    mc.ensure_namespace(blue)
    mc.create_vnet(a, subnet(), namespaceSelector={"matchLabels": {"team": "red"}})
    mc.wait_ready(a)
    create_pod(mc, blue, "out", f"{NAD_NS}/{a}")
    create_pod(mc, red, "in", f"{NAD_NS}/{a}")
    assert mc.iface_list(red, "in")[0]["name"] == a
    error = mc.pod_error(blue, "out")
    assert error.startswith(f"network {a} does not admit pods from namespace {blue}"), error
    assert not ports_of(mc, blue, "out")
    check_invariant(mc, [a])


def test_restart_keeps_every_address(mc: Cluster, mns: str, subnet, net_name) -> None:
    a = net_name("mk")
    mc.create_vnet(a, subnet())
    mc.wait_ready(a)
    create_pod(mc, mns, "kept", f"{NAD_NS}/{a}@net4")
    before = mc.iface_list(mns, "kept")
    mc.stack.stop_operator(signal.SIGKILL)
    create_pod(mc, mns, "while-down", [{"name": a, "namespace": NAD_NS}])
    mc.stack.start_operator(MULTUS_ENV)
    assert mc.iface_list(mns, "kept") == before
    later = mc.iface_list(mns, "while-down", timeout=30)
    assert later[0]["interface"] == "net1" and later[0]["ip_address"] != before[0]["ip_address"]
    check_invariant(mc, [a])


def test_nad_follows_its_network_and_foreign_nads_are_untouched(mc: Cluster, subnet, net_name) -> None:
    a, taken = net_name("mn"), net_name("mt")
    foreign = {"apiVersion": f"{G}/{V}", "kind": "NetworkAttachmentDefinition",
               "metadata": {"name": taken, "namespace": NAD_NS},
               "spec": {"config": '{"cniVersion": "0.3.1", "name": "x", "type": "macvlan"}'}}
    mc.custom.create_namespaced_custom_object(G, V, NAD_NS, P, foreign)
    other = {**foreign, "metadata": {"name": "bystander-" + a, "namespace": NAD_NS,
                                     "labels": {"app.kubernetes.io/managed-by": "someone"}}}
    other_rv = mc.custom.create_namespaced_custom_object(G, V, NAD_NS, P, other)["metadata"]["resourceVersion"]

    mc.create_vnet(a, subnet())
    mc.wait_ready(a)
    published = wait_until(lambda: nad(mc, a), what="NAD created")
    assert json.loads(published["spec"]["config"]) == {"cniVersion": "0.4.0", "name": a, "type": "ovn-k8s-cni-overlay",
                                                        "capabilities": {"ips": True, "mac": True}}
    assert published["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "ovnvnet"
    owner = published["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("VirtualNetwork", a, mc.vnet(a)["metadata"]["uid"])

    # edited by hand: put back on the network's next update
    mc.custom.patch_namespaced_custom_object(G, V, NAD_NS, P, a, {"spec": {"config": '{"type": "bridge"}'}})
    mc.patch_vnet_spec(a, {"mtu": 1300})
    wait_until(lambda: json.loads(nad(mc, a)["spec"]["config"])["type"] == "ovn-k8s-cni-overlay",
               what="NAD converged")

    # a network whose name a foreign NAD holds: attachable, the NAD left exactly as it was
    mc.create_vnet(taken, subnet())
    mc.wait_ready(taken)
    before = nad(mc, taken)
    wait_until(lambda: any(e.reason == "NetworkAttachmentNotOwned" and taken in e.message
                           for e in mc.core.list_namespaced_event("default").items), what="NotOwned Event")
    mc.delete_vnet(taken)
    wait_until(lambda: not mc.vnet_exists(taken), what="network deleted")
    assert nad(mc, taken) == before

    mc.delete_vnet(a)
    wait_until(lambda: nad(mc, a) is None, what="NAD deleted with its network")
    assert nad(mc, "bystander-" + a)["metadata"]["resourceVersion"] == other_rv   # never touched
    for name in (taken, "bystander-" + a):
        mc.custom.delete_namespaced_custom_object(G, V, NAD_NS, P, name)


def test_multus_false_unpublishes_and_refuses_multus_requests(mc: Cluster, mns: str, subnet, net_name) -> None:
    a, b = net_name("mo"), net_name("mp")
    mc.create_vnet(a, subnet())
    mc.create_vnet(b, subnet(), multus=False)          # opted out from the start
    mc.wait_ready(a)
    mc.wait_ready(b)
    wait_until(lambda: nad(mc, a), what="NAD of a created")
    assert mc.vnet(b)["status"]["appliedSpec"]["multus"] is False
    assert "multus" not in mc.vnet(a)["status"]["appliedSpec"]   # the default reads as before
    time.sleep(2)   # b's NAD would have been published with b's apply, as a's was
    assert nad(mc, b) is None

    # opting out later deletes the NAD the operator published
    mc.patch_vnet_spec(a, {"multus": False})
    wait_until(lambda: nad(mc, a) is None, what="NAD of a deleted on multus: false")

    # a Multus request for an opted-out network: refused, saying why, nothing allocated
    create_pod(mc, mns, "viamultus", f"{NAD_NS}/{a}@net1")
    error = mc.pod_error(mns, "viamultus")
    want = (f"network {a} is not published for Multus (spec.multus: false), so k8s.v1.cni.cncf.io/networks "
            f"cannot ask for it: ask for it in ovnNetwork instead, or set spec.multus: true")
    assert error == want, error
    wait_until(lambda: want in mc.event_messages(mns, "viamultus"), what="the Event")
    assert not ports_of(mc, mns, "viamultus") and not mc.allocations(a)

    # the seed's ovnNetwork is not affected
    mc.create_pod(mns, "viaovn", [{"name": b, "interface": "net0"}])
    assert mc.iface_list(mns, "viaovn")[0]["name"] == b

    # back to true: the NAD is published again and the waiting pod is attached
    mc.patch_vnet_spec(a, {"multus": True})
    wait_until(lambda: nad(mc, a), what="NAD of a published again")
    assert mc.iface_list(mns, "viamultus", timeout=30)[0]["interface"] == "net1"
    assert "ovnNetworkError" not in mc.annotations(mns, "viamultus")
    check_invariant(mc, [a, b])


def test_owned_nad_of_a_network_deleted_while_down_is_swept(mc: Cluster, subnet, net_name) -> None:
    a = net_name("mw")
    mc.create_vnet(a, subnet())
    mc.wait_ready(a)
    wait_until(lambda: nad(mc, a), what="NAD created")
    mc.stack.stop_operator(signal.SIGKILL)
    # the network disappears without the operator (finalizer removed by hand)
    mc.custom.patch_cluster_custom_object("ovnvnet.io", "v1", "virtualnetworks", a,
                                          {"metadata": {"finalizers": None}})
    mc.delete_vnet(a)
    wait_until(lambda: not mc.vnet_exists(a), what="network gone")
    mc.stack.start_operator(MULTUS_ENV)
    wait_until(lambda: nad(mc, a) is None, what="orphan NAD swept")


@pytest.fixture
def multus_webhook(mc: Cluster):
    stack = mc.stack
    admission = kubernetes.client.AdmissionregistrationV1Api(mc.core.api_client)
    env = {**MULTUS_ENV, "OVNVNET_WEBHOOK": "true", "OVNVNET_WEBHOOK_ADDR": "127.0.0.1",
           "OVNVNET_WEBHOOK_PORT": str(free_port()), "OVNVNET_OPERATOR_USERS": "admin"}
    stack.stop_operator()
    stack.start_operator(env)
    wait_until(lambda: admission.read_validating_webhook_configuration("ovnvnet.io").webhooks, 30,
               what="webhook configuration registered")
    yield
    stack.stop_operator()
    try:
        admission.delete_validating_webhook_configuration("ovnvnet.io")
    except ApiException:
        pass
    stack.start_operator(MULTUS_ENV)


def _refused(fn) -> str | None:
    try:
        fn()
    except ApiException as exc:
        assert exc.status == 400, exc
        return str(json.loads(exc.body)["message"])
    return None


def test_webhook_refuses_bad_multus_requests_and_admits_foreign_ones(multus_webhook, mc: Cluster, mns: str,
                                                                      subnet, net_name) -> None:
    a, off = net_name("mh"), net_name("mx")
    mc.create_vnet(a, subnet())
    mc.create_vnet(off, subnet(), multus=False)
    mc.wait_ready(a)
    mc.wait_ready(off)
    probe = iter(range(1000))
    wait_until(lambda: _refused(lambda: create_pod(mc, mns, f"probe{next(probe)}", f"{NAD_NS}/{a}@eth")),
               30, what="webhook answering")
    for request, message in [
        (f"{NAD_NS}/{a}@eth", 'interface "eth": name must end with a digit 0-9'),
        ([{"name": a, "namespace": NAD_NS, "ips": ["192.0.2.1/24"]}], f"ip_address 192.0.2.1 is outside {a}"),
        (f"{NAD_NS}/nope-{uuid.uuid4().hex[:4]}", "does not exist"),
        ([{"name": a, "namespace": NAD_NS, "mac": "01:00:00:00:00:01"}], "multicast"),
        (f"{NAD_NS}/{off}", f"network {off} is not published for Multus (spec.multus: false)"),
    ]:
        msg = _refused(lambda request=request: create_pod(mc, mns, "bad", request))
        assert msg is not None and message in msg, (message, msg)
        assert not mc.pod_exists(mns, "bad")
    # another plugin's request, even one Multus could not read, is not the webhook's to refuse
    for i, foreign in enumerate(["default/macvlan@Eth-0", "[garbage", f"default/{a}"]):
        assert _refused(lambda foreign=foreign, i=i: create_pod(mc, mns, f"foreign{i}", foreign)) is None
