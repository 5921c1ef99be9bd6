"""Issue 9 point 3 at the rebuild level: hundreds of pods carrying random values in every annotation
the operator reads (deep nesting, huge values, wrong JSON types, text that is not what it claims),
created while the operator is down; the operator restarts, keeps every attached pod's address, and
attaches a new pod within seconds. One bad pod never stops the rebuild, a retry round or the start."""
from __future__ import annotations

import json
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kubernetes.client.rest import ApiException

from tests.integration.conftest import OPERATOR_ENV
from tests.integration.kit import Cluster, wait_until

KEYS = ("ovnNetwork", "ovnIfaceList", "ovn", "ovnNetworkError", "ovnNetworkErrorRetry", "ovnvnet.io/seal")
PODS = 300
ATTACH_WITHIN_S = 10

safe_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | safe_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(safe_text, inner, max_size=4),
    max_leaves=20)


def iface_like(network: str) -> st.SearchStrategy:
    """Almost valid results and requests: the right keys with wrong, odd or plausible values."""
    field = st.one_of(st.just(network), safe_text, st.integers(), st.none(), json_values,
                      st.builds(lambda a, b: f"10.{a}.{b}.5", st.integers(0, 300), st.integers(0, 300)))
    entry = st.fixed_dictionaries({}, optional={k: field for k in (
        "name", "interface", "ip_address", "mac_address", "prefix_length", "gateway_ip", "gateway",
        "default_gateway", "port", "routes", "mtu")})
    return st.lists(entry, max_size=3).map(json.dumps)


def nasty_values(network: str) -> st.SearchStrategy:
    return st.one_of(
        safe_text,
        st.integers(1, 5000).map(lambda n: "[" * n),                      # deep nesting (RecursionError)
        st.integers(1, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
        st.integers(1, 30_000).map(lambda n: json.dumps([{"name": "x" * n}])),   # huge values
        st.integers(1000, 30_000).map(lambda n: "9" * n),                  # a huge number
        json_values.map(json.dumps),                                       # wrong JSON types
        st.binary(max_size=64).map(lambda b: b.decode("latin-1")),         # bytes read as text
        st.sampled_from(["\x00", "\\xff\\xfe", "\ufeff[]", "null", "true", "1e999", "[null]", "{}", "\"\"",
                         '{"ip_address": "10.0.0.5/24", "gateway_ip": "10.0.0.1"}']),
        iface_like(network),
    )


# the inputs known to have stopped the operator (issue 9 point 3), always among the pods
KILLERS = [
    {"ovn": "[" * 2000},                                    # RecursionError in the legacy result check
    {"ovn": '{"gateway_ip": ' * 2000},
    {"ovnIfaceList": "[" * 2000},
    {"ovnNetwork": "[" * 2000},
    {"ovnNetwork": "[" * 2000, "ovnIfaceList": "[" * 2000},
    {"ovnIfaceList": json.dumps([{"name": ["x"], "interface": {}, "ip_address": 5}])},
    {"ovnIfaceList": "9" * 30_000},
]


def annotations_for(network: str) -> st.SearchStrategy:
    return st.dictionaries(st.sampled_from(KEYS), nasty_values(network), min_size=1, max_size=len(KEYS))


def generated(strategy: st.SearchStrategy, count: int) -> list:
    """`count` independent examples of `strategy` (one Hypothesis example per pod: a list of
    hundreds of such values would overrun Hypothesis' per-example data budget)."""
    out: list = []

    @settings(max_examples=count, phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value) -> None:
        out.append(value)

    collect()
    return out[:count]


def _create(cluster: Cluster, ns: str, name: str, annotations: dict[str, str]) -> bool:
    body = {"metadata": {"name": name, "annotations": annotations},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": "node-1"}}
    try:
        cluster.core.create_namespaced_pod(ns, body)
        return True
    except ApiException as exc:
        if exc.status in (400, 422):   # e.g. annotations over the API server's 256 KiB limit
            return False
        raise


def test_rebuild_survives_hundreds_of_random_annotations(cluster: Cluster, subnet, net_name) -> None:
    n = net_name("prop")
    cluster.create_vnet(n, subnet())
    cluster.wait_ready(n)
    stack = cluster.stack
    good_ns = "t-" + uuid.uuid4().hex[:8]
    cluster.ensure_namespace(good_ns)
    cluster.create_pod(good_ns, "good", [{"name": n, "interface": "net0"}])
    good = cluster.iface_list(good_ns, "good")
    rounds = {"n": 0}

    def run() -> None:
        pod_annotations = KILLERS + generated(annotations_for(n), PODS - len(KILLERS))
        rounds["n"] += 1
        junk_ns = "j-" + uuid.uuid4().hex[:8]
        cluster.ensure_namespace(junk_ns)
        stack.stop_operator(signal.SIGKILL)
        try:
            with ThreadPoolExecutor(16) as pool:
                created = sum(pool.map(lambda ia: _create(cluster, junk_ns, f"p{ia[0]}", ia[1]),
                                       enumerate(pod_annotations)))
            assert len(pod_annotations) >= PODS * 0.9 and created >= len(pod_annotations) * 0.9, \
                f"only {created} of {PODS} pods could be created"
            started = time.monotonic()
            stack.start_operator(OPERATOR_ENV)      # raises if the operator does not become leader+ready
            ready = time.monotonic()
            name = f"fresh{rounds['n']}"
            cluster.create_pod(good_ns, name, [{"name": n, "interface": "net0"}])
            fresh = cluster.iface_list(good_ns, name, timeout=ATTACH_WITHIN_S)
            print(f"\n{created} pods with random annotations; operator ready {ready - started:.1f}s after "
                  f"its start, a new pod attached {time.monotonic() - ready:.1f}s later")
            assert cluster.iface_list(good_ns, "good") == good
            assert fresh[0]["ip_address"] != good[0]["ip_address"]
            assert stack.running("operator")
            assert "rebuild from records failed" not in stack.log_tail("operator", 400)
        finally:
            cluster.core.delete_collection_namespaced_pod(junk_ns, grace_period_seconds=0)
            cluster.core.delete_namespace(junk_ns)

    try:
        for _ in range(2):
            run()
        assert rounds["n"] == 2
        time.sleep(1)
        assert stack.running("operator")
    finally:
        stack.start_operator(OPERATOR_ENV)
        for i in range(rounds["n"] + 1):
            cluster.delete_pod(good_ns, f"fresh{i}", wait=False)
        cluster.delete_pod(good_ns, "good", wait=False)
        wait_until(lambda: cluster.vnet(n)["status"]["usedIPs"] == 0, timeout=60, what="released")
        cluster.delete_vnet(n)
