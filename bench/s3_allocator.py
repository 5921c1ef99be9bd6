"""Scenario 3: the pure allocator at 50 % to 99.9 % occupancy, /24 against /16 (and /12).

Each network is filled to the occupancy with a long run of held addresses from the first host
on (half of the held ones) and the rest at random, and the cursor is put at the end of the
subnet, so the first allocate wraps straight into the run. Then, timed:

- dynamic: ``ops`` times release a random held address (outside the run) and allocate one;
- static: ``ops`` times reserve a random free address and release a random held one.

Occupancies 50 %, 90 %, 99 %, 99.9 % and "full-1" (every address held but one: the case of
issue 11, where the linear walk crossed half the subnet per allocate).

One op is one allocate, reserve or release. The per-op time is the median over the repeats of
(repeat time / ops). Two baselines measured in the same run, on the same layouts and the same
operation sequences:

- the /24 (for the /16 : /24 per-op ratio, about 1 when nothing depends on the subnet's size);
- ``LinearWalk``, a copy of the allocator as it was before it kept free runs: its allocate
  walked forward from the cursor over every held address. It is kept here only, as the reference.

IPv6 (``--ipv6``, result ``s3_allocator_v6``, issue 13): the same dynamic and static cycles on an
IPv6 /120 (laid out like the /24: 90 % held, a run from the first host and the rest at random) and
an IPv6 /64 holding the same number of addresses (the run from the first host, the rest at random
anywhere in the /64; the free addresses the static cycle reserves are drawn at random from the
/64, never listed), against the IPv4 /24 measured in the same run. Then the memory per held
address in a /64 (tracemalloc: the allocator holding N addresses minus the empty one, over N),
beside an IPv4 /16 holding the same N.
"""
from __future__ import annotations

import argparse
import bisect
import gc
import itertools
import random
import time
import tracemalloc

import netaddr

from bench.common import Result, log, median
from ovnvnet.ipam.allocator import Holder, NetworkExhausted, SubnetAllocator
from ovnvnet.model.network import parse_network_spec

TARGET_OPS = 200_000
TARGET_RATIO = 2.0
OCCUPANCIES = (0.5, 0.9, 0.99, 0.999, 1.0)   # 1.0: full but one free address


def _occ(occ: float) -> str:
    return "full-1" if occ >= 1 else f"{occ:.1%}"
SUBNETS = {"/24": "10.1.0.0/24", "/20": "10.3.0.0/20", "/16": "10.2.0.0/16", "/12": "10.16.0.0/12"}


# ---------------------------------------------------------------------------- the reference
class _NoRuns:
    """LinearWalk keeps no free runs."""

    def take(self, x: int) -> None:
        pass

    def give(self, x: int) -> None:
        pass


