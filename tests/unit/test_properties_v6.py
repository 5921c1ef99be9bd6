"""Property tests of IPv6 and dual-stack allocation (issue 13): the allocator on an IPv6 /64 and
/120 against a reference model that never enumerates the subnet (it steps from the cursor past
held, excluded and gateway addresses and past addresses whose derived MAC is taken), and the
dual-stack NetworkAllocator's all-or-nothing interfaces."""

import netaddr
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ovnvnet.ipam import AllocationError, Holder, NetworkExhausted, SubnetAllocator
from ovnvnet.ipam.allocator import NetworkAllocator
from ovnvnet.model.names import mac_from_int
from ovnvnet.model.network import parse_network_spec


class Reference:
    """What the allocator must do, computed the slow, obvious way (but never per subnet address)."""

    def __init__(self, first: int, last: int, gw: int, exclude: list[tuple[int, int]], cursor: int) -> None:
        self.lo, self.hi, self.gw, self.exclude = first + 1, last, gw, exclude
        self.held: dict[int, tuple[str, str]] = {}       # ip -> (key, mac)
        self.cursor = cursor

    def excluded(self, ip: int) -> tuple[int, int] | None:
        return next(((a, b) for a, b in self.exclude if a <= ip <= b), None)

    def usable(self, ip: int) -> bool:
        return self.lo <= ip <= self.hi and ip != self.gw and self.excluded(ip) is None

    def macs(self) -> set[str]:
        return {mac for _, mac in self.held.values()}

    def capacity(self) -> int:
        excluded = sum(min(b, self.hi) - max(a, self.lo) + 1 for a, b in self.exclude
                       if min(b, self.hi) >= max(a, self.lo))
        gateway_counts = self.lo <= self.gw <= self.hi and self.excluded(self.gw) is None
        return self.hi - self.lo + 1 - excluded - int(gateway_counts)

    def next_dynamic(self) -> int | None:
        """The first free usable address after the cursor (wrapping once) whose derived MAC is free."""
        macs = self.macs()
        c, wrapped = self.cursor + 1, False
        while True:
            if c > self.hi:
                if wrapped:
                    return None
                c, wrapped = self.lo, True
            if wrapped and c > self.cursor:
                return None
            ex = self.excluded(c)
            if ex is not None:
                c = ex[1] + 1
                continue
            if c == self.gw or c in self.held or mac_from_int(c) in macs:
                c += 1
                continue
            return c


def machine(subnet: str, exclude: list[str], cursor_from_end: int | None):
    spec = parse_network_spec({"subnet": subnet, "excludeIPs": exclude})
    first, last = spec.first, spec.last

    class V6Machine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            cursor = first if cursor_from_end is None else last - cursor_from_end
            self.alloc = SubnetAllocator("six", spec, cursor=cursor)
            self.ref = Reference(first, last, int(spec.gateway), list(spec.exclude), cursor)
            self.serial = 0

        def holder(self, mac: str = "") -> Holder:
            self.serial += 1
            return Holder(f"ns/p{self.serial}", f"u{self.serial}", "net0", mac)

        # addresses picked where things happen: near the start, near the end, and 2**32 above
        # the start (same low 4 bytes, so the same derived MAC as an address near the start)
        offsets = st.one_of(st.integers(-1, 40).map(lambda k: first + k),
                            st.integers(0, 40).map(lambda k: last - k),
                            st.integers(0, 40).map(lambda k: first + 2**32 + k))

        @rule()
        def allocate(self):
            h = self.holder()
            want = self.ref.next_dynamic()
            try:
                got = int(self.alloc.allocate(h))
            except NetworkExhausted:
                assert want is None, f"exhausted, but {netaddr.IPAddress(want, 6)} is free"
                return
            assert got == want, f"got {netaddr.IPAddress(got, 6)}, the reference {want and netaddr.IPAddress(want, 6)}"
            self.ref.held[got] = (h.pod_uid, mac_from_int(got))
            self.ref.cursor = got

        @rule(ip=offsets, own_mac=st.sampled_from([None, "derived-of-start", "fresh"]))
        def reserve(self, ip, own_mac):
            if own_mac is None:
                mac = ""
            elif own_mac == "fresh":
                mac = f"0a:00:00:00:{self.serial // 256 % 256:02x}:{self.serial % 256:02x}"
            else:   # a static MAC equal to the MAC derived from an address near the start
                mac = mac_from_int(first + 2 + self.serial % 8)
            h = self.holder(mac)
            stored_mac = mac or mac_from_int(ip)
            ok = self.ref.usable(ip) and ip not in self.ref.held and stored_mac not in self.ref.macs()
            try:
                self.alloc.reserve(netaddr.IPAddress(ip, 6), h)
            except AllocationError:
                assert not ok, f"refused {netaddr.IPAddress(ip, 6)}"
                return
            assert ok, f"reserved {netaddr.IPAddress(ip, 6)} which should have been refused"
            self.ref.held[ip] = (h.pod_uid, stored_mac)

        @precondition(lambda self: self.ref.held)
        @rule(pick=st.integers(0, 10**6))
        def release(self, pick):
            ip = sorted(self.ref.held)[pick % len(self.ref.held)]
            released = self.alloc.release(netaddr.IPAddress(ip, 6))
            assert released is not None and released.pod_uid == self.ref.held.pop(ip)[0]

        @invariant()
        def matches_reference(self):
            held = self.alloc.holders()
            assert {int(netaddr.IPAddress(k)): (h.pod_uid, h.mac) for k, h in held.items()} == self.ref.held
            assert self.alloc.used == len(self.ref.held)
            available = self.alloc.available
            assert type(available) is int and available == self.ref.capacity() - len(self.ref.held)
            assert len(self.alloc._free) <= len(self.ref.held) + len(spec.exclude) + 2, "memory beyond held"

    V6Machine.TestCase.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)
    return V6Machine.TestCase


