"""Crash-and-churn scenario: pods created and deleted (each on 1 to 3 networks) while the operator
is killed with SIGKILL at random moments and restarted. Used by the reliability test (one short
round) and by `make soak` (many rounds, a table per round).

After each operator restart, once every live pod is attached, the invariant is checked on the real
systems there (and at the end, and after teardown). A watch resumed by resourceVersion sees every
pod version in etcd order: a pod whose `ovnIfaceList` ever changed is caught, and each
(network, address) and (network, MAC) a pod held is an interval from the resourceVersion it was
annotated at to the one it was deleted at; two pods' intervals on one key must not overlap. The
watch must have seen every pod created, deleted and shown attached, or the run fails.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import kubernetes

from harness.kit import Cluster, check_invariant, wait_until
from harness.proc import pid_alive
from harness.stack import Stack


@dataclass
class ChurnResult:
    created: int = 0
    deleted: int = 0
    kills: int = 0
    api_restarts: int = 0
    operator_pids: list[int] = field(default_factory=list)   # one per operator run (kills + 1 distinct)
    attached: int = 0          # pods the watch saw attached
    intervals: int = 0         # (network, address) holdings the watch recorded, annotated -> deleted
    reused: int = 0            # addresses held by more than one pod over the run (so overlap was checkable)
    checkpoints: int = 0       # invariant checks passed at converged points
    retried: int = 0           # create/delete calls that met an unreachable API server and were retried
    watch_errors: int = 0      # times the watch was cut (and resumed from its resourceVersion)
    gaps: int = 0              # resumes refused (410 after an API server restart): relisted
    undecided: int = 0         # pairs of holdings of one key whose order a gap hides
    convergence_s: list[float] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def summary(self) -> str:
        conv = ", ".join(f"{c:.1f}" for c in self.convergence_s) or "-"
        return (f"churn: {self.created} pods created, {self.deleted} deleted, {self.attached} seen attached, "
                f"{self.kills} operator kills, {self.api_restarts} API server restarts ({self.retried} calls retried, "
                f"watch cut {self.watch_errors} times, {self.gaps} gaps relisted); "
                f"{self.intervals} "
                f"holdings ({self.reused} addresses reused, {self.undecided} pairs undecided); "
                f"convergence after each restart (s): {conv}; "
                f"invariant checks passed: {self.checkpoints}; violations: {len(self.violations)}; "
                f"{self.duration_s:.0f}s")


@dataclass
class Holding:
    """One pod holding one key, from its annotation to its deletion, as resourceVersion bounds:
    exact (lo == hi) when the watch saw the event, a range when it fell in a gap the watch had to
    relist over (an API server restart drops the watch history)."""
    key: tuple[str, str]     # (network, "ip x" | "mac y")
    uid: str
    start: tuple[int, int]
    end: tuple[float, float]  # (inf, inf) while alive


def _overlap(a: Holding, b: Holding) -> bool | None:
    """True if the two certainly overlapped, False if certainly not, None if a gap hides it."""
    if a.start[1] <= b.end[0] and b.start[1] <= a.end[0]:
        return True
    if a.start[0] > b.end[1] or b.start[0] > a.end[1]:
        return False
    return None


class IfaceWatch:
    """One list+watch of the churn namespace, resumed from the last resourceVersion after every
    stream end or error, so it sees every pod version in etcd order. Records per pod UID every
    distinct ovnIfaceList, the resourceVersion it was first annotated at and the one it was
    deleted at. A resume refused with 410 Gone (after an API server restart) is a gap: the watch
    relists, and what happened inside the gap is known only within bounds (see :class:`Holding`)."""

    def __init__(self, cluster: Cluster, namespace: str):
        self.cluster, self.namespace = cluster, namespace
        self.seen: dict[str, set[str]] = {}
        self.names: dict[str, str] = {}            # uid -> pod name, every pod the watch saw
        self.last: dict[str, int] = {}             # uid -> last rv it was seen alive at
        self.attached: dict[str, tuple[int, int, str]] = {}  # uid -> (rv bounds first annotated, value)
        self.deleted: dict[str, tuple[int, int]] = {}        # uid -> rv bounds of its deletion
        self.errors: list[str] = []
        self.gaps: list[tuple[int, int]] = []
        self.rv = "0"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> IfaceWatch:
        self.rv = self.cluster.core.list_namespaced_pod(self.namespace).metadata.resource_version
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                w = kubernetes.watch.Watch()
                for ev in w.stream(self.cluster.core.list_namespaced_pod, self.namespace, resource_version=self.rv,
                                   timeout_seconds=5, allow_watch_bookmarks=True):
                    self._event(ev)
                    if self._stop.is_set():
                        break
            except Exception as exc:  # noqa: BLE001 - API server restarts: resume from self.rv
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                if isinstance(exc, kubernetes.client.rest.ApiException) and exc.status == 410:
                    try:
                        self._relist()
                    except Exception as again:  # noqa: BLE001 - still restarting: the next 410 relists
                        self.errors.append(f"relist: {again}"[:200])
                time.sleep(0.5)

    def _event(self, ev: dict) -> None:
        meta = ev["raw_object"]["metadata"]
        self.rv = meta["resourceVersion"]
        if ev["type"] == "BOOKMARK":
            return
        uid, rv = meta["uid"], int(meta["resourceVersion"])
        self.names[uid] = meta["name"]
        raw = (meta.get("annotations") or {}).get("ovnIfaceList")
        if raw:
            self.seen.setdefault(uid, set()).add(raw)
            self.attached.setdefault(uid, (rv, rv, raw))
        if ev["type"] == "DELETED":
            self.deleted[uid] = (rv, rv)
        else:
            self.last[uid] = rv

    def _relist(self) -> None:
        """After a gap from self.rv: what changed in it is known within (self.rv, list rv]."""
        before = int(self.rv)
        listed = self.cluster.core.list_namespaced_pod(self.namespace)
        now = int(listed.metadata.resource_version)
        self.gaps.append((before, now))
        present = set()
        for pod in listed.items:
            uid, rv = pod.metadata.uid, int(pod.metadata.resource_version)
            present.add(uid)
            self.names[uid] = pod.metadata.name
            self.last[uid] = rv
            raw = (pod.metadata.annotations or {}).get("ovnIfaceList")
            if raw:
                self.seen.setdefault(uid, set()).add(raw)
                self.attached.setdefault(uid, (before, rv, raw))
        for uid in set(self.names) - present - set(self.deleted):
            self.deleted[uid] = (self.last.get(uid, before), now)
        self.rv = listed.metadata.resource_version

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def changed(self) -> dict[str, set[str]]:
        return {uid: vals for uid, vals in self.seen.items() if len(vals) > 1}

    def holdings(self) -> list[Holding]:
        out = []
        for uid, (lo, hi, raw) in self.attached.items():
            end = self.deleted.get(uid, (float("inf"), float("inf")))
            for i in json.loads(raw):
                for ip in i.get("ip_addresses") or [i["ip_address"]]:   # every family (issue 13)
                    out.append(Holding((i["name"], "ip " + ip.split("/")[0]), uid, (lo, hi), end))
                out.append(Holding((i["name"], "mac " + i["mac_address"]), uid, (lo, hi), end))
        return out

    def overlaps(self) -> tuple[list[str], int, int]:
        """Pairs of pods holding one address (or MAC) of a network at the same time; the number
        of addresses held by more than one pod over the run; pairs a relist gap left undecided."""
        by_key: dict[tuple[str, str], list[Holding]] = {}
        for h in self.holdings():
            by_key.setdefault(h.key, []).append(h)
        bad, reused, undecided = [], 0, 0
        for key, hs in by_key.items():
            reused += len(hs) > 1 and key[1].startswith("ip ")
            for i, a in enumerate(hs):
                for b in hs[i + 1:]:
                    verdict = _overlap(a, b)
                    undecided += verdict is None
                    if verdict:
                        bad.append(f"{key[0]} {key[1]} held by {self.names.get(a.uid)} (rv {a.start}..{a.end}) "
                                   f"and {self.names.get(b.uid)} (rv {b.start}..{b.end})")
        return bad, reused, undecided


def attached_uids(cluster: Cluster, namespace: str) -> set[str] | None:
    """UIDs of the live pods if every one of them is attached, else None (also while the API
    server is unreachable)."""
    try:
        items = cluster.core.list_namespaced_pod(namespace).items
    except Exception:  # noqa: BLE001 - an API server restart in progress
        return None
    pods = [p for p in items if not p.metadata.deletion_timestamp]
    if all("ovnIfaceList" in (p.metadata.annotations or {}) for p in pods):
        return {p.metadata.uid for p in pods}
    return None


def _unattached_report(stack: Stack, cluster: Cluster, namespace: str) -> str:
    """Which live pods have no result, their annotations, and what the operator's log says of them."""
    try:
        pods = [p for p in cluster.core.list_namespaced_pod(namespace).items if not p.metadata.deletion_timestamp
                and "ovnIfaceList" not in (p.metadata.annotations or {})]
    except Exception as exc:  # noqa: BLE001 - a report, best effort
        return f"(pods not listed: {exc})"
    log = (stack.root / "logs" / "operator.log")
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    out = [f"{len(pods)} live pods without ovnIfaceList:"]
    for p in pods[:5]:
        out.append(f"  {p.metadata.name} uid={p.metadata.uid} rv={p.metadata.resource_version} "
                   f"annotations={ {k: v[:120] for k, v in (p.metadata.annotations or {}).items()} }")
        mine = re.compile(rf"{namespace}/{p.metadata.name}\b|{p.metadata.uid}")
        out.extend("    log: " + ln[:300] for ln in [ln for ln in lines if mine.search(ln)][-8:])
    out.extend("  operator log: " + ln[:300] for ln in lines[-25:])
    return "\n".join(out)