class LinearWalk(SubnetAllocator):
    """The allocator before free runs: allocate() and release() as they were (commit 457749d)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._free = _NoRuns()

    def allocate(self, holder: Holder) -> netaddr.IPAddress:
        if holder.mac:
            holder = self._normalized(holder)
            self.check_mac(holder.mac, holder.pod_uid, holder.interface)
        key = (holder.pod_uid, holder.interface)
        existing = self._by_key.get(key)
        if existing is not None:
            return netaddr.IPAddress(existing, self._version)
        if self._capacity - self._held_in_capacity <= 0:
            raise NetworkExhausted(f"network {self._label()} has no free address")
        held, by_mac, gw, lo, hi = self._held, self._by_mac, self._gw, self._lo, self._hi
        starts, ends = self._starts, self._ends
        c = self._cursor
        wrapped = 0
        while True:
            c += 1
            if c > hi:
                c = lo
                wrapped += 1
                if wrapped > 2:
                    raise NetworkExhausted(f"network {self._label()} has no free address")
            if c in held or c == gw:
                continue
            if starts:
                i = bisect.bisect_right(starts, c) - 1
                if i >= 0 and c <= ends[i]:
                    c = ends[i]
                    continue
            if holder.mac:
                stored = holder
            else:
                mac = _mac_from_int(c)
                if mac in by_mac:
                    continue
                stored = Holder(holder.pod, holder.pod_uid, holder.interface, mac)
            break
        self._cursor = c
        held[c] = stored
        self._by_key[key] = c
        by_mac[stored.mac] = stored
        self._held_in_capacity += 1
        return netaddr.IPAddress(c, self._version)

    def release(self, ip):
        value = self._to_int(ip)
        if value is None:
            return None
        holder = self._held.pop(value, None)
        if holder is None:
            return None
        key = (holder.pod_uid, holder.interface)
        if self._by_key.get(key) == value:
            del self._by_key[key]
        if holder.mac and self._by_mac.get(holder.mac) is holder:
            del self._by_mac[holder.mac]
        if self._lo <= value <= self._hi and value != self._gw:
            if not self._starts or not self._excluded(value):
                self._held_in_capacity -= 1
        return holder


def _mac_from_int(ip: int) -> str:
    return f"0a:58:{(ip >> 24) & 0xFF:02x}:{(ip >> 16) & 0xFF:02x}:{(ip >> 8) & 0xFF:02x}:{ip & 0xFF:02x}"


# ---------------------------------------------------------------------------- workload
def _holder(tag: str, i: int) -> Holder:
    return Holder(f"bench/p{tag}{i}", f"uid-{tag}{i}", "net0", "")


def loaded(cls, subnet: str, occupancy: float, seed: int = 1):
    """``cls`` filled to ``occupancy``: a run of held addresses from the first host on (half of
    them), the rest at random; cursor at the end. Returns it, the held addresses outside the
    run and the free addresses (lists the workload keeps up to date)."""
    spec = parse_network_spec({"subnet": subnet})
    lo, hi = spec.first + 2, spec.last - 1          # the first host is the gateway
    alloc = cls("bench", spec, cursor=hi)
    target = min(alloc.capacity - 1, max(1, round(alloc.capacity * occupancy)))
    run = target // 2
    rng = random.Random(seed)
    others = rng.sample(range(lo + run, hi + 1), target - run)
    for i, ip in enumerate(itertools.chain(range(lo, lo + run), others)):
        alloc.reserve(ip, _holder("f", i))
    taken = set(others)
    free = [ip for ip in range(lo + run, hi + 1) if ip not in taken]
    return alloc, others, free


def dynamic(alloc, others: list, free: list, ops: int, rng: random.Random, tag: str) -> float:
    """Seconds for ``ops`` cycles of release-random + allocate (2 ops each)."""
    holders = [_holder(tag, i) for i in range(ops)]
    picks = [rng.randrange(len(others)) for _ in range(ops)]
    allocate, release = alloc.allocate, alloc.release
    t0 = time.thread_time()
    for i, h in zip(picks, holders, strict=True):
        release(others[i])
        others[i] = int(allocate(h))
    return time.thread_time() - t0


def static(alloc, others: list, free: list, ops: int, rng: random.Random, tag: str) -> float:
    """Seconds for ``ops`` cycles of reserve-a-random-free-address + release-random (2 ops each)."""
    holders = [_holder(tag, i) for i in range(ops)]
    plan = [(rng.randrange(len(free)), rng.randrange(len(others))) for _ in range(ops)]
    reserve, release = alloc.reserve, alloc.release
    t0 = time.thread_time()
    for (f, o), h in zip(plan, holders, strict=True):
        ip = free[f]
        reserve(ip, h)
        free[f] = others[o]
        release(others[o])
        others[o] = ip
    return time.thread_time() - t0


def per_op(cls, mode, subnet: str, occupancy: float, repeats: int, ops: int) -> list[float]:
    """Seconds per op of each repeat on one loaded allocator (one warm-up repeat first)."""
    alloc, others, free = loaded(cls, subnet, occupancy)
    fn = dynamic if mode == "dynamic" else static
    rng = random.Random(3)
    fn(alloc, others, free, max(1, ops // 10), rng, "w")
    times = [fn(alloc, others, free, ops, rng, f"r{r}-") / (2 * ops) for r in range(repeats)]
    return times


# ---------------------------------------------------------------------------- run
def run(repeats: int = 5, ops: int = 20_000, ref_ops: int = 1_000,
        sizes: tuple[str, ...] | None = None, occupancies: tuple[float, ...] = OCCUPANCIES,
        modes: tuple[str, ...] = ("dynamic", "static")) -> Result:
    """Default sizes: /24 and /16; a small run (ops < 10,000: the smoke test) takes a /20 for
    the /16, as filling 40 /16s dominates its time."""
    if sizes is None:
        sizes = ("/24", "/16") if ops >= 10_000 else ("/24", "/20")
    res = Result("s3_allocator", "allocator: " + " vs ".join(sizes) + " at 50-99.9 % occupancy, "
                 "cursor wrapping into a long held run",
                 params={"repeats": repeats, "ops_per_repeat": 2 * ops, "reference_ops_per_repeat": 2 * ref_ops,
                         "sizes": list(sizes), "occupancies": list(occupancies), "modes": list(modes)},
                 full=FULL)
    table: dict[tuple[str, str, float, str], float] = {}
    for mode in modes:
        for occ in occupancies:
            for label in sizes:
                for impl, cls, n in (("runs", SubnetAllocator, ops), ("walk", LinearWalk, ref_ops)):
                    times = per_op(cls, mode, SUBNETS[label], occ, repeats, n)
                    table[mode, label, occ, impl] = median(times)
                    log(f"{mode} {label} {_occ(occ)} {impl}: {median(times) * 1e6:.2f} us/op (runs: "
                        + ", ".join(f"{t * 1e6:.2f}" for t in times) + ")")
            base = sizes[0]
            for label in sizes:
                new, old = table[mode, label, occ, "runs"], table[mode, label, occ, "walk"]
                res.add(f"{mode} {_occ(occ)} {label} per op", new * 1e6, "us", baseline=old * 1e6,
                        baseline_name="linear walk", target=f"<= {1e6 / TARGET_OPS:g} us",
                        met=new <= 1 / TARGET_OPS)
            for label in sizes[1:]:
                ratio = table[mode, label, occ, "runs"] / table[mode, base, occ, "runs"]
                old = table[mode, label, occ, "walk"] / table[mode, base, occ, "walk"]
                res.add(f"{mode} {_occ(occ)} {label} : {base} per op", ratio, "x", baseline=old,
                        baseline_name=f"linear walk {label} : {base}", ratio=ratio,
                        target=f"<= {TARGET_RATIO:g}", met=ratio <= TARGET_RATIO)
    res.extra["per_op_us"] = {f"{m} {size} {o} {i}": v * 1e6 for (m, size, o, i), v in table.items()}
    res.extra["matrix"] = matrix(table, modes, sizes, occupancies)
    res.notes.append("one op = one allocate, reserve or release; per op = median of the repeats; "
                     "pure Python, one core; 'linear walk' = the allocator before free runs, same "
                     "layouts and operation sequences")
    return res


def matrix(table, modes, sizes, occupancies) -> str:
    """The per-op medians as one compact table (us/op), with the size ratios."""
    head = ["mode", "occupancy"]
    for impl in ("runs", "walk"):
        head += [f"{impl} {s}" for s in sizes] + [f"{impl} {s}:{sizes[0]}" for s in sizes[1:]]
    lines = [head]
    for mode in modes:
        for occ in occupancies:
            row = [mode, _occ(occ)]
            for impl in ("runs", "walk"):
                row += [f"{table[mode, s, occ, impl] * 1e6:.2f}" for s in sizes]
                row += [f"{table[mode, s, occ, impl] / table[mode, sizes[0], occ, impl]:.2f}" for s in sizes[1:]]
            lines.append(row)
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=False)) for r in lines)


# what the README's figures are measured at (the defaults of main())
FULL = {"repeats": 5, "ops_per_repeat": 40_000, "reference_ops_per_repeat": 2_000, "sizes": ["/24", "/16"]}


def main(argv: list[str] | None = None) -> Result:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ops", type=int, default=20_000, help="cycles (2 ops each) per repeat")
    ap.add_argument("--ref-ops", type=int, default=1_000, help="cycles per repeat for the linear walk")
    ap.add_argument("--sizes", default="/24,/16",
                    help="comma-separated from /24,/20,/16,/12; the first is the baseline")
    ap.add_argument("--occupancies", default=",".join(map(str, OCCUPANCIES)))
    ap.add_argument("--modes", default="dynamic,static")
    ap.add_argument("--ipv6", action="store_true", help="the IPv6 scenario (s3_allocator_v6) instead")
    ap.add_argument("--memory-held", type=int, default=100_000, help="--ipv6: addresses held for the memory figure")
    args = ap.parse_args(argv)
    if args.ipv6:
        res = run_v6(args.repeats, args.ops, args.memory_held)
        print(res.table())
        log(f"wrote {res.write()}")
        return res
    res = run(args.repeats, args.ops, args.ref_ops, tuple(args.sizes.split(",")),
              tuple(float(o) for o in args.occupancies.split(",")), tuple(args.modes.split(",")))
    print(res.table())
    print("\nper-op medians, us (runs: this allocator; walk: the linear walk it replaced)")
    print(res.extra["matrix"])
    log(f"wrote {res.write()}")
    return res



# ---------------------------------------------------------------------------- IPv6 (issue 13)
SUBNETS_V6 = {"IPv4 /24": "10.1.0.0/24", "IPv6 /120": "fd00:1::/120", "IPv6 /64": "fd00:2::/64"}
V6_OCCUPANCY = 0.9
FULL_V6 = {"repeats": 5, "ops_per_repeat": 40_000, "memory_held": 100_000}


def loaded_wide(subnet: str, held: int, free_sample: int, seed: int = 1):
    """A huge subnet (an IPv6 /64) holding ``held`` addresses laid out like :func:`loaded`: a run
    from the first host (half of them), the rest at random anywhere; cursor at the end. The free
    addresses the static cycle reserves are ``free_sample`` drawn at random (never a list of the
    subnet's free addresses: that is what the allocator must not need either)."""
    spec = parse_network_spec({"subnet": subnet})
    lo, hi = spec.first + 2, spec.primary.host_last
    alloc = SubnetAllocator("bench", spec, cursor=hi)
    run = held // 2
    rng = random.Random(seed)
    taken: set[int] = set(range(lo, lo + run))
    while len(taken) < held:
        taken.add(rng.randrange(lo + run, hi + 1))
    others = sorted(taken - set(range(lo, lo + run)))
    rng.shuffle(others)
    for i, ip in enumerate(itertools.chain(range(lo, lo + run), others)):
        alloc.reserve(ip, _holder("f", i))
    free: set[int] = set()
    while len(free) < free_sample:
        ip = rng.randrange(lo + run, hi + 1)
        if ip not in taken:
            free.add(ip)
    return alloc, others, sorted(free)


def per_op_v6(label: str, mode: str, repeats: int, ops: int, held: int) -> list[float]:
    subnet = SUBNETS_V6[label]
    if label == "IPv6 /64":
        alloc, others, free = loaded_wide(subnet, held, max(held, 2 * ops))
    else:
        alloc, others, free = loaded(SubnetAllocator, subnet, V6_OCCUPANCY)
    fn = dynamic if mode == "dynamic" else static
    rng = random.Random(3)
    fn(alloc, others, free, max(1, ops // 10), rng, "w")
    return [fn(alloc, others, free, ops, rng, f"r{r}-") / (2 * ops) for r in range(repeats)]


def memory_per_held(subnet: str, n: int, seed: int = 5) -> tuple[float, int]:
    """Bytes per held address (allocator holding ``n`` at random minus the empty allocator, over
    ``n``; the holders are built before tracing: only the allocator's own books count) and the
    empty allocator's bytes."""
    spec = parse_network_spec({"subnet": subnet})
    rng = random.Random(seed)
    lo, hi = spec.first + 2, spec.primary.host_last
    ips = rng.sample(range(lo, hi + 1), n) if hi - lo < 10**7 else [rng.randrange(lo, hi + 1) for _ in range(n)]
    holders = [Holder(f"bench/p{i}", f"uid-{i}", "net0", f"0a:00:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:"
                      f"{i >> 8 & 255:02x}:{i & 255:02x}") for i in range(n)]
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        alloc = SubnetAllocator("bench", spec)
        empty = tracemalloc.get_traced_memory()[0] - base
        for ip, h in zip(ips, holders, strict=True):
            try:
                alloc.reserve(ip, h)
            except Exception:  # noqa: BLE001 - a rare duplicate draw in the /64: skipped
                continue
        full = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return (full - empty) / max(1, alloc.used), empty


def run_v6(repeats: int = 5, ops: int = 20_000, memory_held: int = 100_000) -> Result:
    """IPv6 /120 and /64 against the IPv4 /24 in the same run, and the /64's memory per held address."""
    res = Result("s3_allocator_v6", "allocator, IPv6 /120 and /64 vs IPv4 /24 (same run), /64 memory per held address",
                 params={"repeats": repeats, "ops_per_repeat": 2 * ops, "memory_held": memory_held,
                         "occupancy": V6_OCCUPANCY}, full=FULL_V6)
    held = round((256 - 3) * V6_OCCUPANCY)   # the /24's (and /120's) held count, also held in the /64
    table: dict[tuple[str, str], float] = {}
    for mode in ("dynamic", "static"):
        for label in SUBNETS_V6:
            times = per_op_v6(label, mode, repeats, ops, held)
            table[mode, label] = median(times)
            log(f"v6 {mode} {label}: {median(times) * 1e6:.2f} us/op (runs: "
                + ", ".join(f"{t * 1e6:.2f}" for t in times) + ")")
        base = table[mode, "IPv4 /24"]
        res.add(f"{mode} IPv4 /24 ops/s", 1 / base, "ops/s")
        for label in ("IPv6 /120", "IPv6 /64"):
            v = table[mode, label]
            res.add(f"{mode} {label} ops/s", 1 / v, "ops/s", baseline=1 / base, baseline_name="IPv4 /24",
                    target=f">= {1 / TARGET_RATIO:g} x IPv4 /24", met=v / base <= TARGET_RATIO)
    per_v6, empty_v6 = memory_per_held(SUBNETS_V6["IPv6 /64"], memory_held)
    per_v4, empty_v4 = memory_per_held("10.2.0.0/16" if memory_held < 65_000 else "10.0.0.0/8", memory_held)
    res.add(f"IPv6 /64 memory per held address ({memory_held:,} held)", per_v6, "bytes", baseline=per_v4,
            baseline_name="IPv4 subnet, same count", target="<= 2 x IPv4", met=per_v6 <= 2 * per_v4)
    res.add("IPv6 /64 empty allocator", empty_v6, "bytes", baseline=empty_v4, baseline_name="IPv4, empty",
            target="independent of the subnet size", met=empty_v6 <= 2 * empty_v4)
    res.extra["per_op_us"] = {f"{m} {label}": v * 1e6 for (m, label), v in table.items()}
    res.notes.append(f"held in each subnet: {held} (the /24 at {V6_OCCUPANCY:.0%}); one op = one allocate, "
                     "reserve or release; per op = median of the repeats; memory: tracemalloc, holders built "
                     "before tracing")
    return res


if __name__ == "__main__":
    main()
