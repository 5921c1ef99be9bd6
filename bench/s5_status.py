"""Scenario 5: status size.

One network with N allocations (default 10,000: 5,000 pods x 2 interfaces on it), attached by the
operator. Reported: the VirtualNetwork object's size in bytes as the API server returns it (JSON),
bytes per allocation, and the size extrapolated to the network's full capacity.
Target: at most 1 MiB (etcd's default request limit is 1.5 MiB).
"""
from __future__ import annotations

import argparse
import json
import time

from bench.common import Kube, Result, bench_stack, log, start_operator, unique
from bench.s2_restart import populate

TARGET_BYTES = 1024 * 1024
ETCD_LIMIT = int(1.5 * 1024 * 1024)


def run(allocations: int = 10_000, ifaces: int = 2, *, keep: bool = False, subnet: str = "10.90.0.0/16") -> Result:
    pods = allocations // ifaces
    name = "bench-status"
    res = Result("s5_status", f"status size: one network with {allocations:,} allocations",
                 params={"allocations": allocations, "pods": pods, "interfaces_per_pod": ifaces, "subnet": subnet})
    with bench_stack(keep=keep) as stack:
        kube = Kube(stack)
        kube.create_vnet(name, subnet)
        start_operator(stack, {})
        kube.wait_vnets_ready([name])
        empty = len(kube.vnet_raw(name))
        ns = unique("status")
        kube.ensure_namespace(ns)
        specs = [(f"p-{i:05d}", [{"name": name, "interface": f"net{j}"} for j in range(ifaces)]) for i in range(pods)]
        setup_s = populate(kube, ns, specs, timeout=max(600, pods * 0.3))
        log(f"setup: {pods} pods attached in {setup_s:.0f}s")
        # the status record trails the annotations (coalesced writes): wait until it has them all
        deadline, used, status_ok = time.monotonic() + 180, None, True
        while True:
            raw = kube.vnet_raw(name)
            st = json.loads(raw).get("status") or {}
            used, recorded = st.get("usedIPs"), len(st.get("allocations") or {})
            if used == allocations and recorded == allocations:
                break
            if time.monotonic() > deadline:
                status_ok = False
                log(f"status did not converge: usedIPs={used} allocations recorded={recorded}")
                break
            time.sleep(1)
        size = len(raw)
        log_text = (stack.logs / "operator.log").read_text(errors="replace")
        write_failures = log_text.count("status write for")
        capacity = (st.get("availableIPs") or 0) + (used or 0)
    recorded = len(st.get("allocations") or {})
    per = (size - empty) / recorded if recorded else None
    res.add("VirtualNetwork object size", size, "bytes", target="<= 1 MiB", met=status_ok and size <= TARGET_BYTES,
            note="" if status_ok else "status never converged")
    res.add("bytes per allocation", per, "bytes")
    res.add("allocations recorded in status", recorded, "", baseline=allocations, baseline_name="held")
    if per and capacity:
        res.add(f"extrapolated to the subnet's capacity ({capacity:,})", empty + per * capacity, "bytes",
                baseline=ETCD_LIMIT, baseline_name="etcd 1.5 MiB limit")
    res.add("status write failures (operator log)", write_failures, "")
    res.extra = {"empty_object_bytes": empty, "setup_s": setup_s, "usedIPs": used}
    res.notes.append(f"setup: {pods:,} pods attached in {setup_s:.0f}s ({pods / setup_s:.0f} pods/s)")
    return res


def main(argv: list[str] | None = None) -> Result:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--allocations", type=int, default=10_000)
    ap.add_argument("--interfaces", type=int, default=2, help="interfaces per pod (all on the one network)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    res = run(args.allocations, args.interfaces, keep=args.keep)
    print(res.table())
    log(f"wrote {res.write()}")
    return res


if __name__ == "__main__":
    main()
