"""ATS: translation completions to endpoints and ATC invalidation fan-out (Arm IHI 0070 §3.9).

A Translation Request is answered with an `AtsCompletion` (PCIe "Translation Completion":
status Success / Unsupported Request / Completer Abort, §3.9.1); ATC_INV commands become
`AtcInvalidation` objects handed to the endpoint, which calls `complete()` when its ATC no
longer holds the range. A CMD_SYNC completes only after every earlier invalidation has
(§4.7.3, §3.9.1.3), or fails with CERROR_ATC_INV_SYNC once one times out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

SUCCESS = "SUCCESS"
UR = "UR"   # Unsupported Request: ATS is not available for this stream
CA = "CA"   # Completer Abort: the SMMU could not produce a translation (configuration error)

ATC_GRANULE = 4096   # ATC_INV.Size counts in 4 KB units (§4.5.1)
ATC_SIZE_MAX = 52    # Size > 52 is reserved


@dataclass
class AtsCompletion:
    status: str
    pa: int = 0
    size: int = 0
    perm: str = ""          # subset of 'rwx' (R/W from the page; 'x' execute allowed)
    priv: bool = False      # permissions are those of a privileged access
    dom: str = "abort"
    fault: str | None = None


class AtcInvalidation:
    """One ATC_INV delivered to an endpoint; the endpoint calls complete() once done."""

    def __init__(self, sid: int, ssid: int | None, addr: int, size: int, global_: bool,
                 inv_id: int = 0, on_complete: Callable[[AtcInvalidation], None] | None = None,
                 issued_at: float = 0.0) -> None:
        self.sid = sid
        self.ssid = ssid
        self.addr = addr
        self.size = size
        self.global_ = global_
        self.id = inv_id
        self.issued_at = issued_at
        self.done = False
        self.timed_out = False
        self._on_complete = on_complete

    def complete(self) -> None:
        if self.done:
            return
        self.done = True
        if self._on_complete is not None:
            self._on_complete(self)

    def __repr__(self) -> str:
        return (f"AtcInvalidation(id={self.id}, sid={self.sid}, ssid={self.ssid}, "
                f"addr={self.addr:#x}, size={self.size:#x}, global_={self.global_}, "
                f"done={self.done})")


class AtsDevice(Protocol):
    def ats_invalidate(self, inv: AtcInvalidation) -> None: ...


def atc_range(addr: int, size_field: int) -> tuple[int, int]:
    """ATC_INV Address/Size -> (aligned base, bytes): 2**Size 4 KB pages, aligned (§4.5.1)."""
    span = ATC_GRANULE << size_field
    return addr & ~(span - 1) & ((1 << 64) - 1), span


@dataclass
class AtcTracker:
    """Invalidations handed to endpoints and not yet completed or abandoned."""

    pending: list[AtcInvalidation] = field(default_factory=list)
    next_id: int = 1

    def new_id(self) -> int:
        i = self.next_id
        self.next_id += 1
        return i

    def outstanding(self) -> list[AtcInvalidation]:
        self.pending = [i for i in self.pending if not i.done]
        return list(self.pending)

    def expired(self, now: float, timeout_s: float) -> list[AtcInvalidation]:
        return [i for i in self.outstanding() if now - i.issued_at >= timeout_s]

    def abandon(self, invs: list[AtcInvalidation]) -> None:
        """A timed-out invalidation is no longer waited for (the sync already failed)."""
        for i in invs:
            i.timed_out = True
        ids = {i.id for i in invs}
        self.pending = [i for i in self.pending if i.id not in ids]
