"""Invalidation commands and when they completed.

A configuration (CMD_CFGI_*, §4.3), TLB (CMD_TLBI_*, §4.4) or ATC (CMD_ATC_INV, §4.5)
invalidation is complete once a later CMD_SYNC completes (§4.7.3: a CMD_SYNC completes only
after every command before it has); an ATC invalidation also completes when the
`atc_inv_sync` record of the CMD_SYNC that waited for it says so. Scopes here are deliberately
the narrowest the architecture guarantees, so an entry is only called "covered" when it
certainly was.
"""

from __future__ import annotations

from dataclasses import dataclass

from cosim.arch.commands import CFGI_ALL_RANGE, OPCODE_NAMES
from cosim.arch.domain import Domain

from .domains import PAGE
from .view import Record

SYNC = "CMD_SYNC"


def op_name(op: object) -> str:
    if isinstance(op, int):
        # Opcodes (§4.1.1) for traces that record numbers instead of names.
        return OPCODE_NAMES.get(op, f"UNKNOWN_{op:#x}")
    name = str(op).upper()
    if name.startswith("CMD_") and name != SYNC:
        name = name[4:]
    return "CMD_SYNC" if name in ("SYNC", "CMD_SYNC") else name


@dataclass(slots=True)
class Inval:
    kind: str      # 'cfgi' | 'tlbi' | 'atc_inv'
    op: str
    issue: int     # record index where the SMMU executed it
    rec: Record
    done: int | None = None  # record index of the completing CMD_SYNC
    failed: bool = False     # its CMD_SYNC failed (CERROR_ATC_INV_SYNC): never completed

    # -- scopes ------------------------------------------------------------------------------
    def covers_ste(self, sid: int) -> bool:
        r = self.rec
        if self.op == "CFGI_ALL" or (self.op == "CFGI_STE_RANGE"
                                     and r.get("range") == CFGI_ALL_RANGE):
            return True
        if self.op == "CFGI_STE":
            return r.get("sid") == sid
        if self.op == "CFGI_STE_RANGE" and isinstance(r.get("sid"), int) \
                and isinstance(r.get("range"), int):
            n = 1 << (r["range"] + 1)  # §4.3.3: 2^(Range+1) StreamIDs, aligned
            lo = r["sid"] & ~(n - 1)
            return lo <= sid < lo + n
        return False

    def covers_cd(self, sid: int, ssid: int | None) -> bool:
        r = self.rec
        if self.op == "CFGI_ALL" or (self.op == "CFGI_STE_RANGE"
                                     and r.get("range") == CFGI_ALL_RANGE):
            return True
        if self.op == "CFGI_CD_ALL":
            return r.get("sid") == sid
        if self.op == "CFGI_CD":
            return r.get("sid") == sid and r.get("ssid") == (ssid or 0)
        return False

    def covers_tlb(self, dom: Domain, base: int, size: int) -> bool:
        # TLB entries carry the tags of the domain that filled them (§4.4).
        asid, vmid, s1, s2 = dom.asid, dom.vmid, dom.has_s1, dom.has_s2
        r, op = self.rec, self.op
        if op == "TLBI_NSNH_ALL":
            return s1 or s2
        if op.startswith("TLBI_NH"):
            if not s1 or not _vmid_ok(vmid, r.get("vmid")):
                return False
            if op in ("TLBI_NH_ASID", "TLBI_NH_VA") and r.get("asid") != asid:
                return False
            return op in ("TLBI_NH_ALL", "TLBI_NH_ASID") or self._overlaps(base, size)
        if op == "TLBI_S12_VMALL":
            return s2 and vmid == r.get("vmid")
        if op == "TLBI_S2_IPA":
            return s2 and not s1 and vmid == r.get("vmid") and self._overlaps(base, size)
        return False

    def covers_atc(self, sid: int, ssid: int | None, iova: int, size: int) -> bool:
        r = self.rec
        if r.get("sid") != sid:
            return False
        # No PASID on the invalidation: every entry in range, whatever its PASID (PCIe ATS).
        if r.get("ssid") is not None and r.get("ssid") != ssid:
            return False
        if r.get("size") is None:
            return True
        return self._overlaps(iova, size)

    def _overlaps(self, base: int, size: int) -> bool:
        lo = self.rec.get("addr")
        n = self.rec.get("size")
        if not isinstance(lo, int):
            return False
        n = n if isinstance(n, int) and n > 0 else PAGE
        return lo < base + size and base < lo + n


def _vmid_ok(dom_vmid: int | None, cmd_vmid: object) -> bool:
    # A stage-1-only domain names no VMID; it is only certainly covered by VMID 0 (or none).
    return dom_vmid == cmd_vmid if dom_vmid is not None else cmd_vmid in (None, 0)


class SyncTracker:
    """Which invalidations complete at each record, as the records pass. Only the ones not
    yet complete are held (a completed CMD_SYNC clears them), and failed ATC ones by id."""

    def __init__(self) -> None:
        self.pending: list[Inval] = []
        self._sync_issue: dict[object, int] = {}
        self._by_id: dict[int, Inval] = {}   # ATC invalidations by id, until complete

    def issue(self, i: int, rec: Record, k: str) -> Inval:
        """A `cfgi`, `tlbi` or `atc_inv` record."""
        inv = Inval(k, op_name(rec.get("op", "ATC_INV")), i, rec)
        self.pending.append(inv)
        if k == "atc_inv" and isinstance(rec.get("id"), int):
            self._by_id[rec["id"]] = inv
        return inv

    def cmd(self, i: int, rec: Record) -> None:
        if op_name(rec.get("op")) == SYNC:
            self._sync_issue[rec.get("idx")] = i

    def sync(self, i: int, rec: Record) -> list[Inval]:
        """A `sync` record: the invalidations it completes, in issue order."""
        state = rec.get("state")
        if state == "wait":
            self._sync_issue.setdefault(rec.get("idx"), i)
            return []
        if state == "fail":
            self._sync_issue.pop(rec.get("idx"), None)
            return []
        if state != "done":
            return []
        issued = self._sync_issue.pop(rec.get("idx"), i)
        done, keep = [], []
        for inv in self.pending:
            if inv.done is not None or inv.failed:
                continue
            if inv.issue < issued:
                inv.done = i
                done.append(inv)
            else:
                keep.append(inv)
        self.pending = keep
        for inv in done:
            if inv.kind == "atc_inv" and self._by_id.get(inv.rec.get("id")) is inv:
                del self._by_id[inv.rec["id"]]
        return done

    def atc_inv_sync(self, i: int, rec: Record) -> list[Inval]:
        """An `atc_inv_sync` record: the ATC invalidations it completes, in issue order."""
        done = []
        for inv_id in rec.get("ids") or []:
            inv = self._by_id.get(inv_id)
            if inv is None or inv.done is not None:
                continue
            if rec.get("state") == "done":
                inv.done = i
                done.append(inv)
                del self._by_id[inv_id]
            else:
                inv.failed = True
        done.sort(key=lambda v: v.issue)
        return done