def _all_attached(cluster: Cluster, namespace: str) -> list[set[str]] | None:
    """For wait_until: a one-element list (truthy even when no pod is alive) or None."""
    uids = attached_uids(cluster, namespace)
    return None if uids is None else [uids]


def _retrying(fn, *args, what: str, result: ChurnResult, ok: tuple[int, ...], timeout: float = 90, **kwargs):
    """Call `fn` until the API answers (an API server restart refuses connections meanwhile);
    a status in `ok` (409 on a create, 404 on a delete) means an earlier attempt got through.
    Any other answer is retried until `timeout`: a restarting API server answers 403, 404 or
    429 for a moment (its caches are not synced yet) before it answers for real; a lasting
    refusal still fails, with the API's last message."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn(*args, **kwargs)
        except kubernetes.client.rest.ApiException as exc:
            if exc.status in ok:
                return None
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: the API kept answering {exc.status} for {timeout}s: "
                                     f"{(exc.body or exc.reason)!s:.300}") from None
        except Exception as exc:  # noqa: BLE001 - connection refused/reset while the API server is down
            if time.monotonic() > deadline:
                raise AssertionError(f"API unreachable for {timeout}s: {what}: {exc!s:.200}") from None
        result.retried += 1
        time.sleep(0.3)


def run_churn(stack: Stack, cluster: Cluster, *, pods: int = 300, kills: int = 5, networks: list[str],
              operator_env: dict[str, str], seed: int | None = None, in_flight: int = 60,
              api_restarts: int = 0, log=print) -> ChurnResult:
    """Create `pods` pods (deleting some as it goes, at most `in_flight` alive) while the operator
    is SIGKILLed `kills` times, and the API server `api_restarts` times (churn keeps going into
    the outage, each request retried until the API answers). After each operator restart, once
    every live pod is attached, the invariant is checked there; at the end and after teardown
    too. The watch's intervals prove no (network, address) or MAC was held by two pods at once."""
    rnd = random.Random(seed)
    ns = "churn-" + uuid.uuid4().hex[:6]
    cluster.ensure_namespace(ns)
    result = ChurnResult()
    watch = IfaceWatch(cluster, ns).start()
    try:
        kill_at = sorted(rnd.sample(range(10, pods), kills))
        # API server outages spread over the run (each in its own stretch of pods), so that one has
        # ended before the next begins
        span = max(1, (pods - 10) // max(1, api_restarts))
        api_at = [10 + k * span + rnd.randrange(max(1, span // 3)) for k in range(api_restarts)]
        alive: list[str] = []
        seen_attached: set[str] = set()   # UIDs the API showed attached at converged points
        started = time.monotonic()
        down_since: float | None = None
        down_for = 0.0
        outages: list[threading.Thread] = []
        result.operator_pids.append(stack.pid("operator"))

        def converge_and_check(t0: float, label: str) -> None:
            try:
                [uids] = wait_until(lambda: _all_attached(cluster, ns), 120, 0.3, what="every live pod attached")
            except AssertionError as exc:
                raise AssertionError(f"{label}: {exc}\n{_unattached_report(stack, cluster, ns)}") from None
            seen_attached.update(uids)
            result.convergence_s.append(time.monotonic() - t0)
            result.operator_pids.append(stack.pid("operator"))
            try:
                check_invariant(cluster, networks, timeout=60)
                result.checkpoints += 1
            except AssertionError as exc:
                result.violations.append(f"{label}: {exc}")

        def kill_operator() -> None:
            stack.stop_operator(signal.SIGKILL)
            if stack.pid("operator") is not None or pid_alive(result.operator_pids[-1]):
                result.violations.append(f"kill {result.kills + 1}: the operator survived SIGKILL")
            result.kills += 1

        while result.created < pods:
            if alive and (len(alive) >= in_flight or rnd.random() < 0.35):
                victim = alive.pop(rnd.randrange(len(alive)))
                _retrying(cluster.core.delete_namespaced_pod, victim, ns, grace_period_seconds=0,
                          what=f"delete {victim}", result=result, ok=(404,))
                result.deleted += 1
            else:
                name = f"c{result.created}"
                nets = rnd.sample(networks, rnd.randint(1, min(3, len(networks))))
                request = [{"name": n, "interface": f"net{k}"} for k, n in enumerate(nets)]
                _retrying(cluster.create_pod, ns, name, request, what=f"create {name}", result=result, ok=(409,))
                alive.append(name)
                time.sleep(rnd.uniform(0, 0.03))
                result.created += 1
                # one outage at a time: a second SIGKILL while the first restart waits for /readyz
                # would make that restart fail (the harness racing itself, not a fault under test)
                if api_at and result.created >= api_at[0] and not any(t.is_alive() for t in outages):
                    api_at.pop(0)
                    outages.append(threading.Thread(target=_restart_api_server,
                                                    args=(stack, rnd.uniform(1.0, 3.0), result.violations)))
                    outages[-1].start()
                    result.api_restarts += 1
                if kill_at and result.created >= kill_at[0] and down_since is None:  # a kill needs a live operator
                    kill_at.pop(0)
                    kill_operator()
                    down_since = time.monotonic()
                    down_for = rnd.uniform(0.5, 3.0)   # churn goes on while it is down
            if down_since is not None and time.monotonic() - down_since >= down_for:
                t0 = time.monotonic()
                stack.start_operator(operator_env)
                converge_and_check(t0, f"after restart {result.kills}")
                log(f"  kill {result.kills}: down {t0 - down_since:.1f}s, converged {result.convergence_s[-1]:.1f}s "
                    f"after restart ({len(alive)} live pods)")
                down_since = None
        for t in outages:
            t.join()

        while kill_at:  # kill points that fell in a down period: take them now, on a live operator
            kill_at.pop(0)
            if down_since is not None:
                t0 = time.monotonic()
                stack.start_operator(operator_env)
                converge_and_check(t0, f"after restart {result.kills}")
                down_since = None
            kill_operator()
            time.sleep(rnd.uniform(0.5, 2.0))
            t0 = time.monotonic()
            stack.start_operator(operator_env)
            converge_and_check(t0, f"after restart {result.kills}")
        if down_since is not None:
            t0 = time.monotonic()
            stack.start_operator(operator_env)
            converge_and_check(t0, f"after restart {result.kills}")
        converge_and_check(time.monotonic(), "at the end of the churn")
        result.convergence_s.pop()   # not a restart
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
            result.checkpoints += 1
        except AssertionError as exc:
            result.violations.append(f"after teardown: {exc}")
        _check_watch(watch, result, seen_attached, pods)
        cluster.core.delete_namespace(ns)
    except BaseException:
        # a churn that breaks off (an exception, not a violation) must not leave its pods, their
        # addresses and a stopped operator to the next test: clean up, then let it propagate
        _abandon(stack, cluster, ns, watch, networks, operator_env)
        raise
    result.duration_s = time.monotonic() - started
    return result


def _abandon(stack: Stack, cluster: Cluster, ns: str, watch: IfaceWatch, networks: list[str],
             operator_env: dict[str, str]) -> None:
    """Best-effort teardown of a churn that raised: the watch stopped, the API server and the
    operator running again, the namespace (so every pod) deleted and its addresses released."""
    watch.stop()
    try:
        stack.up(operator=False)
        if not stack.running("operator"):
            stack.start_operator(operator_env)
        cluster.core.delete_collection_namespaced_pod(ns, grace_period_seconds=0)   # no kubelet confirms
        wait_until(lambda: not cluster.core.list_namespaced_pod(ns).items, 120, 0.5, what=f"the pods of {ns} gone")
        cluster.core.delete_namespace(ns)
        wait_until(lambda: all(((cluster.vnet(n).get("status") or {}).get("usedIPs") == 0) for n in networks),
                   120, 0.5, what="every allocation released")
    except Exception as exc:  # noqa: BLE001 - the original failure is the one to report
        print(f"churn teardown after a failure was incomplete: {exc}")


def _restart_api_server(stack: Stack, down_s: float, violations: list[str]) -> None:
    stack.kill("kube-apiserver", signal.SIGKILL)
    time.sleep(down_s)
    try:
        stack.up(operator=False)   # starts only what is missing: the API server
    except Exception as exc:  # noqa: BLE001 - a failed restart is reported, not lost in a thread
        violations.append(f"the API server did not come back after its SIGKILL: {exc}")


def _check_watch(watch: IfaceWatch, result: ChurnResult, seen_attached: set[str], pods: int) -> None:
    """The watch saw everything (every pod created, deleted, and every pod the API showed attached),
    then the intervals it recorded never overlap."""
    try:
        wait_until(lambda: len(watch.names) >= pods and set(watch.names) <= set(watch.deleted), 60, 0.3,
                   what="the watch saw every pod created and deleted")
    except AssertionError as exc:
        result.violations.append(f"watch incomplete: saw {len(watch.names)} of {pods} pods, "
                                 f"{len(set(watch.names) - set(watch.deleted))} never deleted: {exc}")
    watch.stop()
    unseen = seen_attached - set(watch.attached)
    if unseen:
        result.violations.append(f"the watch never saw {len(unseen)} attached pods: {sorted(unseen)[:5]}")
    result.gaps = len(watch.gaps)
    bad, result.reused, result.undecided = watch.overlaps()
    result.violations.extend(f"held by two pods at once: {b}" for b in bad)
    result.attached = len(watch.attached)
    result.watch_errors = len(watch.errors)
    result.intervals = sum(1 for h in watch.holdings() if h.key[1].startswith("ip "))


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
            cluster.create_vnet(name, f"10.{200 + k}.0.0/25")   # small: freed addresses are reused
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
    print(f"{'round':>5} {'created':>8} {'deleted':>8} {'attached':>9} {'kills':>6} {'reused':>7} {'checks':>7} "
          f"{'conv p50 s':>11} {'conv max s':>11} {'violations':>11} {'time s':>7}")
    for r, res in enumerate(rows, 1):
        conv = sorted(res.convergence_s) or [0.0]
        print(f"{r:>5} {res.created:>8} {res.deleted:>8} {res.attached:>9} {res.kills:>6} {res.reused:>7} "
              f"{res.checkpoints:>7} {conv[len(conv) // 2]:>11.1f} {conv[-1]:>11.1f} {len(res.violations):>11} "
              f"{res.duration_s:>7.0f}")
    bad = sum(len(r.violations) for r in rows)
    for res in rows:
        for v in res.violations:
            print("VIOLATION:", v[:500])
    print(json.dumps({"rounds": len(rows), "violations": bad}))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
