"""The free addresses of one network as sorted runs (inclusive ``[start, end]`` intervals of ints).

Memory tracks the runs, never the addresses: a run ends only at a held address, an exclusion,
the gateway or the end of the subnet, so there are at most (held + exclusions + 2) runs whatever
the subnet's size (an empty IPv6 /64 is one run). Nothing is stored per free address.

The runs are kept in order in blocks of at most ``2 * LOAD`` runs (two parallel lists per block,
starts and ends) under one top-level list holding each block's last end. Every operation is:

- two bisects (top level, then inside one block): O(log n) comparisons, done in C;
- a constant number of list reads/writes, and at most one insert or delete inside one block,
  which moves at most ``2 * LOAD`` list slots (a bounded memmove, not a function of n);
- when a block outgrows ``2 * LOAD`` it is split (and one shrunk below ``LOAD // 4`` is merged
  into a neighbour), which inserts or deletes one top-level slot; a split needs at least
  ``LOAD`` inserts into that block first, so this costs (blocks / LOAD) slot moves amortised
  over those inserts: under one slot per operation for up to ``LOAD**2`` (262,144) runs.

Operations: :meth:`next_free` (the lowest free address >= y), :meth:`first`, :meth:`take` (a
free address becomes held), :meth:`take_next` (both at once, wrapping) and :meth:`give` (a held
address becomes free). ``take`` of an
address that is not free and ``give`` of one that is raise ValueError: the caller's books are
wrong, and silently going on would hand an address out twice.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, MutableSequence
from itertools import pairwise

__all__ = ["FreeRuns", "LOAD"]

LOAD = 512


class FreeRuns:
    """Sorted disjoint, non-adjacent runs of free addresses."""

    __slots__ = ("_s", "_e", "_maxes", "_block")

    def __init__(self, runs: Iterable[tuple[int, int]] = (), *, wide: bool = False) -> None:
        """``wide``: addresses may not fit 64 bits (IPv6); blocks are then lists of ints, else
        packed arrays (one contiguous buffer per block: fewer cache misses in the bisects)."""
        self._block = list if wide else (lambda values=(): array("Q", values))
        flat = [(s, e) for s, e in runs if s <= e]
        for (s0, e0), (s1, _) in pairwise(flat):
            if s1 <= e0 + 1:
                raise ValueError(f"runs [{s0}, {e0}] and [{s1}, ...] overlap or touch")
        self._s: list[MutableSequence[int]] = []
        self._e: list[MutableSequence[int]] = []
        for i in range(0, len(flat), LOAD):
            chunk = flat[i:i + LOAD]
            self._s.append(self._block(s for s, _ in chunk))
            self._e.append(self._block(e for _, e in chunk))
        self._maxes: list[int] = [ends[-1] for ends in self._e]

    # -- queries -----------------------------------------------------------------------------

    def next_free(self, y: int) -> int | None:
        """The lowest free address >= ``y``, or None if there is none."""
        maxes = self._maxes
        b = bisect_left(maxes, y)   # first block holding a run that ends at or after y
        if b == len(maxes):
            return None
        ends = self._e[b]
        s = self._s[b][bisect_left(ends, y)]
        return s if s > y else y

    def first(self) -> int | None:
        """The lowest free address, or None."""
        return self._s[0][0] if self._s else None

    def __contains__(self, x: int) -> bool:
        return self.next_free(x) == x

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for starts, ends in zip(self._s, self._e, strict=True):
            yield from zip(starts, ends, strict=True)

    def __len__(self) -> int:
        """Number of runs (not addresses)."""
        return sum(len(starts) for starts in self._s)

    def size(self) -> int:
        """Number of free addresses: O(runs), for checks and tests, not the hot path."""
        return sum(e - s + 1 for s, e in self)

    def blocks(self) -> int:
        return len(self._s)

    # -- updates -----------------------------------------------------------------------------

    def take(self, x: int) -> None:
        """``x`` (free) becomes held: its run shrinks or splits in two."""
        b = bisect_left(self._maxes, x)
        if b < len(self._maxes):
            starts, ends = self._s[b], self._e[b]
            j = bisect_left(ends, x)
            s = starts[j]
            if s <= x:
                e = ends[j]
                if s == e:
                    self._delete(b, j)
                elif x == s:
                    starts[j] = x + 1
                elif x == e:
                    ends[j] = x - 1
                    if j == len(ends) - 1:
                        self._maxes[b] = x - 1
                else:  # split: [s, x-1] and [x+1, e]; the block's last end is unchanged
                    ends[j] = x - 1
                    starts.insert(j + 1, x + 1)
                    ends.insert(j + 1, e)
                    if len(starts) > 2 * LOAD:
                        self._split(b)
                return
        raise ValueError(f"address {x} is not free")

    def take_next(self, y: int) -> int | None:
        """Take and return the lowest free address >= ``y``, else the lowest free address
        (wrapping); None if nothing is free. One search: the hot path of dynamic allocation."""
        maxes = self._maxes
        b = bisect_left(maxes, y)
        if b == len(maxes):
            if not maxes:
                return None
            b = j = 0
            starts, ends = self._s[0], self._e[0]
            x = starts[0]
        else:
            starts, ends = self._s[b], self._e[b]
            j = bisect_left(ends, y)
            x = starts[j]
            if x < y:
                x = y
        s, e = starts[j], ends[j]
        if x == s:
            if s == e:
                self._delete(b, j)
            else:
                starts[j] = x + 1
        elif x == e:
            ends[j] = x - 1
            if j == len(ends) - 1:
                maxes[b] = x - 1
        else:
            ends[j] = x - 1
            starts.insert(j + 1, x + 1)
            ends.insert(j + 1, e)
            if len(starts) > 2 * LOAD:
                self._split(b)
        return x

    def give(self, x: int) -> None:
        """``x`` (held) becomes free: it joins the run before, the run after, both or neither."""
        maxes = self._maxes
        nb = len(maxes)
        b = bisect_left(maxes, x)
        if b < nb:
            starts, ends = self._s[b], self._e[b]
            j = bisect_left(ends, x)    # the first run ending at or after x: it starts after x
            if starts[j] <= x:
                raise ValueError(f"address {x} is already free")
            right = starts[j] == x + 1
        else:   # after every run (no block to look in: never read below)
            starts = ends = []
            j = 0
            right = False
        if j > 0:
            pb, pj = b, j - 1
        elif b > 0:
            pb = b - 1
            pj = len(self._e[pb]) - 1
        else:
            pb = pj = -1
        left = pb >= 0 and self._e[pb][pj] == x - 1
        if left:
            pends = self._e[pb]
            if right:   # [.., x-1] + x + [x+1, ..]: one run
                pends[pj] = ends[j]
                if pj == len(pends) - 1:
                    maxes[pb] = ends[j]
                self._delete(b, j)
            else:
                pends[pj] = x
                if pj == len(pends) - 1:
                    maxes[pb] = x
        elif right:
            starts[j] = x
        elif b < nb:
            starts.insert(j, x)
            ends.insert(j, x)
            if len(starts) > 2 * LOAD:
                self._split(b)
        elif nb:   # after every run: append to the last block
            self._s[-1].append(x)
            self._e[-1].append(x)
            maxes[-1] = x
            if len(self._s[-1]) > 2 * LOAD:
                self._split(nb - 1)
        else:
            self._s.append(self._block([x]))
            self._e.append(self._block([x]))
            maxes.append(x)

    # -- blocks ------------------------------------------------------------------------------

    def _delete(self, b: int, j: int) -> None:
        starts, ends = self._s[b], self._e[b]
        del starts[j]
        del ends[j]
        if not starts:
            del self._s[b], self._e[b], self._maxes[b]
            return
        if j == len(ends):
            self._maxes[b] = ends[-1]
        if len(starts) < LOAD // 4 and len(self._s) > 1:
            a = b if b + 1 < len(self._s) else b - 1   # merge block a+1 into block a
            self._s[a].extend(self._s[a + 1])
            self._e[a].extend(self._e[a + 1])
            self._maxes[a] = self._maxes[a + 1]
            del self._s[a + 1], self._e[a + 1], self._maxes[a + 1]
            if len(self._s[a]) > 2 * LOAD:
                self._split(a)

    def _split(self, b: int) -> None:
        starts, ends = self._s[b], self._e[b]
        half = len(starts) // 2
        self._s.insert(b + 1, starts[half:])
        self._e.insert(b + 1, ends[half:])
        del starts[half:], ends[half:]
        self._maxes[b] = ends[-1]
        self._maxes.insert(b + 1, self._e[b + 1][-1])
