"""Faults survived, each ending with the invariant check on the real systems."""
from __future__ import annotations

import signal
import threading
import time

from harness.soak import run_churn
from tests.integration.conftest import OPERATOR_ENV
from tests.integration.kit import Cluster, wait_until


def test_churn_with_operator_killed_five_times(cluster: Cluster, subnet, net_name) -> None:
    """/26 networks (61 addresses each, about 30 held at a time) so the forward cursor wraps
    several times: freed addresses are handed out again, and the watch's intervals check that no
    two pods ever held one at the same time. (With /25 networks the ~370 holdings barely wrapped:
    one run reused only 11 addresses.)"""
    nets = [net_name(f"churn{k}") for k in range(4)]
    for n in nets:
        cluster.create_vnet(n, subnet().replace("/24", "/26"))
        cluster.wait_ready(n)
    try:
        res = run_churn(cluster.stack, cluster, pods=300, kills=5, networks=nets, operator_env=OPERATOR_ENV,
                        seed=1234, in_flight=60)
        print("\n" + res.summary())
        assert not res.violations, res.violations
        assert len(set(res.operator_pids)) == 6 and None not in res.operator_pids, \
            f"five SIGKILLs must leave six distinct operator processes: {res.operator_pids}"
        assert res.checkpoints == 5 + 2, "the invariant held after each restart, at the end and after teardown"
        assert res.attached >= 150, f"the watch saw only {res.attached} pods attached"
        assert res.reused >= 20, f"only {res.reused} addresses were reused: the overlap check had little to compare"
    finally:
        for n in nets:
            cluster.delete_vnet(n)


def test_api_server_restart_during_churn(cluster: Cluster, subnet, net_name) -> None:
    """The API server is SIGKILLed twice while pods are being created and deleted (the churn keeps
    sending requests into the outage, retried until it is back); the operator survives, catches
    up, and the invariant and the watch's intervals hold (the restart drops the watch history:
    the watch relists, and holdings whose order the gap hides are counted as undecided)."""
    nets = [net_name("apirestart")]
    cluster.create_vnet(nets[0], subnet().replace("/24", "/26"))   # 61 addresses: reused within 120 pods
    cluster.wait_ready(nets[0])
    pid = cluster.stack.pid("operator")
    try:
        res = run_churn(cluster.stack, cluster, pods=120, kills=0, api_restarts=2, networks=nets,
                        operator_env=OPERATOR_ENV, seed=99, in_flight=30)
        print("\n" + res.summary())
        assert not res.violations, res.violations
        assert res.api_restarts == 2, f"only {res.api_restarts} of 2 API server outages happened"
        assert res.retried > 0, "no create/delete met the outage: the restart did not happen during churn"
        assert res.watch_errors > 0, "the watch was never cut: the API server did not go down"
        assert cluster.stack.pid("operator") == pid and cluster.stack.running("operator"), \
            "the operator must survive an API server restart (same process)"
        assert res.attached >= 60, f"the watch saw only {res.attached} pods attached"
        assert res.reused >= 20, f"only {res.reused} addresses were reused: the overlap check had little to compare"
    finally:
        cluster.delete_vnet(nets[0])


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
