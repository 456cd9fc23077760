"""The endpoint's Address Translation Cache (PCIe ATS): translations the SMMU handed out.

Each entry remembers where it came from (`dom`, the domain of the SMMU configuration that
produced it, and the ATS completion) so that the trace can prove which domain every
translated DMA used (invariants 1 and 2).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from cosim.arch.domain import Domain
from cosim.translation_agent import AtsCompletion

Policy = Literal["lru", "fifo"]
POLICIES: tuple[str, ...] = ("lru", "fifo")
DEFAULT_ENTRIES = 32


@dataclass
class AtcEntry:
    """One cached translation of `[iova, iova+size)` (size a power of two, iova aligned)."""

    id: int
    pasid: int | None
    iova: int
    size: int
    pa: int
    read: bool
    write: bool
    dom: Domain | None
    completion: AtsCompletion | None = field(default=None, repr=False)

    @property
    def perm(self) -> str:
        return ("r" if self.read else "") + ("w" if self.write else "")

    def covers(self, pasid: int | None, addr: int) -> bool:
        return self.pasid == pasid and self.iova <= addr < self.iova + self.size

    def overlaps(self, addr: int, size: int) -> bool:
        return self.iova < addr + size and addr < self.iova + self.size

    def pa_of(self, addr: int) -> int:
        return self.pa + (addr - self.iova)


class Atc:
    """A fully associative cache of `capacity` entries with LRU or FIFO replacement."""

    def __init__(self, capacity: int = DEFAULT_ENTRIES, policy: str = "lru") -> None:
        if capacity < 1:
            raise ValueError("ATC capacity must be at least 1")
        if policy not in POLICIES:
            raise ValueError(f"ATC policy must be one of {POLICIES}, not {policy!r}")
        self.capacity = capacity
        self.policy = policy
        # Insertion order is the replacement order: LRU moves hits to the end, FIFO does not.
        self._entries: OrderedDict[int, AtcEntry] = OrderedDict()
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[AtcEntry]:
        return list(self._entries.values())

    def get(self, entry_id: int) -> AtcEntry | None:
        return self._entries.get(entry_id)

    def lookup(self, pasid: int | None, addr: int) -> AtcEntry | None:
        """The entry translating `addr` for `pasid`, updating recency under LRU."""
        for e in reversed(self._entries.values()):  # most recent first: likely hit
            if e.covers(pasid, addr):
                if self.policy == "lru":
                    self._entries.move_to_end(e.id)
                return e
        return None

    def insert(self, pasid: int | None, iova: int, size: int, pa: int, read: bool,
               write: bool, dom: Domain | None, completion: AtsCompletion | None = None
               ) -> tuple[AtcEntry, list[AtcEntry]]:
        """Cache a translation; returns it and the entries it displaced.

        An existing entry overlapping the new one for the same PASID is replaced (it is stale:
        the new completion is the SMMU's current answer), then the victim by policy if full.
        """
        size = max(1, size)
        iova &= ~(size - 1)
        pa &= ~(size - 1)
        evicted = [e for e in self._entries.values()
                   if e.pasid == pasid and e.overlaps(iova, size)]
        for e in evicted:
            del self._entries[e.id]
        while len(self._entries) >= self.capacity:
            _, victim = self._entries.popitem(last=False)
            evicted.append(victim)
        entry = AtcEntry(next(self._ids), pasid, iova, size, pa, read, write, dom, completion)
        self._entries[entry.id] = entry
        return entry, evicted

    def invalidate(self, pasid: int | None, addr: int, size: int | None,
                   all_pasids: bool = False) -> list[AtcEntry]:
        """Drop the entries an ATS Invalidate Request names; returns them.

        PCIe ATS: a request without PASID invalidates the range for every PASID (there is no
        way to target only the no-PASID entries; Linux relies on this for SSID 0); a request
        with a PASID targets that PASID, or all PASIDs with the Global Invalidate bit.
        `size` None means the whole address space.
        """
        every_pasid = pasid is None or all_pasids
        dropped = [e for e in self._entries.values()
                   if (every_pasid or e.pasid == pasid)
                   and (size is None or e.overlaps(addr, size))]
        for e in dropped:
            del self._entries[e.id]
        return dropped

    def invalidate_pasid(self, pasid: int) -> list[AtcEntry]:
        return self.invalidate(pasid, 0, None)

    def invalidate_all(self) -> list[AtcEntry]:
        return self.invalidate(None, 0, None)

    def clear(self) -> None:
        self._entries.clear()
