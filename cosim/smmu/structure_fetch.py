"""Configuration structure fetches: what the SMMU reads of an STE or CD (Arm IHI 0070 §3.21.3).

An STE or CD is 64 bytes, but the SMMU reads it with 64-bit single-copy atomicity (§3.21.3: the
single-copy atomicity size "must be at least 64-bit"), "is not required to read the
double-words of the structure in order" (§3.21.3.1), "might read any entry at any time" and may
cache what it read "in its entirety or partially" (§3.21.3). A fetch that races the driver's
writes can therefore return, qword by qword, either what the SMMU observed earlier or what
memory holds now. A completed CMD_SYNC bounds "earlier": the driver made its writes before the
CMD_SYNC observable before issuing it, and it waits for the CMD_SYNC before relying on them.

In coherent and caching modes a fetch returns memory as it is. In strict mode the fetcher keeps,
per structure address, the qwords the SMMU last observed there: memory when the last CMD_SYNC
completed, or what the last fetch returned, whichever is later. A fetch returns, for every qword
in which that observation and memory now differ, one of the two, chosen by a PRNG seeded with
`SmmuOptions.strict_seed` (reproducible as far as the guest's timing is), and reports which
qwords came from the earlier observation (`Fetched.torn`, the fetch records' `torn`).

The fetcher observes a structure at a CMD_SYNC only once it knows the address: the structure
was fetched before, or it is the STE of a StreamID named by a CMD_CFGI_STE since the previous
CMD_SYNC (`expect`). The first fetch of any other structure returns memory as it is.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass

from cosim.memory import GuestMemory, read_or_none

QWORD = 8
TRACKED_MAX = 4096   # structures remembered; the least recently used is forgotten beyond it


@dataclass(frozen=True)
class Fetched:
    """The bytes a fetch returned, and the qwords among them from the earlier observation."""

    data: bytes
    torn: tuple[int, ...] = ()


class StructureFetcher:
    def __init__(self, mem: GuestMemory, strict: bool, seed: int) -> None:
        self.mem = mem
        self.strict = strict
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        self._rng = random.Random(self.seed)
        # addr -> (length, the bytes last observed, None: known address, not yet observed)
        self._seen: OrderedDict[int, tuple[int, bytes | None]] = OrderedDict()

    def fetch(self, addr: int, length: int) -> Fetched | None:
        """Read the structure at `addr`; None on an external abort (nothing is remembered:
        §3.21.3, a structure that was not fetched leaves no knowledge behind)."""
        data = read_or_none(self.mem, addr, length)
        if data is None or not self.strict:
            return None if data is None else Fetched(data)
        prev = self._seen.get(addr)
        seen = prev[1] if prev is not None and prev[0] == length else None
        torn: list[int] = []
        if seen is not None and seen != data:
            out = bytearray(data)
            bits = self._rng.getrandbits(length // QWORD)
            for i in range(length // QWORD):
                lo, hi = i * QWORD, (i + 1) * QWORD
                if seen[lo:hi] != data[lo:hi] and (bits >> i) & 1:
                    out[lo:hi] = seen[lo:hi]
                    torn.append(i)
            data = bytes(out)
        self._remember(addr, length, data)
        return Fetched(data, tuple(torn))

    def expect(self, addr: int, length: int) -> None:
        """The structure at `addr` is about to be used: observe it at the next CMD_SYNC."""
        if self.strict and addr not in self._seen:
            self._remember(addr, length, None)

    def synced(self) -> None:
        """A CMD_SYNC completed: the SMMU has observed every structure it knows as it is now."""
        if not self.strict:
            return
        for addr, (length, _) in list(self._seen.items()):
            data = read_or_none(self.mem, addr, length)
            if data is None:
                del self._seen[addr]
            else:
                self._seen[addr] = (length, data)

    def _remember(self, addr: int, length: int, data: bytes | None) -> None:
        self._seen[addr] = (length, data)
        self._seen.move_to_end(addr)
        if len(self._seen) > TRACKED_MAX:
            self._seen.popitem(last=False)
