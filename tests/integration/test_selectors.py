"""Issue 9 point 4: namespaceSelectors fail closed, and the CRD schema (the API server's own
validation) and the operator's parser accept the same selectors."""
from __future__ import annotations

import json
import signal
import uuid

from hypothesis import HealthCheck, Phase, given, settings
from kubernetes.client.rest import ApiException

from tests.integration.conftest import OPERATOR_ENV
from tests.integration.kit import GROUP, PLURAL, VERSION, Cluster, wait_until
from tests.selector_cases import parser_accepts, selectors

BAD = {"matchExpressions": [{"key": "team", "operator": "In", "values": []}]}
LOOSE = [{"op": "replace",
          "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/namespaceSelector",
          "value": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}]


def _api_accepts(cluster: Cluster, sel) -> bool:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualNetwork",
            "metadata": {"name": "dry-" + uuid.uuid4().hex[:8]},
            "spec": {"subnet": "10.250.0.0/24", "namespaceSelector": sel}}
    try:
        cluster.custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body, dry_run="All")
        return True
    except ApiException as exc:
        assert exc.status == 422, exc
        return False


def test_api_server_and_parser_accept_the_same_selectors(cluster: Cluster) -> None:
    seen = {"n": 0}

    @settings(max_examples=150, phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(selectors)
    def check(sel) -> None:
        try:
            json.dumps(sel).encode()
        except UnicodeEncodeError:   # a lone surrogate cannot be sent at all
            return
        seen["n"] += 1
        assert _api_accepts(cluster, sel) == parser_accepts(sel), sel

    check()
    assert seen["n"] > 100
    assert not _api_accepts(cluster, BAD)


def test_unparsable_stored_selector_admits_no_namespace_after_restart(cluster: Cluster, subnet, net_name) -> None:
    n = net_name("closed")
    red = "red-" + uuid.uuid4().hex[:6]
    cluster.core.create_namespace({"metadata": {"name": red, "labels": {"team": "red"}}})
    cluster.create_vnet(n, subnet(), namespaceSelector={"matchLabels": {"team": "red"}})
    cluster.wait_ready(n)
    stack = cluster.stack
    try:
        cluster.create_pod(red, "before", [{"name": n, "interface": "net0"}])
        before = cluster.iface_list(red, "before")
        # a selector the parser rejects gets stored (as under a CRD schema older than the parser)
        stack.stop_operator(signal.SIGKILL)
        stack.kubectl("patch", "crd", "virtualnetworks.ovnvnet.io", "--type=json", "-p", json.dumps(LOOSE))
        wait_until(lambda: _api_accepts(cluster, BAD), timeout=20, what="the loosened schema in force")
        cluster.custom.patch_cluster_custom_object(GROUP, VERSION, PLURAL, n,
                                                   {"spec": {"namespaceSelector": BAD}})
        # the operator restarts while the schema that let it in is in force (with today's strict
        # schema back, Kubernetes 1.20 refuses every write to the object, status included, until
        # the selector is fixed: then only the Event below can tell)
        stack.start_operator(OPERATOR_ENV)
        cond = wait_until(lambda: (c := cluster.ready(n)) and c["status"] == "False" and c, timeout=30,
                          what="Ready False")
        assert cond["reason"] == "InvalidSelector"
        assert "admits no namespace" in cond["message"] and "needs values" in cond["message"]
        wait_until(lambda: any("admits no namespace" in (e.message or "") for e in
                               cluster.core.list_event_for_all_namespaces(
                                   field_selector=f"involvedObject.name={n}").items),
                   timeout=20, what="an Event saying the network admits no namespace")
        # no namespace is admitted (not "every namespace"), the red one included
        other = "blue-" + uuid.uuid4().hex[:6]
        cluster.ensure_namespace(other)
        cluster.create_pod(red, "after", [{"name": n, "interface": "net0"}])
        cluster.create_pod(other, "stranger", [{"name": n, "interface": "net0"}])
        for ns_, pod in ((red, "after"), (other, "stranger")):
            err = cluster.pod_error(ns_, pod, timeout=30)
            assert err.startswith(f"network {n} admits no namespace: its namespaceSelector cannot be read"), err
            assert "ovnIfaceList" not in cluster.annotations(ns_, pod)
        assert not any(p.startswith((f"{red}_after", f"{other}_")) for p in cluster.nb_pod_ports())
        # the pod attached before keeps its address
        assert cluster.iface_list(red, "before") == before
        assert f"{red}_before_net0" in cluster.nb_pod_ports()

        # the schema and the parser agree again: the API refuses what the operator cannot read
        stack.apply_crds()
        wait_until(lambda: not _api_accepts(cluster, BAD), timeout=20, what="the strict schema back")
        # a readable selector again: the admitted namespace's pod is attached, the other one is not
        cluster.patch_vnet_spec(n, {"namespaceSelector": {"matchExpressions": [
            {"key": "team", "operator": "In", "values": ["red"]}]}})
        cluster.wait_ready(n, timeout=30)
        assert cluster.iface_list(red, "after", timeout=30)[0]["name"] == n
        wait_until(lambda: "does not admit pods from namespace" in
                   cluster.annotations(other, "stranger").get("ovnNetworkError", ""),
                   timeout=30, what="the other namespace still refused, now by the selector")
        cluster.delete_pod(other, "stranger", wait=False)
    finally:
        stack.apply_crds()
        stack.start_operator(OPERATOR_ENV)
        for p in ("before", "after"):
            cluster.delete_pod(red, p, wait=False)
        wait_until(lambda: (cluster.vnet(n).get("status") or {}).get("usedIPs") == 0, timeout=30, what="released")
        cluster.delete_vnet(n)
