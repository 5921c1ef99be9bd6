"""Scenario 6: churn.

N pods (default 2,000, 2 interfaces over 4 networks) created and deleted with K (default 50) in
flight: each of K workers creates a pod, waits for its `ovnIfaceList`, deletes it (grace 0), waits
until it is gone, and takes the next. Reported: pods/s through the whole cycle, and afterwards the
reliability invariant (harness.kit.check_invariant: no address held twice, NB ports ==
live interfaces, status == live allocations, exact counters) plus the leftovers: nothing may leak.
Baseline in the same run: the API floor operator under the same churn.
"""
from __future__ import annotations

import argparse
import threading
import time

from bench.common import (
    Kube,
    PodWatcher,
    Result,
    bench_stack,
    log,
    percentile,
    start_api_floor,
    start_operator,
    stop_api_floor,
    unique,
)
from bench.s1_attach import networks, pod_specs

TARGET_RATIO = 0.8


def churn(kube: Kube, ns: str, specs: list, in_flight: int, timeout: float = 60) -> dict:
    cycles: list[float] = []
    errors: list[str] = []
    it = iter(specs)
    lock = threading.Lock()
    with PodWatcher(kube, ns) as watch:
        def worker() -> None:
            while True:
                with lock:
                    item = next(it, None)
                if item is None or errors:
                    return
                name, request = item
                try:
                    t = time.monotonic()
                    kube.create_pod(ns, name, request)
                    watch.wait_annotated([name], timeout)
                    kube.delete_pod(ns, name)
                    watch.wait_deleted([name], timeout)
                    cycles.append(time.monotonic() - t)
                except Exception as exc:  # noqa: BLE001 - reported, stops the run
                    errors.append(f"{name}: {exc}")
                    return
        t0 = time.monotonic()
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(in_flight)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
    if errors:
        raise RuntimeError(f"churn failed ({len(errors)} errors), first: {errors[0]}")
    return {"pods_per_s": len(specs) / wall, "wall_s": wall, "cycle_p50": percentile(cycles, 50),
            "cycle_p99": percentile(cycles, 99)}


def run(n: int = 2000, in_flight: int = 50, *, baseline: bool = True, keep: bool = False) -> Result:
    from harness.kit import Cluster, check_invariant
    nets = networks(4)
    net_names = [name for name, _ in nets]
    res = Result("s6_churn", f"churn: {n:,} pods created and deleted, {in_flight} in flight",
                 params={"pods": n, "in_flight": in_flight, "interfaces": 2, "networks": 4})
    floor = None
    with bench_stack(keep=keep) as stack:
        kube = Kube(stack)
        if baseline:
            ns = unique("floor")
            kube.ensure_namespace(ns)
            start_api_floor(stack)
            try:
                floor = churn(kube, ns, pod_specs(n, net_names), in_flight)
            finally:
                stop_api_floor(stack)
            log(f"API floor churn: {floor}")
        for name, subnet in nets:
            kube.create_vnet(name, subnet)
        start_operator(stack, {"OVNVNET_SWEEP_INTERVAL": "5"})
        kube.wait_vnets_ready(net_names)
        ns = unique("churn")
        kube.ensure_namespace(ns)
        out = churn(kube, ns, pod_specs(n, net_names), in_flight)
        log(f"operator churn: {out}")
        t_inv = time.monotonic()
        cluster = Cluster(stack)
        try:
            counts = check_invariant(cluster, net_names, timeout=60)
            invariant, why = True, ""
        except AssertionError as exc:
            counts, invariant, why = {}, False, str(exc)[:500]
        converge = time.monotonic() - t_inv
        leftover_ports = sum(1 for p in cluster.nb_pod_ports().values()
                             if p["external_ids"].get("ovnvnet.io/pod-namespace") == ns)
        used = {n_: (kube.vnet(n_).get("status") or {}).get("usedIPs") for n_ in net_names}
        leaked_ips = sum(u or 0 for u in used.values())
        stack.stop_operator()
    base = floor["pods_per_s"] if floor else None
    ratio = out["pods_per_s"] / base if base else None
    res.add("churn throughput", out["pods_per_s"], "pods/s", baseline=base, baseline_name="API floor",
            target=f">= {TARGET_RATIO} x API floor" if base else "", met=(ratio >= TARGET_RATIO) if base else None)
    res.add("create->attached->gone p50", out["cycle_p50"], "s",
            baseline=floor["cycle_p50"] if floor else None, baseline_name="API floor")
    res.add("create->attached->gone p99", out["cycle_p99"], "s",
            baseline=floor["cycle_p99"] if floor else None, baseline_name="API floor")
    res.add("invariant holds afterwards", 1.0 if invariant else 0.0, "", target="holds", met=invariant,
            note=why or f"checked {counts}; converged in {converge:.1f}s")
    res.add("leaked addresses (usedIPs sum)", leaked_ips, "", target="0", met=leaked_ips == 0)
    res.add("leaked NB ports", leftover_ports, "", target="0", met=leftover_ports == 0)
    if why:
        res.notes.append("invariant: " + why)
    res.extra = {"operator": out, "api_floor": floor}
    return res


def main(argv: list[str] | None = None) -> Result:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=2000)
    ap.add_argument("--in-flight", type=int, default=50)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    res = run(args.pods, args.in_flight, baseline=not args.no_baseline, keep=args.keep)
    print(res.table())
    log(f"wrote {res.write()}")
    return res


if __name__ == "__main__":
    main()
