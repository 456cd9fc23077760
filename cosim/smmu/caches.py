"""Configuration cache and TLB (Arm IHI 0070 §3.21, §4.3, §4.4, §16.2).

In `coherent` mode nothing is cached: every translation re-reads the STE, CD and tables, so
every intermediate state the driver writes is observed. In `caching` mode STEs, CDs and
translations are kept until a command that architecturally invalidates them arrives, so a
missing CFGI_* or TLBI_* becomes visible as a stale translation.

Tags follow the architecture: configuration by StreamID (and SubstreamID for CDs); TLB entries
by VMID, ASID (stage 1) and input address range, stage 2 entries by VMID and IPA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# TLB entry kinds: which commands reach them.
KIND_S1 = "s1"          # stage 1 only, tagged (vmid, asid); VMID from STE.S2VMID (§5.2)
KIND_NESTED = "nested"  # combined stage 1+2, tagged (vmid, asid)
KIND_S2 = "s2"          # stage 2 only, tagged vmid


@dataclass
class TlbEntry:
    kind: str
    vmid: int
    asid: int | None
    base: int       # input address of the block/page
    size: int
    out: int        # output address of `base`
    perm: str
    dom: str
    walk_access_priv: bool = False   # privilege the permissions were computed for
    level: int = 3

    def covers(self, addr: int) -> bool:
        return self.base <= addr < self.base + self.size

    def overlaps(self, lo: int, hi: int) -> bool:
        return self.base < hi and lo < self.base + self.size


class ConfigCache:
    """STEs by StreamID and CDs by (StreamID, CD index)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.ste: dict[int, Any] = {}
        self.cd: dict[tuple[int, int], Any] = {}

    def get_ste(self, sid: int) -> Any:
        return self.ste.get(sid) if self.enabled else None

    def put_ste(self, sid: int, ste: Any) -> None:
        if self.enabled:
            self.ste[sid] = ste

    def get_cd(self, sid: int, index: int) -> Any:
        return self.cd.get((sid, index)) if self.enabled else None

    def put_cd(self, sid: int, index: int, cd: Any) -> None:
        if self.enabled:
            self.cd[(sid, index)] = cd

    # §4.3: configuration invalidation commands.
    def inv_ste(self, sid: int) -> None:
        """CMD_CFGI_STE: the STE and every CD cached through it (§4.3.2)."""
        self.ste.pop(sid, None)
        self.inv_cd_all(sid)

    def inv_ste_range(self, sid: int, range_log2: int) -> None:
        """CMD_CFGI_STE_RANGE: StreamIDs sharing sid[31:range+1] (§4.3.3)."""
        lo = sid & ~((1 << (range_log2 + 1)) - 1)
        hi = lo + (1 << (range_log2 + 1))
        for s in [s for s in self.ste if lo <= s < hi]:
            self.ste.pop(s)
        for key in [k for k in self.cd if lo <= k[0] < hi]:
            self.cd.pop(key)

    def inv_all(self) -> None:
        self.ste.clear()
        self.cd.clear()

    def inv_cd(self, sid: int, index: int) -> None:
        self.cd.pop((sid, index), None)

    def inv_cd_all(self, sid: int) -> None:
        for key in [k for k in self.cd if k[0] == sid]:
            self.cd.pop(key)


class Tlb:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.entries: list[TlbEntry] = []

    def lookup(self, kind: str, vmid: int, asid: int | None, addr: int,
               priv: bool) -> TlbEntry | None:
        if not self.enabled:
            return None
        for e in self.entries:
            if (e.kind == kind and e.vmid == vmid and e.asid == asid and e.covers(addr)
                    and e.walk_access_priv == priv):
                return e
        return None

    def insert(self, e: TlbEntry) -> None:
        if self.enabled:
            self.entries.append(e)

    def _drop(self, pred) -> int:
        before = len(self.entries)
        self.entries = [e for e in self.entries if not pred(e)]
        return before - len(self.entries)

    # §4.4: TLB invalidation commands. Each returns how many entries it removed.
    def nh_all(self, vmid: int) -> int:
        return self._drop(lambda e: e.kind in (KIND_S1, KIND_NESTED) and e.vmid == vmid)

    def nh_asid(self, vmid: int, asid: int) -> int:
        return self._drop(lambda e: e.kind in (KIND_S1, KIND_NESTED) and e.vmid == vmid
                          and e.asid == asid)

    def nh_va(self, vmid: int, asid: int | None, lo: int, hi: int) -> int:
        """TLBI_NH_VA (asid given) / TLBI_NH_VAA (asid None: all ASIDs)."""
        return self._drop(lambda e: e.kind in (KIND_S1, KIND_NESTED) and e.vmid == vmid
                          and (asid is None or e.asid == asid) and e.overlaps(lo, hi))

    def s12_vmall(self, vmid: int) -> int:
        return self._drop(lambda e: e.vmid == vmid)

    def s2_ipa(self, vmid: int, lo: int, hi: int) -> int:
        # Only stage 2 entries are tagged by IPA; combined entries need a stage 1 TLBI (§4.4.7).
        return self._drop(lambda e: e.kind == KIND_S2 and e.vmid == vmid and e.overlaps(lo, hi))

    def nsnh_all(self) -> int:
        return self._drop(lambda e: True)

    def el2_all(self) -> int:
        # EL2 regime entries exist only with STRW=EL2; this model tags none separately.
        return 0
