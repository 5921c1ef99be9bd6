"""Faults survived, each ending with the invariant check on the real systems."""
from __future__ import annotations

import signal
import threading
import time

from harness.soak import run_churn
from tests.integration.conftest import OPERATOR_ENV
from tests.integration.kit import Cluster, check_invariant, wait_until


def test_churn_with_operator_killed_five_times(cluster: Cluster, subnet, net_name) -> None:
    nets = [net_name(f"churn{k}") for k in range(3)]
    for n in nets:
        cluster.create_vnet(n, subnet().replace("/24", "/24"))
        cluster.wait_ready(n)
    try:
        res = run_churn(cluster.stack, cluster, pods=300, kills=5, networks=nets, operator_env=OPERATOR_ENV,
                        seed=1234, in_flight=60)
        print("\n" + res.summary())
        assert res.kills == 5 and res.created == 300
        assert not res.violations, res.violations
    finally:
        for n in nets:
            cluster.delete_vnet(n)


def test_api_server_restart_during_churn(cluster: Cluster, ns: str, subnet, net_name) -> None:
    n = net_name("apirestart")
    cluster.create_vnet(n, subnet())
    cluster.wait_ready(n)
    stack = cluster.stack
    created, deleted = [], []
    for i in range(10):
        cluster.create_pod(ns, f"a{i}", [{"name": n, "interface": "net0"}])
        created.append(f"a{i}")
    for p in created:
        cluster.iface_list(ns, p)
    # restart the API server; while it is down nothing can be created, so the churn on both sides
    # of the restart is what the operator must catch up with (its watch resumes)
    stack.kill("kube-apiserver", signal.SIGKILL)
    time.sleep(2)
    stack.up(operator=False)   # starts only what is missing: the API server
    for i in range(10, 20):
        cluster.create_pod(ns, f"a{i}", [{"name": n, "interface": "net0"}])
        created.append(f"a{i}")
    for p in ("a0", "a1", "a2"):
        cluster.delete_pod(ns, p, wait=False)
        deleted.append(p)
    live = [p for p in created if p not in deleted]
    for p in live:
        cluster.iface_list(ns, p, timeout=90)
    check_invariant(cluster, [n], timeout=60)
    assert stack.running("operator"), "the operator must survive an API server restart"
    for p in live:
        cluster.delete_pod(ns, p, wait=False)
    wait_until(lambda: cluster.vnet(n)["status"]["usedIPs"] == 0, 60, what="released")
    cluster.delete_vnet(n)


def test_nb_raft_leader_killed_during_churn(cluster: Cluster, subnet, net_name) -> None:
    from harness.raft import NbRaftCluster
    stack = cluster.stack
    raft = NbRaftCluster(stack).start()
    env = {**OPERATOR_ENV, "OVN_NB_DB": raft.remote}
    stack.stop_operator()
    stack.start_operator(env)
    rc = Cluster(stack, nb_remote=raft.remote)
    nets = [net_name(f"raft{k}") for k in range(2)]
    try:
        for n in nets:
            rc.create_vnet(n, subnet())
            rc.wait_ready(n)
        killed: dict = {}

        def kill_leader_soon() -> None:
            time.sleep(1.5)
            leader = raft.leader()
            killed["member"] = leader.name if leader else None
            if leader:
                stack.kill(leader.name, signal.SIGKILL)

        t = threading.Thread(target=kill_leader_soon)
        t.start()
        res = run_churn(stack, rc, pods=80, kills=0, networks=nets, operator_env=env, seed=7, in_flight=40)
        t.join()
        print(f"\nRAFT: killed leader {killed['member']}; new leader {raft.leader().name}; {res.summary()}")
        assert killed["member"] is not None
        assert raft.leader() is not None and raft.leader().name != killed["member"]
        assert not res.violations, res.violations
        assert stack.running("operator")
    finally:
        for n in nets:
            rc.delete_vnet(n)
        wait_until(lambda: not any(rc.vnet_exists(n) for n in nets), 30, what="networks deleted")
        stack.stop_operator()
        raft.stop()
        stack.start_operator(OPERATOR_ENV)
