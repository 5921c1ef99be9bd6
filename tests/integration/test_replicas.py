"""Two operator replicas with leader election: only the Lease holder acts; killing it hands over
within the Lease duration; never two allocations for one interface."""
from __future__ import annotations

import signal
import sys
import time
import urllib.error
import urllib.request

import kubernetes

from harness.stack import free_port
from tests.integration.conftest import OPERATOR_ENV
from tests.integration.kit import Cluster, check_invariant, wait_until

LEASE_S = 6
RETRY_S = 1      # the standby's acquire retry (leader.LeaseConfig.retry)
REBUILD_S = 3    # from taking the Lease to /leader 200: the rebuild of a small state


def _ready(port: int) -> int:
    """200 when this replica leads and has rebuilt its state, 503 on standby."""
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/leader", timeout=1).status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_two_replicas_one_acts_and_hand_over(cluster: Cluster, ns: str, subnet, net_name) -> None:
    stack = cluster.stack
    stack.stop_operator()
    ports = {"replica-a": free_port(), "replica-b": free_port()}
    env = {**OPERATOR_ENV, "OVNVNET_LEADER_ELECT": "true", "OVNVNET_LEASE_DURATION": str(LEASE_S),
           "OVNVNET_LEASE_RENEW": "2", "OVNVNET_NAMESPACE": "default"}

    def spawn(name: str) -> None:
        stack._spawn(name, [sys.executable, "-m", "ovnvnet"],
                     env=stack.operator_env({**env, "OVNVNET_HEALTH_PORT": str(ports[name]), "POD_NAME": name}))

    n = net_name("ha")
    try:
        spawn("replica-a")
        wait_until(lambda: _ready(ports["replica-a"]) == 200, 60, what="replica-a leads")
        spawn("replica-b")
        wait_until(lambda: _ready(ports["replica-b"]) == 503, 30, what="replica-b on standby")
        lease = kubernetes.client.CoordinationV1Api(cluster.core.api_client).read_namespaced_lease(
            "ovnvnet-operator", "default")
        assert lease.spec.holder_identity == "replica-a"

        cluster.create_vnet(n, subnet())
        cluster.wait_ready(n)
        for i in range(10):
            cluster.create_pod(ns, f"h{i}", [{"name": n, "interface": "net0"}])
        before = {f"h{i}": cluster.iface_list(ns, f"h{i}")[0]["ip_address"] for i in range(10)}
        assert "standby" in open(stack.logs / "replica-b.log").read()
        assert "attached" not in open(stack.logs / "replica-b.log").read()

        # kill the leader outright: the standby takes the Lease once it expires (at most the Lease
        # duration after the leader's last renewal, so after its death) plus one retry period, and
        # answers /leader 200 once it has rebuilt its state
        coord = kubernetes.client.CoordinationV1Api(cluster.core.api_client)
        died = time.monotonic()
        stack.kill("replica-a", signal.SIGKILL)
        took_lease = serving = None
        while serving is None and time.monotonic() - died < LEASE_S + 30:
            if took_lease is None and coord.read_namespaced_lease(
                    "ovnvnet-operator", "default").spec.holder_identity == "replica-b":
                took_lease = time.monotonic() - died
            if _ready(ports["replica-b"]) == 200:
                serving = time.monotonic() - died
            time.sleep(0.05)
        print(f"\nhandover after SIGKILL of the leader (lease {LEASE_S}s, retry {RETRY_S}s): Lease taken after "
              f"{took_lease}s, /leader 200 after {serving}s")
        assert took_lease is not None and took_lease <= LEASE_S + RETRY_S + 0.5, took_lease
        assert serving is not None and serving <= LEASE_S + RETRY_S + REBUILD_S, serving
        for i in range(10, 20):
            cluster.create_pod(ns, f"h{i}", [{"name": n, "interface": "net0"}])
        after = {f"h{i}": cluster.iface_list(ns, f"h{i}", timeout=60)[0]["ip_address"] for i in range(20)}
        assert {k: after[k] for k in before} == before          # nothing changed for existing pods
        assert len(set(after.values())) == 20                   # never one address twice
        check_invariant(cluster, [n])

        # a graceful stop releases the lease at once
        spawn("replica-a")
        wait_until(lambda: _ready(ports["replica-a"]) == 503, 30, what="replica-a back on standby")
        stack.kill("replica-b", signal.SIGTERM)
        stopped = time.monotonic()
        wait_until(lambda: _ready(ports["replica-a"]) == 200, 30, what="replica-a leads again")
        assert time.monotonic() - stopped < LEASE_S, "a released lease should be taken before it expires"
        cluster.create_pod(ns, "h20", [{"name": n, "interface": "net0"}])
        assert cluster.iface_list(ns, "h20")[0]["ip_address"] not in after.values()
        check_invariant(cluster, [n])
    finally:
        for i in range(21):
            cluster.delete_pod(ns, f"h{i}", wait=False)
        for name in ports:
            stack.kill(name, signal.SIGTERM)
        stack.start_operator(OPERATOR_ENV)
        if cluster.vnet_exists(n):
            wait_until(lambda: (cluster.vnet(n).get("status") or {}).get("usedIPs") == 0, 30, what="released")
            cluster.delete_vnet(n)
