"""Scenario 6: churn.

N pods (default 2,000, 2 interfaces over 4 networks) created and deleted with K (default 50) in
flight: each of K workers creates a pod, waits for its `ovnIfaceList`, deletes it (grace 0), waits
until it is gone, and takes the next. Reported: pods/s through the whole cycle, and afterwards the
reliability invariant (harness.kit.check_invariant: no address held twice, NB ports ==
live interfaces, status == live allocations, exact counters) plus the leftovers: nothing may leak.
Baselines in the same run, under the same churn: the raw API floor (bench/raw_floor.py: pods
listed, watched and patched on ovnvnet's own client, as reconcile/podwatch.py does; the ratio the
target is about) and the Kopf API floor (bench/api_floor.py, second reference). Each repeat
(default 3) runs both floors and the operator back to back, in an order rotated per repeat;
reported are medians and the median of the per-repeat ratios. The invariant and the leftovers
are checked after every operator run.
"""
from __future__ import annotations

import argparse
import threading
import time

from bench.common import (
    FLOOR_NAMES,
    FLOORS,
    Kube,
    PodWatcher,
    Result,
    bench_stack,
    cpu_seconds,
    log,
    median,
    percentile,
    rotation,
    start_floor,
    start_operator,
    stop_floor,
    unique,
)
from bench.s1_attach import networks, pod_specs

TARGET_RATIO = 0.8
FULL = {"pods": 2000, "in_flight": 50, "repeats": 3}


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


