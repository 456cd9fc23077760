"""ATS on the SMMU's side: ATC invalidation fan-out and its completion (Arm IHI 0070 §3.9).

A Translation Request is answered with an `AtsCompletion` (cosim/translation_agent.py; PCIe
"Translation Completion", §3.9.1); ATC_INV commands become `AtcInvalidation` objects handed
to the endpoint, which calls `complete()` when its ATC no longer holds the range. The
command queue polls the `AtcTracker` for those completions: a CMD_SYNC completes only after
every earlier invalidation has (§4.7.3, §3.9.1.3), or fails with CERROR_ATC_INV_SYNC once one
times out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cosim.translation_agent import AtcInvalidation

ATC_GRANULE = 4096   # ATC_INV.Size counts in 4 KB units (§4.5.1)
ATC_SIZE_MAX = 52    # Size > 52 is reserved


def atc_range(addr: int, size_field: int) -> tuple[int, int]:
    """ATC_INV Address/Size -> (aligned base, bytes): 2**Size 4 KB pages, aligned (§4.5.1)."""
    span = ATC_GRANULE << size_field
    return addr & ~(span - 1) & ((1 << 64) - 1), span


@dataclass
class Outstanding:
    """An invalidation handed to an endpoint, and when (for the CMD_SYNC timeout)."""

    inv: AtcInvalidation
    issued_at: float


@dataclass
class AtcTracker:
    """Invalidations handed to endpoints and not yet completed or abandoned."""

    pending: list[Outstanding] = field(default_factory=list)
    next_id: int = 1

    def new_id(self) -> int:
        i = self.next_id
        self.next_id += 1
        return i

    def issued(self, inv: AtcInvalidation, now: float) -> None:
        self.pending.append(Outstanding(inv, now))

    def outstanding(self) -> list[Outstanding]:
        """The invalidations still not complete (completed ones are forgotten here)."""
        self.pending = [o for o in self.pending if not o.inv.done]
        return list(self.pending)

    def abandon(self, gone: list[Outstanding]) -> None:
        """A timed-out invalidation is no longer waited for (the sync already failed)."""
        ids = {o.inv.id for o in gone}
        self.pending = [o for o in self.pending if o.inv.id not in ids]
