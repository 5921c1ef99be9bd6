"""Pure per-network address allocator: no Kubernetes, no OVN.

Addresses are ints internally. Nothing scans the subnet, at any occupancy: lookups are dicts,
exclusions are merged sorted ranges searched by bisect, ``available`` is kept exact
incrementally, and the free addresses are kept as sorted runs (:class:`.freeruns.FreeRuns`), so
"the next free address after the cursor" is two bisects however many held addresses follow the
cursor. Every operation costs O(log n) comparisons plus a bounded amount of list work; the one
loop left is in :meth:`SubnetAllocator.allocate`, which steps once per free address whose
derived MAC another holder took as its static MAC (one step per such holder at most).

Memory tracks the held addresses, never the free ones: the free runs number at most held +
exclusions + 2, and a fresh network of any size is one run.

Dynamic allocation uses a cursor that only moves forward (wrapping at the end of the subnet),
so a just-freed address is the last one to be handed out again: clients still talking to the
old holder do not reach a new pod straight away.

IPv6 (issue 13): a :class:`SubnetAllocator` serves one family; the same code serves an IPv6 /64
(addresses and counters are Python ints, never floats; a fresh /64 is one free run, so memory
and time depend on the held addresses only). Its host range is ``first + 1 .. last``: the network
address is the subnet-router anycast address (never handed out), and there is no broadcast.
:class:`NetworkAllocator` holds one per family of a network and gives an interface one address
per family, atomically (both or neither).

MACs: one per interface, shared by its addresses. Derived (``0a:58:`` + 4 bytes) from the IPv4
address when the network has IPv4, else from the IPv6 address's low 4 bytes. A dynamic address
whose derived MAC another interface of the network holds is skipped (the next free address whose
derived MAC is free is taken, as for IPv4); a static address whose derived MAC is held is refused
as held (retried; ``mac_address`` picks another MAC).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeAlias

import netaddr

from ..model.annotation import normalize_mac
from ..model.iptext import ip_value
from ..model.names import mac_from_int
from ..model.network import NetworkSpec, SubnetSpec, family_name
from .freeruns import FreeRuns

__all__ = ["AllocationError", "Holder", "NetworkAllocator", "NetworkExhausted", "SubnetAllocator"]


_CANONICAL_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")


class AllocationError(Exception):
    """An address or MAC cannot be given to this holder; ``str(e)`` is the user message."""


class AddressHeld(AllocationError):
    """The address or MAC is held by another pod: it may free up later (a retriable refusal)."""


class NetworkExhausted(AllocationError):
    """No free address is left on the network."""


@dataclass(frozen=True)
class Holder:
    pod: str  # "namespace/name"
    pod_uid: str
    interface: str
    mac: str  # lower-case colon form; "" in allocate() means "derive from the address"
    claim: str = ""      # "namespace/name" of the IPClaim the address is held for (reconcile/claims.py)
    claim_uid: str = ""  # that IPClaim's UID

    @property
    def key(self) -> tuple[str, str]:
        return (self.pod_uid, self.interface)


IPLike: TypeAlias = "netaddr.IPAddress | str | int"


class SubnetAllocator:
    """Addresses and MACs held on one family of one network (a NetworkSpec: its primary family)."""

    def __init__(self, network: str, spec: SubnetSpec | NetworkSpec, cursor: int | None = None) -> None:
        self.network = network
        self.spec = spec   # as given (with_spec keeps the kind)
        if isinstance(spec, NetworkSpec):
            spec = spec.primary
        self.family_spec: SubnetSpec = spec
        self._version = spec.version
        self._net_first = spec.first
        self._net_last = spec.last
        # Usable host range; parse_network_spec guarantees at least two hosts.
        self._lo = spec.host_first
        self._hi = spec.host_last
        self._gw = int(spec.gateway)
        self._starts = [lo for lo, _ in spec.exclude]
        self._ends = [hi for _, hi in spec.exclude]
        excluded = spec.excluded_count(self._lo, self._hi)
        gw_blocks = self._lo <= self._gw <= self._hi and not spec.is_excluded(self._gw)
        # Addresses that could ever be handed out: hosts minus gateway minus exclusions.
        self._capacity = (self._hi - self._lo + 1) - excluded - (1 if gw_blocks else 0)
        self._held: dict[int, Holder] = {}
        self._by_key: dict[tuple[str, str], int] = {}
        self._by_mac: dict[str, Holder] = {}
        # Held addresses that count against capacity (all of them, unless a spec change left
        # some on the gateway or in an exclusion).
        self._held_in_capacity = 0
        # The addresses allocate() may hand out and nobody holds: exactly `available` of them.
        self._free = FreeRuns(self._capacity_runs(), wide=self._version != 4)
        if cursor is None or not (self._net_first <= cursor <= self._net_last):
            cursor = self._net_first
        self._cursor = cursor

    # -- helpers ---------------------------------------------------------------------------

    def _capacity_runs(self) -> list[tuple[int, int]]:
        """The host range minus the gateway and the exclusions, as sorted runs (no scan)."""
        runs = []
        start = self._lo
        for a, b in self.family_spec.exclude:
            if b < start:
                continue
            if a > self._hi:
                break
            if a > start:
                runs.append((start, a - 1))
            start = b + 1
        if start <= self._hi:
            runs.append((start, self._hi))
        gw = self._gw
        out = []
        for s, e in runs:
            if s <= gw <= e:
                out += [(s, gw - 1), (gw + 1, e)]
            else:
                out.append((s, e))
        return [(s, e) for s, e in out if s <= e]

    def _label(self) -> str:
        return f"{self.network} ({self.spec.subnet})"

    def _to_int(self, ip: IPLike) -> int | None:
        """The address as an int, or None if it is of another IP version / not an address."""
        if isinstance(ip, str):
            parsed = ip_value(ip.strip())
            return parsed[1] if parsed is not None and parsed[0] == self._version else None
        if isinstance(ip, bool):
            return None
        if isinstance(ip, int):
            return ip if 0 <= ip < (1 << (32 if self._version == 4 else 128)) else None
        if isinstance(ip, netaddr.IPAddress):
            return int(ip) if ip.version == self._version else None
        return None

    def _addr(self, ip: int) -> netaddr.IPAddress:
        return netaddr.IPAddress(ip, self._version)

    def _in_capacity(self, ip: int) -> bool:
        return self._lo <= ip <= self._hi and ip != self._gw and not self._excluded(ip)

    def _excluded(self, ip: int) -> bool:
        i = bisect.bisect_right(self._starts, ip) - 1
        return i >= 0 and ip <= self._ends[i]

    def _check(self, ip: IPLike, key: tuple[str, str]) -> int:
        value = self._to_int(ip)
        if value is None or not (self._net_first <= value <= self._net_last):
            raise AllocationError(f"ip_address {ip} is outside {self._label()}")
        if value == self._net_first or value > self._hi or value == self._gw:
            pass
        elif (not self._starts or not self._excluded(value)):
            holder = self._held.get(value)
            if holder is None or holder.key == key:
                return value   # the common case: no message to build
        shown = self._addr(value)
        if value == self._net_first:
            if self._version == 6:
                raise AllocationError(
                    f"ip_address {shown} is the subnet-router anycast address of {self.network}"
                )
            raise AllocationError(f"ip_address {shown} is the network address of {self.network}")
        if value == self._net_last and self._version == 4:
            raise AllocationError(
                f"ip_address {shown} is the broadcast address of {self.network}"
            )
        if value == self._gw:
            raise AllocationError(f"ip_address {shown} is the gateway of {self.network}")
        if self._excluded(value):
            raise AllocationError(f"ip_address {shown} is excluded on {self.network}")
        holder = self._held.get(value)
        if holder is not None and holder.key != key:
            raise AddressHeld(f"ip_address {shown} on {self.network} is held by {holder.pod}")
        return value

    def _check_key_free(self, value: int, holder: Holder) -> None:
        current = self._by_key.get(holder.key)
        if current is not None and current != value:
            raise AllocationError(
                f"{holder.pod} interface {holder.interface} already holds "
                f"{self._addr(current)} on {self.network}"
            )

    def _mac_conflict(self, mac: str, key: tuple[str, str]) -> Holder | None:
        other = self._by_mac.get(mac)
        return other if other is not None and other.key != key else None

    def _store(self, value: int, holder: Holder) -> None:
        previous = self._held.get(value)
        if previous is not None:
            # Same holder again (idempotent); its MAC may have been filled in since.
            if previous.mac and self._by_mac.get(previous.mac) is previous:
                del self._by_mac[previous.mac]
        else:
            if self._in_capacity(value):
                self._free.take(value)
                self._held_in_capacity += 1
        self._held[value] = holder
        self._by_key[holder.key] = value
        if holder.mac:
            self._by_mac[holder.mac] = holder

    @staticmethod
    def _normalized(holder: Holder) -> Holder:
        if not holder.mac or _CANONICAL_MAC.fullmatch(holder.mac):
            return holder
        mac = normalize_mac(holder.mac)
        if mac is None:
            raise AllocationError(f"mac_address {holder.mac} is not a valid MAC address")
        return holder if mac == holder.mac else replace(holder, mac=mac)

    # -- public API ------------------------------------------------------------------------

    @property
    def used(self) -> int:
        return len(self._held)

    @property
    def available(self) -> int:
        """Exact count of addresses allocate() could still hand out."""
        return self._capacity - self._held_in_capacity

    @property
    def capacity(self) -> int:
        """Usable host addresses minus the gateway minus exclusions."""
        return self._capacity

    @property
    def cursor(self) -> int:
        """The last dynamically allocated address (int); persist it to keep reuse order."""
        return self._cursor

    def check_static(self, ip: IPLike, pod_uid: str, interface: str) -> None:
        """Raise AllocationError unless ``ip`` is free or already held by this interface."""
        self._check(ip, (pod_uid, interface))

    def check_mac(self, mac: str, pod_uid: str, interface: str) -> None:
        normalized = normalize_mac(mac)
        if normalized is None:
            raise AllocationError(f"mac_address {mac} is not a valid MAC address")
        other = self._mac_conflict(normalized, (pod_uid, interface))
        if other is not None:
            raise AddressHeld(
                f"mac_address {normalized} on {self.network} is held by {other.pod}"
            )

    def reserve(self, ip: IPLike, holder: Holder) -> None:
        """Hold a static address (or rebuild from a record). Idempotent for the same holder.

        An empty ``holder.mac`` is filled in with the MAC derived from the address.
        """
        holder = self._normalized(holder)
        value = self._check(ip, holder.key)
        self._check_key_free(value, holder)
        if not holder.mac:
            holder = replace(holder, mac=mac_from_int(value))
        other = self._mac_conflict(holder.mac, holder.key)   # holder.mac is normalised by now
        if other is not None:
            raise AddressHeld(f"mac_address {holder.mac} on {self.network} is held by {other.pod}")
        self._store(value, holder)

    def reserve_derived(self, ip: IPLike, holder: Holder) -> None:
        """:meth:`reserve` of a static address with a MAC derived from it (``holder.mac`` empty):
        the message says the derived MAC is what collides, and how to avoid it."""
        value = self._check(ip, holder.key)
        mac = mac_from_int(value)
        other = self._mac_conflict(mac, holder.key)
        if other is not None:
            raise AddressHeld(
                f"mac_address {mac} (derived from ip_address {self._addr(value)}) on {self.network} "
                f"is held by {other.pod}; set mac_address to use another"
            )
        self.reserve(value, holder)

    def allocate(self, holder: Holder) -> netaddr.IPAddress:
        """Hand out the next free address after the cursor.

        Idempotent: if this pod_uid+interface already holds an address, that one is returned.
        An empty ``holder.mac`` means "derive the MAC from the address" (``mac_from_ip``);
        the stored holder (see :meth:`holder_of`) then carries that MAC. Addresses whose
        derived MAC is taken by a static MAC elsewhere are skipped.
        """
        if holder.mac:
            holder = self._normalized(holder)
            self.check_mac(holder.mac, holder.pod_uid, holder.interface)
        key = (holder.pod_uid, holder.interface)
        existing = self._by_key.get(key)
        if existing is not None:
            return netaddr.IPAddress(existing, self._version)
        if self._capacity - self._held_in_capacity <= 0:
            raise NetworkExhausted(f"network {self._label()} has no free address")
        free = self._free
        c = free.take_next(self._cursor + 1)   # after the cursor, else wrapping to the lowest
        if c is None:   # the count above says one is free: the two disagree
            raise NetworkExhausted(f"network {self._label()} has no free address")
        if holder.mac:
            stored = holder
        else:
            mac = mac_from_int(c)
            if mac in self._by_mac:   # rare: a static MAC equal to this address's derived one
                free.give(c)
                c, mac = self._skip_mac_clashes(c)
                free.take(c)
            stored = replace(holder, mac=mac)
        # c is free, in the host range, not the gateway and not excluded: it counts.
        self._cursor = c
        self._held[c] = stored
        self._by_key[key] = c
        self._by_mac[stored.mac] = stored
        self._held_in_capacity += 1
        return netaddr.IPAddress(c, self._version)

    def _skip_mac_clashes(self, c: int) -> tuple[int, str]:
        """The first free address from ``c`` on (wrapping) whose derived MAC nobody holds.

        Only reached when a holder took, as its static MAC, the MAC derived from a free address:
        each step passes one such holder, and after every free address was tried the network
        counts as exhausted for derived MACs (a holder with its own MAC may still get one).
        """
        free, by_mac = self._free, self._by_mac
        for _ in range(self.available - 1):
            nxt = free.next_free(c + 1)
            if nxt is None:
                nxt = free.first()
            if nxt is None:
                break
            c = nxt
            mac = mac_from_int(c)
            if mac not in by_mac:
                return c, mac
        raise NetworkExhausted(f"network {self._label()} has no free address")

    def release(self, ip: IPLike) -> Holder | None:
        """Free an address; returns its former holder (None if it was not held)."""
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
                self._free.give(value)
                self._held_in_capacity -= 1
        return holder

    def release_interface(self, pod_uid: str, interface: str) -> netaddr.IPAddress | None:
        """Release whatever this pod interface holds; returns the address, if any."""
        value = self._by_key.get((pod_uid, interface))
        if value is None:
            return None
        self.release(value)
        return self._addr(value)

    def held_by(self, ip: IPLike) -> Holder:
        """The holder of an address this allocator is known to hold (reserved or allocated just now)."""
        holder = self.holder_of(ip)
        if holder is None:
            raise LookupError(f"address {ip} is not held on network {self._label()}")
        return holder

    def holder_of(self, ip: IPLike) -> Holder | None:
        value = self._to_int(ip)
        return None if value is None else self._held.get(value)

    def find(self, pod_uid: str, interface: str) -> netaddr.IPAddress | None:
        value = self._by_key.get((pod_uid, interface))
        return None if value is None else self._addr(value)

    def holders(self) -> dict[str, Holder]:
        return {str(self._addr(ip)): h for ip, h in self._held.items()}

    def with_spec(self, spec: SubnetSpec | NetworkSpec) -> SubnetAllocator:
        """A new allocator for ``spec`` keeping every holder (check spec_conflicts first)."""
        new = SubnetAllocator(self.network, spec, cursor=self._cursor)
        for value, holder in self._held.items():
            new._store(value, holder)
        return new

    def __repr__(self) -> str:
        return (
            f"SubnetAllocator({self.network!r}, {self.spec.subnet}, used={self.used}, "
            f"available={self.available})"
        )


class NetworkAllocator:
    """One network's addresses: a :class:`SubnetAllocator` per family (IPv4 first).

    Address-keyed calls (:meth:`reserve`, :meth:`release`, :meth:`holder_of`, ...) go to the
    allocator of the address's family (an int means the primary family). An interface holds one
    address per family, all with the same holder (pod, interface, MAC); :meth:`attach` gives it
    every family at once or nothing.
    """

    def __init__(self, network: str, spec: NetworkSpec,
                 cursors: Mapping[int, int | None] | None = None) -> None:
        self.network = network
        self.spec = spec
        cursors = cursors or {}
        self.families: dict[int, SubnetAllocator] = {
            f.version: SubnetAllocator(network, f, cursor=cursors.get(f.version)) for f in spec.families
        }

    # -- dispatch ----------------------------------------------------------------------------

    @property
    def primary(self) -> SubnetAllocator:
        return self.families[self.spec.version]

    def family(self, version: int) -> SubnetAllocator | None:
        return self.families.get(version)

    def _version_of(self, ip: IPLike) -> int | None:
        if isinstance(ip, netaddr.IPAddress):
            return int(ip.version)
        if isinstance(ip, str):
            parsed = ip_value(ip.strip())
            return None if parsed is None else parsed[0]
        return self.spec.version   # an int: the primary family

    def _for(self, ip: IPLike) -> SubnetAllocator:
        version = self._version_of(ip)
        if version is None:
            raise AllocationError(f"ip_address {ip} is not an IPv4 or IPv6 address")
        alloc = self.families.get(version)
        if alloc is None:
            raise AllocationError(
                f"ip_address {ip} is an {family_name(version)} address, but network {self.network} "
                f"has no {family_name(version)} subnet ({self.spec.subnets_text()})"
            )
        return alloc

    # -- address-keyed -----------------------------------------------------------------------

    def check_static(self, ip: IPLike, pod_uid: str, interface: str) -> None:
        self._for(ip).check_static(ip, pod_uid, interface)

    def check_mac(self, mac: str, pod_uid: str, interface: str) -> None:
        for alloc in self.families.values():
            alloc.check_mac(mac, pod_uid, interface)

    def reserve(self, ip: IPLike, holder: Holder) -> None:
        self._for(ip).reserve(ip, holder)

    def release(self, ip: IPLike) -> Holder | None:
        version = self._version_of(ip)
        alloc = self.families.get(version) if version is not None else None
        return alloc.release(ip) if alloc is not None else None

    def holder_of(self, ip: IPLike) -> Holder | None:
        version = self._version_of(ip)
        alloc = self.families.get(version) if version is not None else None
        return alloc.holder_of(ip) if alloc is not None else None

    def held_by(self, ip: IPLike) -> Holder:
        return self._for(ip).held_by(ip)

    # -- interface-keyed ---------------------------------------------------------------------

    def find(self, pod_uid: str, interface: str) -> netaddr.IPAddress | None:
        """The interface's primary-family address, if held."""
        return self.primary.find(pod_uid, interface)

    def find_all(self, pod_uid: str, interface: str) -> tuple[netaddr.IPAddress, ...]:
        """Every address the interface holds, in family order (IPv4 first)."""
        found = (a.find(pod_uid, interface) for a in self.families.values())
        return tuple(ip for ip in found if ip is not None)

    def attach(self, holder: Holder, statics: Sequence[netaddr.IPAddress] = ()) -> tuple[netaddr.IPAddress, ...]:
        """One address per family for ``holder``'s interface: the static one of a family when
        ``statics`` has it, else the next dynamic one. The MAC is ``holder.mac``, or derived from
        the first family's address (IPv4 when there is one) and shared by all. Atomic: when a
        later family fails, the addresses taken for the earlier ones are released, and the error
        is raised. An interface that already holds a family's address keeps it (idempotent)."""
        wanted = {ip.version: ip for ip in statics}
        for version, ip in wanted.items():
            if version not in self.families:
                self._for(ip)   # raises: no subnet of that family
        taken: list[tuple[SubnetAllocator, int]] = []
        out: list[netaddr.IPAddress] = []
        try:
            for version, alloc in self.families.items():
                existing = alloc.find(holder.pod_uid, holder.interface)
                if existing is not None:
                    ip = existing
                elif version in wanted:
                    if holder.mac:
                        alloc.reserve(wanted[version], holder)
                    else:
                        alloc.reserve_derived(wanted[version], holder)
                    ip = wanted[version]
                    taken.append((alloc, int(ip)))
                else:
                    ip = alloc.allocate(holder)
                    taken.append((alloc, int(ip)))
                out.append(ip)
                if not holder.mac:   # the first family fixed the MAC for the others
                    holder = replace(holder, mac=alloc.held_by(ip).mac)
        except AllocationError:
            for alloc, value in reversed(taken):
                alloc.release(value)
            raise
        return tuple(out)

    def release_interface(self, pod_uid: str, interface: str) -> tuple[netaddr.IPAddress, ...]:
        out = []
        for alloc in self.families.values():
            ip = alloc.release_interface(pod_uid, interface)
            if ip is not None:
                out.append(ip)
        return tuple(out)

    def holders(self) -> dict[str, Holder]:
        out: dict[str, Holder] = {}
        for alloc in self.families.values():
            out.update(alloc.holders())
        return out

    # -- counters ----------------------------------------------------------------------------

    @property
    def used(self) -> int:
        """Held addresses of the primary family (= interfaces holding an address)."""
        return self.primary.used

    @property
    def available(self) -> int:
        """Free addresses of the primary family (exact; may exceed 2**64 for an IPv6 /64)."""
        return self.primary.available

    @property
    def cursor(self) -> int:
        return self.primary.cursor

    def with_spec(self, spec: NetworkSpec) -> NetworkAllocator:
        """A new allocator for ``spec`` keeping every holder of the families it keeps (check
        spec_conflicts first: it refuses removing a family that holds addresses)."""
        new = NetworkAllocator(self.network, spec)
        for version, alloc in self.families.items():
            fam = spec.family(version)
            if fam is not None:
                new.families[version] = alloc.with_spec(fam)
        return new

    def __repr__(self) -> str:
        return f"NetworkAllocator({self.network!r}, {list(self.families.values())})"