def run(n: int = 2000, in_flight: int = 50, repeats: int = 3, *, baseline: bool = True,
        keep: bool = False) -> Result:
    from harness.kit import Cluster
    nets = networks(4)
    net_names = [name for name, _ in nets]
    res = Result("s6_churn", f"churn: {n:,} pods created and deleted, {in_flight} in flight",
                 params={"pods": n, "in_flight": in_flight, "interfaces": 2, "networks": 4, "repeats": repeats},
                 full=FULL)
    sides = ["raw", "kopf", "operator"] if baseline else ["operator"]
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    checks: list[dict] = []
    with bench_stack(keep=keep) as stack:
        kube = Kube(stack)
        for name, subnet in nets:
            kube.create_vnet(name, subnet)
        cluster = Cluster(stack)
        for r in range(repeats):
            for side in rotation(sides, r):
                ns = unique("churn" if side == "operator" else f"{side}floor")
                kube.ensure_namespace(ns)
                if side == "operator":
                    start_operator(stack, {"OVNVNET_SWEEP_INTERVAL": "5"})
                    kube.wait_vnets_ready(net_names)
                    try:
                        pid = stack.pid("operator")
                        cpu0 = cpu_seconds(pid)
                        out = churn(kube, ns, pod_specs(n, net_names), in_flight)
                        out["cpu_s"] = (cpu_seconds(pid) or 0) - (cpu0 or 0)
                        checks.append(_check_after(kube, cluster, ns, net_names))
                    finally:
                        stack.stop_operator()
                else:
                    start_floor(stack, side)
                    try:
                        pid = stack.pid(FLOORS[side][0])
                        cpu0 = cpu_seconds(pid)
                        out = churn(kube, ns, pod_specs(n, net_names), in_flight)
                        out["cpu_s"] = (cpu_seconds(pid) or 0) - (cpu0 or 0)
                    finally:
                        stop_floor(stack, side)
                runs[side].append(out)
                log(f"[{r + 1}/{repeats}] {FLOOR_NAMES.get(side, side)} churn: {out['pods_per_s']:.0f} pods/s, "
                    f"cycle p99 {out['cycle_p99']:.3f}s")

    def med(kind: str, key: str) -> float | None:
        return median(x[key] for x in runs[kind]) if runs.get(kind) else None

    def paired(kind: str, key: str) -> float | None:
        if not runs.get(kind):
            return None
        return median(o[key] / b[key] for o, b in zip(runs["operator"], runs[kind], strict=True) if b[key])

    ratio = paired("raw", "pods_per_s")
    res.add("churn throughput", med("operator", "pods_per_s"), "pods/s", baseline=med("raw", "pods_per_s"),
            baseline_name=FLOOR_NAMES["raw"], ratio=ratio,
            target=f">= {TARGET_RATIO} x raw API floor" if baseline else "",
            met=(ratio >= TARGET_RATIO) if ratio is not None else None)
    res.add("churn throughput vs Kopf floor", med("operator", "pods_per_s"), "pods/s",
            baseline=med("kopf", "pods_per_s"), baseline_name=FLOOR_NAMES["kopf"], ratio=paired("kopf", "pods_per_s"))
    for p in ("cycle_p50", "cycle_p99"):
        res.add(f"create->attached->gone {p[6:]}", med("operator", p), "s", baseline=med("raw", p),
                baseline_name=FLOOR_NAMES["raw"], ratio=paired("raw", p))
    op_cpu = (med("operator", "cpu_s") or 0) * 1000 / n
    for side in ("raw", "kopf"):
        floor_cpu = (med(side, "cpu_s") or 0) * 1000 / n
        res.add("operator CPU per pod (attach + release)" + ("" if side == "raw" else " vs Kopf floor"), op_cpu,
                "ms", baseline=floor_cpu or None, baseline_name=f"{FLOOR_NAMES[side]}'s CPU per pod",
                ratio=op_cpu / floor_cpu if floor_cpu else None,
                **({"target": "<= 1.0 ms", "met": op_cpu <= 1.0} if side == "raw" else {}))
    held = all(c["invariant"] for c in checks)
    why = next((c["why"] for c in checks if not c["invariant"]), "")
    res.add("invariant holds after every operator run", 1.0 if held else 0.0, "", target="holds", met=held,
            note=why or f"checked {checks[-1]['counts']}; converged in {max(c['converge_s'] for c in checks):.1f}s")
    leaked_ips = max(c["leaked_ips"] for c in checks)
    leaked_ports = max(c["leaked_ports"] for c in checks)
    res.add("leaked addresses (usedIPs sum), worst run", leaked_ips, "", target="0", met=leaked_ips == 0)
    res.add("leaked NB ports, worst run", leaked_ports, "", target="0", met=leaked_ports == 0)
    if why:
        res.notes.append("invariant: " + why)
    res.notes.append(f"medians over {repeats} repeats; in each repeat the floors and the operator churn back to "
                     "back (order rotated per repeat); ratios are medians of the per-repeat ratios")
    res.extra = {"runs": runs, "checks": checks}
    return res


def _check_after(kube: Kube, cluster, ns: str, net_names: list[str]) -> dict:
    """After an operator run: the invariant, and what it left behind in `ns` and the networks."""
    from harness.kit import check_invariant
    t_inv = time.monotonic()
    try:
        counts = check_invariant(cluster, net_names, timeout=60)
        invariant, why = True, ""
    except AssertionError as exc:
        counts, invariant, why = {}, False, str(exc)[:500]
    converge = time.monotonic() - t_inv
    leftover_ports = sum(1 for p in cluster.nb_pod_ports().values()
                         if p["external_ids"].get("ovnvnet.io/pod-namespace") == ns)
    used = {n_: (kube.vnet(n_).get("status") or {}).get("usedIPs") for n_ in net_names}
    return {"invariant": invariant, "why": why, "counts": counts, "converge_s": converge,
            "leaked_ports": leftover_ports, "leaked_ips": sum(u or 0 for u in used.values())}


def main(argv: list[str] | None = None) -> Result:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=2000)
    ap.add_argument("--in-flight", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    res = run(args.pods, args.in_flight, args.repeats, baseline=not args.no_baseline, keep=args.keep)
    print(res.table())
    log(f"wrote {res.write()}")
    return res


if __name__ == "__main__":
    main()
