"""Crash-and-churn scenario: pods created and deleted (each on 1 to 3 networks) while the operator
is killed with SIGKILL at random moments and restarted. Used by the reliability test (one short
round) and by `make soak` (many rounds, a table per round).

After the churn it waits for convergence and checks the invariant on the real systems; a watch
records every `ovnIfaceList` value each pod ever had, so a pod attached twice, or whose address
changed, is caught too.
"""
from __future__ import annotations

import argparse
import json
import random
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import kubernetes

from harness.kit import Cluster, check_invariant, wait_until
from harness.stack import Stack


@dataclass
class ChurnResult:
    created: int = 0
    deleted: int = 0
    kills: int = 0
    convergence_s: list[float] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def summary(self) -> str:
        conv = ", ".join(f"{c:.1f}" for c in self.convergence_s) or "-"
        return (f"churn: {self.created} pods created, {self.deleted} deleted, {self.kills} operator kills; "
                f"convergence after each restart (s): {conv}; invariant violations: {len(self.violations)}; "
                f"{self.duration_s:.0f}s")


class IfaceWatch:
    """Records every distinct ovnIfaceList value per pod UID, from a real watch."""

    def __init__(self, cluster: Cluster, namespace: str):
        self.cluster, self.namespace = cluster, namespace
        self.seen: dict[str, set[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> IfaceWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        w = kubernetes.watch.Watch()
        while not self._stop.is_set():
            try:
                for ev in w.stream(self.cluster.core.list_namespaced_pod, self.namespace, timeout_seconds=5):
                    pod = ev["object"]
                    raw = (pod.metadata.annotations or {}).get("ovnIfaceList")
                    if raw:
                        self.seen.setdefault(pod.metadata.uid, set()).add(raw)
                    if self._stop.is_set():
                        break
            except Exception:  # noqa: BLE001 - API restarts in other scenarios: keep watching
                time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def changed(self) -> dict[str, set[str]]:
        return {uid: vals for uid, vals in self.seen.items() if len(vals) > 1}


def all_attached(cluster: Cluster, namespace: str) -> bool:
    pods = cluster.core.list_namespaced_pod(namespace).items
    return all("ovnIfaceList" in (p.metadata.annotations or {}) for p in pods if not p.metadata.deletion_timestamp)


def run_churn(stack: Stack, cluster: Cluster, *, pods: int = 300, kills: int = 5, networks: list[str],
              operator_env: dict[str, str], seed: int | None = None, in_flight: int = 60,
              log=print) -> ChurnResult:
    rnd = random.Random(seed)
    ns = "churn-" + uuid.uuid4().hex[:6]
    cluster.ensure_namespace(ns)
    result = ChurnResult()
    watch = IfaceWatch(cluster, ns).start()
    kill_at = sorted(rnd.sample(range(10, pods), kills))
    alive: list[str] = []
    started = time.monotonic()
    down_since: float | None = None
    down_for = 0.0
    i = 0
    while result.created < pods:
        if alive and (len(alive) >= in_flight or rnd.random() < 0.35):
            victim = alive.pop(rnd.randrange(len(alive)))
            cluster.delete_pod(ns, victim, wait=False)
            result.deleted += 1
        else:
            name = f"c{result.created}"
            nets = rnd.sample(networks, rnd.randint(1, min(3, len(networks))))
            cluster.create_pod(ns, name, [{"name": n, "interface": f"net{k}"} for k, n in enumerate(nets)])
            alive.append(name)
            time.sleep(rnd.uniform(0, 0.03))
            result.created += 1
            if kill_at and result.created >= kill_at[0] and down_since is None:  # a kill needs a live operator
                kill_at.pop(0)
                stack.stop_operator(signal.SIGKILL)
                result.kills += 1
                down_since = time.monotonic()
                down_for = rnd.uniform(0.5, 3.0)   # churn goes on while it is down
        if down_since is not None and time.monotonic() - down_since >= down_for:
            t0 = time.monotonic()
            stack.start_operator(operator_env)
            wait_until(lambda: all_attached(cluster, ns), 120, 0.3, what="every live pod attached after restart")
            result.convergence_s.append(time.monotonic() - t0)
            log(f"  kill {result.kills}: down {t0 - down_since:.1f}s, converged {result.convergence_s[-1]:.1f}s "
                f"after restart ({len(alive)} live pods)")
            down_since = None
        i += 1

    def restart_and_converge() -> None:
        t0 = time.monotonic()
        stack.start_operator(operator_env)
        wait_until(lambda: all_attached(cluster, ns), 120, 0.3, what="every live pod attached after restart")
        result.convergence_s.append(time.monotonic() - t0)

    while kill_at:  # kill points that fell in a down period: take them now, on a live operator
        kill_at.pop(0)
        if down_since is not None:
            restart_and_converge()
            down_since = None
        stack.stop_operator(signal.SIGKILL)
        result.kills += 1
        time.sleep(rnd.uniform(0.5, 2.0))
        restart_and_converge()
    if down_since is not None:
        restart_and_converge()
    wait_until(lambda: all_attached(cluster, ns), 120, 0.3, what="every live pod attached")
    try:
        check_invariant(cluster, networks, timeout=60)
    except AssertionError as exc:
        result.violations.append(str(exc))
    for uid, vals in watch.changed().items():
        result.violations.append(f"pod {uid} had {len(vals)} different ovnIfaceList values: {sorted(vals)}")
    # tear down: everything released again
    for name in alive:
        cluster.delete_pod(ns, name, wait=False)
    result.deleted += len(alive)
    try:
        wait_until(lambda: all(((cluster.vnet(n).get("status") or {}).get("usedIPs") == 0) for n in networks),
                   120, 0.5, what="every allocation released")
        check_invariant(cluster, networks, timeout=60)
    except AssertionError as exc:
        result.violations.append(f"after teardown: {exc}")
    watch.stop()
    cluster.core.delete_namespace(ns)
    result.duration_s = time.monotonic() - started
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="crash-and-churn soak on a private local stack")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pods", type=int, default=300, help="pods created per round")
    ap.add_argument("--kills", type=int, default=5, help="operator SIGKILLs per round")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--dir", default=None, help="stack directory (default: a temporary one)")
    args = ap.parse_args(argv)
    import tempfile
    root = Path(args.dir or tempfile.mkdtemp(prefix="ovnvnet-soak-"))
    stack = Stack(root)
    env = {"OVNVNET_SWEEP_INTERVAL": "2", "OVNVNET_RETRY_INTERVAL": "1"}
    rows = []
    try:
        stack.up(operator=False)
        stack.start_operator(env)
        cluster = Cluster(stack)
        nets = []
        for k in range(3):
            name = f"soak-{k}"
            cluster.create_vnet(name, f"10.{200 + k}.0.0/22")
            cluster.wait_ready(name)
            nets.append(name)
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}")
            res = run_churn(stack, cluster, pods=args.pods, kills=args.kills, networks=nets,
                            operator_env=env, seed=None if args.seed is None else args.seed + r)
            rows.append(res)
            print("  " + res.summary())
    finally:
        stack.down()
    print()
    print(f"{'round':>5} {'created':>8} {'deleted':>8} {'kills':>6} {'conv p50 s':>11} {'conv max s':>11} "
          f"{'violations':>11} {'time s':>7}")
    for r, res in enumerate(rows, 1):
        conv = sorted(res.convergence_s) or [0.0]
        print(f"{r:>5} {res.created:>8} {res.deleted:>8} {res.kills:>6} {conv[len(conv) // 2]:>11.1f} "
              f"{conv[-1]:>11.1f} {len(res.violations):>11} {res.duration_s:>7.0f}")
    bad = sum(len(r.violations) for r in rows)
    for res in rows:
        for v in res.violations:
            print("VIOLATION:", v[:500])
    print(json.dumps({"rounds": len(rows), "violations": bad}))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
