"""Scenario 5: record size.

One network with N allocations (default 10,000: 5,000 pods x 2 interfaces on it), attached by the
operator. The allocation record is sharded into IPBlock objects (one per /24 block of the
network), so no object grows with the network: reported are the VirtualNetwork object's size,
the largest IPBlock's size, bytes per allocation, and the largest object at the subnet's full
capacity (a full /24 block). Target: every object at most 1 MiB (etcd's limit is 1.5 MiB).

Each allocation entry names its pod, so its size depends on the names: by default the pods have
realistic worst-case names, a 63-character namespace and 63-character pod names (the longest DNS
label, what a namespace may be and what a pod name is in practice); `--short-names` measures
with short ones (`p-00001` in a ~13-character namespace), as this scenario did before.
"""
from __future__ import annotations

import argparse
import json
import time

from bench.common import Kube, Result, bench_stack, log, start_operator, unique
from bench.s2_restart import populate

TARGET_BYTES = 1024 * 1024
FULL = {"allocations": 10_000, "name_length": 63}
LABEL = 63   # the longest DNS label: a namespace name, and in practice a pod name


def long_name(prefix: str, suffix: str) -> str:
    """A `LABEL`-character name: `prefix`, filler, `suffix`."""
    filler = "-abcdefghijklmnopqrstuvwxyz0123456789" * 2
    return (prefix + filler)[:LABEL - len(suffix) - 1] + "-" + suffix
ETCD_LIMIT = int(1.5 * 1024 * 1024)


def run(allocations: int = 10_000, ifaces: int = 2, *, keep: bool = False, subnet: str = "10.90.0.0/16",
        long_names: bool = True) -> Result:
    pods = allocations // ifaces
    name = "bench-status"
    ns = long_name("status", unique("s").split("-")[1]) if long_names else unique("status")
    pod_name = (lambda i: long_name("p", f"{i:05d}")) if long_names else (lambda i: f"p-{i:05d}")
    res = Result("s5_status", f"status size: one network with {allocations:,} allocations",
                 params={"allocations": allocations, "pods": pods, "interfaces_per_pod": ifaces, "subnet": subnet,
                         "name_length": len(pod_name(0)), "namespace_length": len(ns)}, full=FULL)
    with bench_stack(keep=keep) as stack:
        kube = Kube(stack)
        kube.create_vnet(name, subnet)
        start_operator(stack, {})
        kube.wait_vnets_ready([name])
        empty = len(kube.vnet_raw(name))
        kube.ensure_namespace(ns)
        specs = [(pod_name(i), [{"name": name, "interface": f"net{j}"} for j in range(ifaces)]) for i in range(pods)]
        setup_s = populate(kube, ns, specs, timeout=max(600, pods * 0.3))
        log(f"setup: {pods} pods attached in {setup_s:.0f}s")
        # the record trails the annotations (coalesced writes): wait until it has them all
        deadline, used, status_ok = time.monotonic() + 180, None, True
        while True:
            raw = kube.vnet_raw(name)
            st = json.loads(raw).get("status") or {}
            blocks = kube.custom.list_cluster_custom_object(
                "ovnvnet.io", "v1", "ipblocks", label_selector=f"ovnvnet.io/network={name}")["items"]
            used = st.get("usedIPs")
            recorded = sum(len(b.get("allocations") or {}) for b in blocks)
            if used == allocations and recorded == allocations:
                break
            if time.monotonic() > deadline:
                status_ok = False
                log(f"record did not converge: usedIPs={used} allocations recorded={recorded}")
                break
            time.sleep(1)
        size = len(raw)
        block_sizes = sorted(len(json.dumps(b, separators=(",", ":"))) for b in blocks)
        log_text = (stack.logs / "operator.log").read_text(errors="replace")
        write_failures = log_text.count("write of ")
        capacity = (st.get("availableIPs") or 0) + (used or 0)
    largest = block_sizes[-1] if block_sizes else 0
    full_blocks = [b for b in blocks if len(b.get("allocations") or {}) >= 200]
    per = (largest - 300) / max(1, max(len(b.get("allocations") or {}) for b in blocks)) if blocks else None
    res.add("VirtualNetwork object size", size, "bytes", target="<= 1 MiB", met=status_ok and size <= TARGET_BYTES,
            note="" if status_ok else "record never converged")
    res.add("largest IPBlock object size", largest, "bytes", target="<= 1 MiB",
            met=status_ok and largest <= TARGET_BYTES)
    res.add("IPBlock objects", len(blocks), "", note=f"{len(full_blocks)} of them with >= 200 entries")
    res.add("bytes per allocation (in a block)", per, "bytes")
    res.add("allocations recorded", recorded, "", baseline=allocations, baseline_name="held")
    if per:
        res.add(f"largest object at full capacity ({capacity:,} addresses)", max(size, 300 + per * 256), "bytes",
                baseline=ETCD_LIMIT, baseline_name="etcd 1.5 MiB limit")
    res.add("record write failures (operator log)", write_failures, "")
    res.extra = {"empty_object_bytes": empty, "setup_s": setup_s, "usedIPs": used}
    res.notes.append(f"pod names of {len(pod_name(0))} characters in a namespace of {len(ns)} characters"
                     + (" (realistic worst case)" if long_names else " (short names: not the realistic case)"))
    res.notes.append(f"setup: {pods:,} pods attached in {setup_s:.0f}s ({pods / setup_s:.0f} pods/s)")
    return res


def main(argv: list[str] | None = None) -> Result:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--allocations", type=int, default=10_000)
    ap.add_argument("--interfaces", type=int, default=2, help="interfaces per pod (all on the one network)")
    ap.add_argument("--short-names", action="store_true", help="short pod and namespace names (not realistic)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    res = run(args.allocations, args.interfaces, keep=args.keep, long_names=not args.short_names)
    print(res.table())
    log(f"wrote {res.write()}")
    return res


if __name__ == "__main__":
    main()