test_slash64_vs_reference = machine("fd00:1::/64", ["fd00:1::5..fd00:1::9", "fd00:1::1:0:0:3"], None)
test_slash64_wrapping_vs_reference = machine("fd00:1::/64", ["fd00:1::ffff:ffff:ffff:fff0"], 6)
test_slash120_vs_reference = machine("fd00:2::/120", ["fd00:2::10..fd00:2::1f"], None)
test_slash120_wrapping_vs_reference = machine("fd00:2::/120", [], 3)


# -- dual-stack: all or nothing -----------------------------------------------------------------

class DualMachine(RuleBasedStateMachine):
    """Interfaces on a dual-stack network with small subnets (both exhaust) and static requests:
    each interface holds one address of each family or none, with one MAC, and no address or MAC
    is held twice."""

    spec = parse_network_spec({"subnets": ["10.3.0.0/28", "fd00:3::/124"]})

    def __init__(self) -> None:
        super().__init__()
        self.alloc = NetworkAllocator("dual", self.spec)
        self.serial = 0
        self.live: set[str] = set()

    @rule(s4=st.none() | st.integers(0, 15), s6=st.none() | st.integers(0, 15))
    def attach(self, s4, s6):
        self.serial += 1
        h = Holder(f"ns/p{self.serial}", f"u{self.serial}", "net0", "")
        statics = [netaddr.IPAddress(self.spec.family(4).first + s4, 4)] if s4 is not None else []
        statics += [netaddr.IPAddress(self.spec.family(6).first + s6, 6)] if s6 is not None else []
        try:
            ips = self.alloc.attach(h, statics)
        except AllocationError:
            assert self.alloc.find_all(h.pod_uid, "net0") == ()   # neither family taken
            return
        assert [ip.version for ip in ips] == [4, 6]
        assert all(ip in ips for ip in statics)
        self.live.add(h.pod_uid)

    @precondition(lambda self: self.live)
    @rule(pick=st.integers(0, 10**6))
    def detach(self, pick):
        uid = sorted(self.live)[pick % len(self.live)]
        assert len(self.alloc.release_interface(uid, "net0")) == 2
        self.live.discard(uid)

    @invariant()
    def both_or_neither(self):
        by_uid: dict[str, list] = {}
        for ip, h in self.alloc.holders().items():
            by_uid.setdefault(h.pod_uid, []).append((netaddr.IPAddress(ip).version, h.mac))
        assert set(by_uid) == self.live
        for held in by_uid.values():
            assert sorted(v for v, _ in held) == [4, 6] and len({m for _, m in held}) == 1
        macs = [held[0][1] for held in by_uid.values()]
        assert len(macs) == len(set(macs))
        assert self.alloc.family(4).used == self.alloc.family(6).used == len(self.live)


DualMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)
test_dual_stack_all_or_nothing = DualMachine.TestCase
