"""Scenario 1: attach throughput and latency.

N pods (default 1,000) with 2 interfaces each over 4 networks, created as fast as the API server
takes them (a thread pool). A raw watch timestamps the first `ovnIfaceList` of every pod.
Reported: pods/s from the first create to the last annotation, and each pod's latency from its
creation (the API server's answer) to its annotation (p50/p95/p99).

Baselines, in the same run and on the same stack:
  - raw API floor: bench/raw_floor.py, list+watch of pods and one UID-guarded patch of a fixed
    annotation per pod on ovnvnet's own client, as reconcile/podwatch.py handles pods (what the
    API server alone costs such an operator); the ratio the target is about;
  - Kopf API floor: bench/api_floor.py, a minimal Kopf operator doing the same (second reference);
  - NB floor: plain ovsdbapp creating the same ports with addresses, one transaction per pod.
Each repeat (default 3) runs the two API floors and the operator back to back on the same pods,
in an order rotated per repeat; reported are medians, and ratios are medians of the per-repeat
ratios, so one noisy minute does not decide a ratio.
Targets: throughput >= 0.8 x raw API floor; p99 latency <= 1 s; operator CPU per pod <= 1 ms (beside
each floor's own CPU per pod). After each operator burst the invariant (harness.kit.check_invariant)
must hold, and the operator's API requests and NB transactions per pod are recorded.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from bench.common import (
    FLOOR_NAMES,
    FLOORS,
    Kube,
    PodWatcher,
    Result,
    bench_stack,
    cpu_seconds,
    create_pods,
    log,
    median,
    percentile,
    rotation,
    rss_hwm_mb,
    start_floor,
    start_operator,
    stop_floor,
    unique,
)
from harness.stack import Stack

TARGET_RATIO = 0.8
TARGET_P99 = 1.0
OPERATOR_ENV: dict[str, str] = {}  # the operator's defaults
FULL = {"pods": 1000, "repeats": 3}
SIDE_NAMES = {**FLOOR_NAMES, "operator": "operator"}
STACK_PROCESSES = ("kube-apiserver", "etcd", "ovsdb-nb", "ovn-northd", "ovsdb-sb")
"""The stack's other processes: their CPU during each operator burst is kept beside the operator's."""


def networks(count: int = 4) -> list[tuple[str, str]]:
    return [(f"bench-n{k}", f"10.{60 + k}.0.0/16") for k in range(count)]


def dualstack_networks(count: int = 4) -> list[tuple[str, str, str]]:
    """The same four networks as :func:`networks`, each with an IPv6 /64 beside its IPv4 /16."""
    return [(f"bench-ds{k}", f"10.{70 + k}.0.0/16", f"fd00:{70 + k}::/64") for k in range(count)]


def pod_specs(n: int, nets: list[str], ifaces: int = 2, prefix: str = "p") -> list[tuple[str, list[dict]]]:
    return [(f"{prefix}-{i:05d}",
             [{"name": nets[(i + j) % len(nets)], "interface": f"net{j}"} for j in range(ifaces)])
            for i in range(n)]


# ---------------------------------------------------------------------------- NB floor
def nb_floor(stack: Stack, n: int, nets: list[str], ifaces: int = 2) -> float:
    """Plain ovsdbapp: the same ports with addresses, one transaction per pod. Returns pods/s."""
    from ovsdbapp.backend.ovs_idl import connection
    from ovsdbapp.schema.ovn_northbound import impl_idl

    class Api(impl_idl.OvnNbApiIdlImpl):
        _ovsdb_connection = None

    idl = connection.OvsdbIdl.from_server(stack.nb_remote, "OVN_Northbound")
    api = Api(connection.Connection(idl=idl, timeout=60))
    switches = [f"nbfloor-{unique('s')}" for _ in nets]
    try:
        with api.transaction(check_error=True) as txn:
            for sw in switches:
                txn.add(api.ls_add(sw))
        plan = []
        for i in range(n):
            ports = []
            for j in range(ifaces):
                k = (i + j) % len(switches)
                ip = 0x0A000000 + (k << 16) + i + 2
                addr = f"0a:58:{(ip >> 24) & 255:02x}:{(ip >> 16) & 255:02x}:{(ip >> 8) & 255:02x}:{ip & 255:02x} " \
                       f"{ip >> 24}.{(ip >> 16) & 255}.{(ip >> 8) & 255}.{ip & 255}"
                ports.append((switches[k], f"nbfloor_p{i}_net{j}", addr))
            plan.append(ports)
        t0 = time.monotonic()
        for ports in plan:
            with api.transaction(check_error=True) as txn:
                for sw, name, addr in ports:
                    txn.add(api.lsp_add(sw, name))
                    txn.add(api.lsp_set_addresses(name, [addr]))
                    txn.add(api.lsp_set_port_security(name, [addr]))
        took = time.monotonic() - t0
        return n / took
    finally:
        with api.transaction(check_error=True) as txn:
            for sw in switches:
                txn.add(api.ls_del(sw, if_exists=True))
        api.ovsdb_connection.stop()


# ---------------------------------------------------------------------------- burst
def burst(kube: Kube, ns: str, specs: list, *, timeout: float) -> dict:
    """Create the pods, wait for every annotation; returns throughput and latencies."""
    with PodWatcher(kube, ns) as watch:
        # one warm-up pod: the watches of whoever annotates are established
        warm = specs[0][0] + "-warmup"
        kube.create_pod(ns, warm, specs[0][1])
        watch.wait_annotated([warm], 60)
        t0 = time.monotonic()
        created = create_pods(kube, ns, specs)
        t_created = time.monotonic()
        watch.wait_annotated([name for name, _ in specs], timeout)
        last = max(watch.annotated[name] for name, _ in specs)
    lat = [max(0.0, watch.annotated[name] - created[name]) for name, _ in specs]
    n = len(specs)
    return {"pods_per_s": n / (last - t0), "create_per_s": n / (t_created - t0), "wall_s": last - t0,
            "p50": percentile(lat, 50), "p95": percentile(lat, 95), "p99": percentile(lat, 99),
            "max": max(lat)}


def wait_released(kube: Kube, nets: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        used = {n: (kube.vnet(n).get("status") or {}).get("usedIPs") for n in nets}
        if all(u == 0 for u in used.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"allocations not released after {timeout}s: {used}")
        time.sleep(0.3)


class Profiler:
    """py-spy record of a process for the duration of a `with` block (if py-spy is available)."""

    def __init__(self, pid: int | None, out: Path | None, rate: int = 100):
        self.pid, self.out, self.rate = pid, out, rate
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Profiler:
        exe = os.environ.get("PY_SPY") or shutil.which("py-spy")
        if self.out and self.pid and exe:
            fmt = "speedscope" if self.out.suffix == ".json" else ("raw" if self.out.suffix == ".txt" else "flamegraph")
            self.proc = subprocess.Popen([exe, "record", "--pid", str(self.pid), "--rate", str(self.rate),
                                          "--format", fmt, "--output", str(self.out), "--nonblocking"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        elif self.out:
            log("py-spy not found (set PY_SPY=/path/to/py-spy): not profiling")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            log(f"profile written to {self.out}")


def run(n: int = 1000, repeats: int = 3, *, keep: bool = False, profile: Path | None = None,
        operator_env: dict[str, str] | None = None) -> Result:
    nets = networks(4)
    net_names = [name for name, _ in nets]
    specs = pod_specs(n, net_names)
    timeout = max(120.0, n * 0.5)
    res = Result("s1_attach", f"attach throughput and latency: {n} pods x 2 interfaces over 4 networks",
                 params={"pods": n, "interfaces": 2, "networks": 4, "repeats": repeats}, full=FULL)
    runs: dict[str, list[dict]] = {"nb_floor": [], "raw": [], "kopf": [], "operator": []}
    with bench_stack(keep=keep) as stack:
        kube = Kube(stack)
        for name, subnet in nets:
            kube.create_vnet(name, subnet)
        for r in range(repeats):
            pods_s = nb_floor(stack, n, net_names)
            runs["nb_floor"].append({"pods_per_s": pods_s})
            log(f"[{r + 1}/{repeats}] NB floor: {pods_s:.0f} pods/s")
            for side in rotation(["raw", "kopf", "operator"], r):
                ns = unique("attach" if side == "operator" else f"{side}floor")
                kube.ensure_namespace(ns)
                if side == "operator":
                    out = _operator_burst(stack, kube, ns, specs, net_names, timeout, n,
                                          {**OPERATOR_ENV, **(operator_env or {})},
                                          profile.with_name(f"{profile.stem}-{r}{profile.suffix}")
                                          if profile and repeats > 1 else profile)
                else:
                    start_floor(stack, side)
                    try:
                        fpid = stack.pid(FLOORS[side][0])
                        cpu0 = cpu_seconds(fpid)
                        out = burst(kube, ns, specs, timeout=timeout)
                        out["floor_cpu_s"] = (cpu_seconds(fpid) or 0) - (cpu0 or 0)
                    finally:
                        stop_floor(stack, side)
                    kube.delete_all_pods(ns)
                runs[side].append(out)
                log(f"[{r + 1}/{repeats}] {SIDE_NAMES[side]}: {out['pods_per_s']:.0f} pods/s, p50 {out['p50']:.3f}s "
                    f"p99 {out['p99']:.3f}s (created at {out['create_per_s']:.0f}/s)")

    def med(kind: str, key: str) -> float | None:
        return median(x[key] for x in runs[kind])

    def paired(kind: str, key: str) -> float | None:
        """The median of the per-repeat ratios operator / `kind` (each repeat runs both back to back)."""
        return median(o[key] / b[key] for o, b in zip(runs["operator"], runs[kind], strict=True) if b[key])

    op = med("operator", "pods_per_s")
    ratio = paired("raw", "pods_per_s")
    res.add("throughput (pods/s)", op, "pods/s", baseline=med("raw", "pods_per_s"), baseline_name=SIDE_NAMES["raw"],
            ratio=ratio, target=f">= {TARGET_RATIO} x raw API floor", met=ratio >= TARGET_RATIO)
    res.add("throughput vs Kopf floor", op, "pods/s", baseline=med("kopf", "pods_per_s"),
            baseline_name=SIDE_NAMES["kopf"], ratio=paired("kopf", "pods_per_s"))
    res.add("throughput vs NB floor", op, "pods/s", baseline=med("nb_floor", "pods_per_s"),
            baseline_name="NB floor, 1 txn/pod")
    for p in ("p50", "p95", "p99"):
        v = med("operator", p)
        row = res.add(f"latency {p}", v, "s", baseline=med("raw", p), baseline_name=SIDE_NAMES["raw"],
                      ratio=paired("raw", p))
        if p == "p99":
            row.target, row.met = f"<= {TARGET_P99:g} s", v <= TARGET_P99
    res.add("latency p99 vs Kopf floor", med("operator", "p99"), "s", baseline=med("kopf", "p99"),
            baseline_name=SIDE_NAMES["kopf"], ratio=paired("kopf", "p99"))
    op_cpu = med("operator", "operator_cpu_s") * 1000 / n
    for side in ("raw", "kopf"):
        floor_cpu = (med(side, "floor_cpu_s") or 0) * 1000 / n
        res.add("operator CPU per pod" + ("" if side == "raw" else " vs Kopf floor"), op_cpu, "ms",
                baseline=floor_cpu or None, baseline_name=f"{SIDE_NAMES[side]}'s CPU per pod",
                ratio=op_cpu / floor_cpu if floor_cpu else None,
                **({"target": "<= 1.0 ms", "met": op_cpu <= 1.0} if side == "raw" else {}))
    res.extra["requests_per_pod"] = runs["operator"][-1].get("requests_per_pod", {})
    res.add("operator peak RSS", med("operator", "operator_rss_hwm_mb"), "MiB")
    res.add("pod create rate (operator runs)", med("operator", "create_per_s"), "pods/s",
            baseline=med("raw", "create_per_s"), baseline_name="raw floor runs")
    res.extra["runs"] = runs
    res.notes.append(f"medians over {repeats} repeats; in each repeat the raw floor, the Kopf floor and the "
                     "operator run back to back (order rotated per repeat); ratios are medians of the "
                     "per-repeat ratios")
    res.notes.append("latency = watch event with ovnIfaceList - create call answered")
    return res


def operator_counters(stack: Stack) -> dict[str, float]:
    """The operator's own request counters from its /metrics: API requests by ``VERB resource``
    and ``NB transactions`` (kube/client.py, ovn/nb.py); {} when they cannot be read."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.health_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("ovnvnet_api_requests_total{"):
            labels = dict(kv.split("=", 1) for kv in line[line.index("{") + 1:line.index("}")].split(","))
            key = f"{labels['verb'].strip(chr(34))} {labels['resource'].strip(chr(34))}"
            out[key] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("ovnvnet_nb_transactions_total "):
            out["NB transactions"] = float(line.rsplit(" ", 1)[1])
    return out


def per_pod(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """Counter increments over a burst, per pod (only those that moved)."""
    return {k: round((v - before.get(k, 0.0)) / n, 3) for k, v in sorted(after.items()) if v > before.get(k, 0.0)}


def _operator_burst(stack: Stack, kube: Kube, ns: str, specs: list, net_names: list[str], timeout: float, n: int,
                    env: dict[str, str], prof_out: Path | None) -> dict:
    start_operator(stack, env)
    kube.wait_vnets_ready(net_names)
    pid = stack.pid("operator")
    cpu0 = cpu_seconds(pid)
    others = {name: stack.pid(name) for name in STACK_PROCESSES}
    others0 = {name: cpu_seconds(p) for name, p in others.items()}
    counted0 = operator_counters(stack)
    with Profiler(pid, prof_out):
        out = burst(kube, ns, specs, timeout=timeout)
    time.sleep(0.5)   # the last flush window of the records
    out["requests_per_pod"] = per_pod(counted0, operator_counters(stack), n)
    out["operator_cpu_s"] = (cpu_seconds(pid) or 0) - (cpu0 or 0)
    out["stack_cpu_s"] = {name: round((cpu_seconds(p) or 0) - (others0[name] or 0), 3) for name, p in others.items()}
    out["operator_rss_hwm_mb"] = rss_hwm_mb(pid)
    from harness.kit import Cluster, check_invariant
    out["invariant"] = check_invariant(Cluster(stack), net_names, timeout=60)   # raises when it does not hold
    log(f"operator CPU {out['operator_cpu_s']:.1f}s, {out['operator_cpu_s'] * 1000 / n:.1f} ms/pod; "
        f"per pod: {out['requests_per_pod']}")
    kube.delete_all_pods(ns)
    wait_released(kube, net_names)
    stack.stop_operator()
    return out


TARGET_DS_RATIO = 0.9
FULL_DS = {"pods": 1000, "repeats": 3}


def run_dualstack(n: int = 1000, repeats: int = 3, *, keep: bool = False, profile: Path | None = None) -> Result:
    """Issue 13's figure: the same burst (n pods x 2 interfaces over 4 networks) on dual-stack
    networks (each interface gets an IPv4 and an IPv6 address, one port with both) beside the
    IPv4-only networks, in the same run: per repeat both sides back to back, order rotated;
    the ratio is the median of the per-repeat throughput ratios (dual-stack / IPv4).
    `profile`: py-spy output of the operator per burst, as ``<stem>-<side>-<repeat><suffix>``."""
    v4 = networks(4)
    ds = dualstack_networks(4)
    sides = {"ipv4": [name for name, _ in v4], "dual-stack": [name for name, _, _ in ds]}
    timeout = max(120.0, n * 0.5)
    res = Result("s1_attach_dualstack",
                 f"attach throughput: {n} pods x 2 interfaces over 4 dual-stack networks vs 4 IPv4 ones (same run)",
                 params={"pods": n, "interfaces": 2, "networks": 4, "repeats": repeats}, full=FULL_DS)
    runs: dict[str, list[dict]] = {"ipv4": [], "dual-stack": []}
    with bench_stack(keep=keep) as stack:
        kube = Kube(stack)
        for name, subnet in v4:
            kube.create_vnet(name, subnet)
        for name, subnet, subnet6 in ds:
            kube.create_vnet(name, subnet, subnet6)
        for r in range(repeats):
            for side in rotation(["ipv4", "dual-stack"], r):
                ns = unique("v4" if side == "ipv4" else "ds")
                kube.ensure_namespace(ns)
                specs = pod_specs(n, sides[side])
                prof = profile.with_name(f"{profile.stem}-{side}-{r}{profile.suffix}") if profile else None
                out = _operator_burst(stack, kube, ns, specs, sides[side], timeout, n, dict(OPERATOR_ENV), prof)
                runs[side].append(out)
                log(f"[{r + 1}/{repeats}] {side}: {out['pods_per_s']:.0f} pods/s, p50 {out['p50']:.3f}s "
                    f"p99 {out['p99']:.3f}s, operator CPU {out['operator_cpu_s'] * 1000 / n:.2f} ms/pod")

    def med(side: str, key: str) -> float | None:
        return median(x[key] for x in runs[side])

    ratio = median(d["pods_per_s"] / v["pods_per_s"]
                   for d, v in zip(runs["dual-stack"], runs["ipv4"], strict=True) if v["pods_per_s"])
    res.add("throughput, dual-stack (pods/s)", med("dual-stack", "pods_per_s"), "pods/s",
            baseline=med("ipv4", "pods_per_s"), baseline_name="the same burst on IPv4 networks", ratio=ratio,
            target=f">= {TARGET_DS_RATIO} x IPv4", met=ratio is not None and ratio >= TARGET_DS_RATIO)
    res.add("latency p99, dual-stack", med("dual-stack", "p99"), "s", baseline=med("ipv4", "p99"),
            baseline_name="IPv4")
    cpu = {side: (med(side, "operator_cpu_s") or 0) * 1000 / n for side in runs}
    res.add("operator CPU per pod, dual-stack", cpu["dual-stack"], "ms", baseline=cpu["ipv4"],
            baseline_name="IPv4", ratio=cpu["dual-stack"] / cpu["ipv4"] if cpu["ipv4"] else None)
    for label, procs in (("API server + etcd", ("kube-apiserver", "etcd")),
                         ("OVN northd + SB", ("ovn-northd", "ovsdb-sb"))):
        per_pod = {side: (median(sum(x["stack_cpu_s"].get(p, 0) for p in procs) for x in runs[side]) or 0) * 1000 / n
                   for side in runs}
        res.add(f"{label} CPU per pod, dual-stack", per_pod["dual-stack"], "ms", baseline=per_pod["ipv4"],
                baseline_name="IPv4", ratio=per_pod["dual-stack"] / per_pod["ipv4"] if per_pod["ipv4"] else None)
    res.extra["runs"] = runs
    res.notes.append("CPU per pod: each process's CPU time during the burst (first create to last result) / pods; "
                     "the API server's includes the records (IPBlocks: an IPv6 block beside each IPv4 one), "
                     "OVN's the logical flows northd derives from the ports (IPv6 adds neighbour discovery "
                     "and IPv6 port security)")
    res.notes.append(f"medians over {repeats} repeats; in each repeat the IPv4 and the dual-stack bursts run back "
                     "to back on one stack (order rotated); the ratio is the median of the per-repeat ratios")
    return res


def main(argv: list[str] | None = None) -> Result:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the stack directory")
    ap.add_argument("--profile", type=Path, help="py-spy output for the operator during the burst "
                    "(.svg flamegraph, .json speedscope, .txt raw)")
    ap.add_argument("--operator-env", action="append", default=[], metavar="K=V")
    ap.add_argument("--dual-stack", action="store_true",
                    help="issue 13's comparison: the burst on dual-stack networks beside IPv4 ones")
    args = ap.parse_args(argv)
    env = dict(kv.split("=", 1) for kv in args.operator_env)
    if args.dual_stack:
        res = run_dualstack(args.pods, args.repeats, keep=args.keep, profile=args.profile)
    else:
        res = run(args.pods, args.repeats, keep=args.keep, profile=args.profile, operator_env=env)
    print(res.table())
    log(f"wrote {res.write()}")
    return res


if __name__ == "__main__":
    main()
