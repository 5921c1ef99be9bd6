"""Scenario 3: the pure allocator. Allocate and release in a /24 and a /16, dynamic and static.

Each measured operation is one allocate (dynamic) or reserve (static) plus one release, at a
steady occupancy of half the subnet (so a scan would have many held addresses to step over).
Reported: operations/s (an allocate and a release count as two) and the per-operation time ratio
/16 : /24, which is about 1 when nothing scans the subnet.
"""
from __future__ import annotations

import argparse
import time
from collections import deque

from bench.common import Result, log, median

from ovnvnet.ipam.allocator import Holder, SubnetAllocator
from ovnvnet.model.network import parse_network_spec

TARGET_OPS = 200_000
TARGET_RATIO = 2.0


def _holder(i: int) -> Holder:
    return Holder(f"bench/p{i}", f"uid-{i}", "net0", "")


def run_dynamic(subnet: str, ops: int) -> float:
    """Seconds per operation (allocate or release) at half occupancy."""
    spec = parse_network_spec({"subnet": subnet})
    alloc = SubnetAllocator("bench", spec)
    live: deque = deque()
    fill = alloc.capacity // 2
    for i in range(fill):
        live.append(alloc.allocate(_holder(i)))
    holders = [_holder(fill + i) for i in range(ops)]
    allocate, release, popleft, append = alloc.allocate, alloc.release, live.popleft, live.append
    t0 = time.perf_counter()
    for h in holders:
        append(allocate(h))
        release(popleft())
    took = time.perf_counter() - t0
    return took / (2 * ops)


def run_static(subnet: str, ops: int) -> float:
    """Seconds per operation (reserve a given free address, or release) at half occupancy."""
    spec = parse_network_spec({"subnet": subnet})
    alloc = SubnetAllocator("bench", spec)
    lo, hi = spec.first + 2, spec.last - 1      # first host is the gateway
    span = hi - lo + 1
    fill = span // 2
    live: deque = deque()
    for i in range(fill):
        ip = lo + i
        alloc.reserve(ip, _holder(i))
        live.append(ip)
    # cycle: reserve the next address after the held block, release the oldest (a sliding window)
    plan = [(lo + (fill + i) % span, _holder(fill + i)) for i in range(ops)]
    reserve, release, popleft, append = alloc.reserve, alloc.release, live.popleft, live.append
    t0 = time.perf_counter()
    for ip, h in plan:
        reserve(ip, h)
        append(ip)
        release(popleft())
    took = time.perf_counter() - t0
    return took / (2 * ops)


def run(repeats: int = 5, ops: int = 50_000) -> Result:
    res = Result("s3_allocator", "allocator: allocate/release in a /24 and a /16",
                 params={"repeats": repeats, "ops_per_repeat": 2 * ops, "occupancy": "50%"})
    for mode, fn in (("dynamic", run_dynamic), ("static", run_static)):
        per_op = {}
        for subnet, label in (("10.1.0.0/24", "/24"), ("10.2.0.0/16", "/16")):
            times = [fn(subnet, ops) for _ in range(repeats)]
            per_op[label] = median(times)
            log(f"allocator {mode} {label}: {1 / per_op[label]:,.0f} ops/s (runs: "
                + ", ".join(f"{1 / t:,.0f}" for t in times) + ")")
        for label in ("/24", "/16"):
            ops_s = 1 / per_op[label]
            res.add(f"{mode} {label} ops/s", ops_s, "ops/s", target=f">= {TARGET_OPS:,}", met=ops_s >= TARGET_OPS)
        ratio = per_op["/16"] / per_op["/24"]
        res.add(f"{mode} per-op time /16 : /24", per_op["/16"] * 1e6, "us", baseline=per_op["/24"] * 1e6,
                baseline_name="/24", ratio=ratio, target=f"ratio <= {TARGET_RATIO:g}", met=ratio <= TARGET_RATIO)
    res.notes.append("one op = one allocate/reserve or one release; median of the repeats; pure Python, one core")
    return res


def main(argv: list[str] | None = None) -> Result:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ops", type=int, default=50_000, help="allocate+release cycles per repeat")
    args = ap.parse_args(argv)
    res = run(args.repeats, args.ops)
    print(res.table())
    log(f"wrote {res.write()}")
    return res


if __name__ == "__main__":
    main()
