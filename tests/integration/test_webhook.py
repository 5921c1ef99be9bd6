"""The validating webhook, on the real API server: invalid requests are refused at create time
with the operator's own messages; if the webhook is unreachable, pods are still admitted and the
operator's validation answers."""
from __future__ import annotations

import json
import signal
import uuid

import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from harness.stack import free_port
from tests.integration.conftest import OPERATOR_ENV
from tests.integration.kit import Cluster, wait_until


def _refusal(fn) -> str:
    with pytest.raises(ApiException) as info:
        fn()
    assert info.value.status == 400, info.value
    return json.loads(info.value.body)["message"]


@pytest.fixture
def webhook_operator(cluster: Cluster):
    stack = cluster.stack
    admission = kubernetes.client.AdmissionregistrationV1Api(cluster.core.api_client)
    # registered by URL (Kopf-managed); the local stack's operator writes with the admin token
    env = {**OPERATOR_ENV, "OVNVNET_WEBHOOK": "true", "OVNVNET_WEBHOOK_ADDR": "127.0.0.1",
           "OVNVNET_WEBHOOK_PORT": str(free_port()), "OVNVNET_OPERATOR_USERS": "admin"}
    stack.stop_operator()
    stack.start_operator(env)
    # Kopf creates the configuration, then fills its webhooks in
    wait_until(lambda: admission.read_validating_webhook_configuration("ovnvnet.io").webhooks, 30,
               what="webhook configuration registered")
    cfg = admission.read_validating_webhook_configuration("ovnvnet.io")
    assert all(w.failure_policy == "Ignore" for w in cfg.webhooks), "the webhook must never block the cluster"
    yield admission
    stack.stop_operator()
    try:
        admission.delete_validating_webhook_configuration("ovnvnet.io")
    except ApiException:
        pass
    stack.start_operator(OPERATOR_ENV)


def test_webhook_refuses_invalid_requests_at_create(webhook_operator, cluster: Cluster, ns: str, subnet,
                                                    net_name) -> None:
    a = net_name("wh")
    sa = subnet()
    pa = sa.rsplit(".", 1)[0]
    cluster.create_vnet(a, sa)
    cluster.wait_ready(a)
    try:
        cluster.create_pod(ns, "holder", [{"name": a, "interface": "net0", "ip_address": f"{pa}.5"}])
        cluster.iface_list(ns, "holder")
        # wait until the webhook answers (kopf registers the config before its server is warm)
        wait_until(lambda: _try_bad(cluster, ns), 30, what="webhook answering")
        for request, message in [
            ('[{"name": ', "ovnNetwork is not valid JSON"),
            ([{"name": a, "interface": "eth"}], 'interface "eth": name must end with a digit 0-9'),
            ([{"name": a, "interface": "net1", "ip_address": "192.0.2.1"}], f"ip_address 192.0.2.1 is outside {a}"),
            ([{"name": a, "interface": "net1", "ip_address": f"{pa}.5"}],
             f"ip_address {pa}.5 on {a} is held by {ns}/holder"),
            ([{"name": "nope-" + uuid.uuid4().hex[:4], "interface": "net1"}], "does not exist"),
            ([{"name": a, "interface": f"eth{i}"} for i in range(10)] + [{"name": a, "interface": "x1"}],
             "ovnNetwork lists 11 interfaces; at most 10 are supported"),
        ]:
            msg = _refusal(lambda request=request: cluster.create_pod(ns, "bad", request))
            assert message in msg, (message, msg)
            assert not cluster.pod_exists(ns, "bad")
        # a full network is not a reason to refuse: the pod waits (admitted)
        # networks: bad specs and updates that would strand allocations
        assert "host bits set" in _refusal(lambda: cluster.create_vnet(net_name("hb"), sa.replace(".0/24", ".1/24")))
        assert "outside" in _refusal(lambda: cluster.create_vnet(net_name("gw"), subnet(), gateway="192.0.2.1"))
        assert "overlaps" in _refusal(lambda: cluster.create_vnet(net_name("ov"), sa.replace("/24", "/25")))
        ex_msg = _refusal(lambda: cluster.create_vnet(net_name("ex"), subnet(), excludeIPs=["192.0.2.9"]))
        assert "192.0.2.9" in ex_msg
        # a namespace the network does not admit
        closed = net_name("closed")
        cluster.create_vnet(closed, subnet(), namespaceSelector={"matchLabels": {"team": "red"}})
        cluster.wait_ready(closed)
        msg = _refusal(lambda: cluster.create_pod(ns, "outsider", [{"name": closed, "interface": "net0"}]))
        assert f"network {closed} does not admit pods from namespace {ns}" in msg
        cluster.delete_vnet(closed)
        upd = _refusal(lambda: cluster.patch_vnet_spec(a, {"gateway": f"{pa}.5"}))
        assert f"gateway {pa}.5 is held by {ns}/holder" in upd
        assert cluster.vnet(a)["spec"].get("gateway") is None   # refused: not stored
    finally:
        cluster.delete_pod(ns, "holder")
        cluster.delete_vnet(a)


def _try_bad(cluster: Cluster, ns: str) -> bool:
    try:
        cluster.create_pod(ns, "probe", [{"name": "x", "interface": "eth"}])
    except ApiException as exc:
        return exc.status == 400
    cluster.delete_pod(ns, "probe")
    return False


def test_unreachable_webhook_never_blocks(webhook_operator, cluster: Cluster, ns: str) -> None:
    stack = cluster.stack
    stack.stop_operator(signal.SIGKILL)        # the configuration stays, nothing answers it
    assert webhook_operator.read_validating_webhook_configuration("ovnvnet.io")
    cluster.create_pod(ns, "admitted", [{"name": "x", "interface": "eth"}])   # admitted anyway
    stack.start_operator(OPERATOR_ENV)         # no webhook: the operator's validation answers
    assert cluster.pod_error(ns, "admitted") == 'interface "eth": name must end with a digit 0-9'
    cluster.delete_pod(ns, "admitted")
