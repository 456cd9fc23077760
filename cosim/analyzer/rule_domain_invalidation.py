"""Invariant 2 at the driver's own return: once the driver's invalidation of a domain's range
has returned (6.12 arm_smmu_atc_inv_domain, 7.2 arm_smmu_domain_inv_range, traced as
`drv_inv` by the driver probes), no device holds an ATC entry of that domain, overlapping
that range, that it held when the invalidation began. Entries the device fetched during the
call may be refills of what is still mapped; entries from before must be gone (§3.9.1.3: the
invalidation is complete only when the device has completed it, and CMD_SYNC waits for that).

In the modes that cache (header `cache_mode` 'caching' or 'strict') the SMMU's TLB is held to the
same moment (`inv2-invalidated-tlb`): after the call returned, a translation of that domain and
range served from a TLB entry loaded before the call began means the driver never had the
entry invalidated, and the device can be given the old translation again (§4.4: a TLBI of the
range with a CMD_SYNC after it is what removes it; 6.12 issues it before this call, 7.2 inside).

The same window is held to the protocol: every ATC_INV delivered inside it must be followed
by a completed CMD_SYNC before the call returns (`protocol-atc-sync`, §4.7.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cosim.arch.domain import Domain

from .atc_state import HeldEntry
from .context import Context
from .domains import PAGE, dom_of, entry_base, label
from .findings import Violation
from .rule_protocol import ATC_RULE
from .view import Record

RULE = "inv2-invalidated-atc"
TLB_RULE = "inv2-invalidated-tlb"
RANK = 2


@dataclass(frozen=True, slots=True)
class _Fence:
    """A returned domain invalidation: TLB entries of its domain and range loaded before
    `begin` must not serve a translation after `end`."""
    stage: str
    tag: int
    iova: int
    size: int
    begin: int
    end: int
ADDRESS_SPACE = 1 << 64


def _of(dom: Domain | None, stage: str, tag: int) -> bool:
    if dom is None:
        return False
    if stage == "s1":
        return dom.has_s1 and dom.asid == tag
    return dom.has_s2 and dom.vmid == tag


def _overlaps(e: HeldEntry, iova: int, size: int) -> bool:
    end = iova + (size or ADDRESS_SPACE)
    return e.iova < end and iova < e.iova + e.size


class DomainInvalidation:
    FENCES_KEPT = 1 << 14   # returned invalidations remembered for the TLB check

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.begun: dict[tuple[str, int], list[int]] = {}
        self.notes: list[str] = []
        self.walked: dict[tuple[Domain, int], int] = {}  # TLB key -> where last loaded
        self.fences: list[_Fence] = []                   # in return order
        self.fence_base = 0                              # absolute position of fences[0]
        # TLB key -> (loaded at, fence position looked at up to, latest fence that covers it)
        self._memo: dict[tuple[Domain, int], tuple[int, int, _Fence | None]] = {}

    def drv_inv(self, i: int, r: Record) -> None:
        ctx = self.ctx
        view, out = ctx.view, ctx.out
        dom_key = (r["stage"], r["tag"])
        if r["phase"] == "begin":
            self.begun.setdefault(dom_key, []).append(i)
            return
        starts = self.begun.get(dom_key)
        if not starts:
            self.notes.append(f"line {view.line_of(i)}: a domain invalidation return "
                              "without its entry")
            return
        begin = starts.pop()
        if ctx.view.caching:
            self.fences.append(_Fence(r["stage"], r["tag"], r["iova"], r["size"], begin, i))
            if len(self.fences) > self.FENCES_KEPT:
                drop = len(self.fences) - self.FENCES_KEPT
                del self.fences[:drop]
                self.fence_base += drop
        name = f"{'ASID' if r['stage'] == 's1' else 'VMID'} {r['tag']}"
        span = "the whole address space" if not r["size"] else \
            f"{r['iova']:#x}+{r['size']:#x}"
        # Only the entries of that domain: the shared AtcState indexes them by tag.
        for n, e in enumerate(ctx.atc.of_tag(r["stage"], r["tag"])):
            if e.inserted > begin or not _of(e.dom, r["stage"], r["tag"]) \
                    or not _overlaps(e, r["iova"], r["size"]):
                continue
            group = (RULE, "drv_inv", dom_key, e.dev, e.id)
            out.seen(group, i) or out.new(group, Violation(
                RULE, i, e.key[0], e.key[1],
                f"the driver's invalidation of {name} ({span}) returned while the device still "
                f"held ATC entry {e.id} ({e.iova:#x}+{e.size:#x}, domain {label(e.dom)}, "
                f"inserted line {view.line_of(e.inserted)}, before the invalidation began)",
                {"atc_id": e.id, "dev": e.dev, "dom": label(e.dom),
                 "invalidation": {"stage": r["stage"], "tag": r["tag"], "iova": r["iova"],
                                  "size": r["size"], "begin_line": view.line_of(begin)}},
                order=(RANK, 0, n)))
        inside = ctx.unsynced.between(begin, i)
        if inside:
            first_sid, first_ssid = ctx.unsynced.where[inside[0]]
            out.seen((ATC_RULE, "drv_inv", begin), i) or out.new(
                (ATC_RULE, "drv_inv", begin), Violation(
                    ATC_RULE, inside[0], first_sid, first_ssid,
                    f"the driver's invalidation of {name} returned before a CMD_SYNC completed "
                    f"after the ATC_INV it issued (line {view.line_of(inside[0])})",
                    {"atc_inv_lines": [view.line_of(j) for j in inside[:20]]},
                    order=(RANK, 1, i)))

    def translation(self, i: int, r: Record, k: str) -> None:
        """Caching modes: an xlate / ats served from the TLB after a domain invalidation that
        covered the entry returned, the entry loaded before that invalidation began."""
        dom, iova = dom_of(r), r.get("iova")
        if dom is None or not dom.paging or not isinstance(iova, int):
            return
        ok = r.get("ok") is True if k == "xlate" else r.get("status") == "SUCCESS"
        size = r.get("size")
        base, span = entry_base(iova, size if isinstance(size, int) else PAGE)
        key = (dom, base)
        if not r.get("tlb"):
            if ok:
                self.walked[key] = i
            return
        if not ok:
            return
        loaded = self.walked.get(key, -1)
        f = self._latest_fence(key, loaded, dom, base, span)
        if f is None:
            return
        view, out = self.ctx.view, self.ctx.out
        name = f"{'ASID' if f.stage == 's1' else 'VMID'} {f.tag}"
        group = (TLB_RULE, dom, base, f.begin)
        sid = r.get("sid")
        ssid = r.get("ssid")
        out.seen(group, i) or out.new(group, Violation(
            TLB_RULE, i, sid if isinstance(sid, int) else None,
            ssid if isinstance(ssid, int) else None,
            f"{r['k']} of {iova:#x} served from a TLB entry "
            + (f"loaded line {view.line_of(loaded)}" if loaded >= 0
               else "loaded before the trace shows it")
            + f", after the driver's invalidation of {name} covering it returned (line "
            f"{view.line_of(f.end)}, began line {view.line_of(f.begin)})",
            {"dom": label(dom), "iova": iova, "entry": [base, span],
             "loaded_line": view.line_of(loaded) if loaded >= 0 else None,
             "invalidation": {"stage": f.stage, "tag": f.tag, "iova": f.iova,
                              "size": f.size, "begin_line": view.line_of(f.begin),
                              "end_line": view.line_of(f.end)}},
            order=(RANK, 2)))

    def _latest_fence(self, key: Any, loaded: int, dom: Domain, base: int,
                      span: int) -> _Fence | None:
        """The latest returned invalidation that began after the entry was loaded and covers
        it; only the ones returned since the last hit on the entry are looked at."""
        memo = self._memo.get(key)
        if memo is not None and memo[0] == loaded:
            _, pos, best = memo
        else:
            pos, best = self.fence_base, None
        fences, base_pos = self.fences, self.fence_base
        for p in range(max(pos, base_pos) - base_pos, len(fences)):
            f = fences[p]
            if f.end > loaded and loaded < f.begin and _of(dom, f.stage, f.tag) \
                    and base < f.iova + (f.size or ADDRESS_SPACE) and f.iova < base + span:
                best = f
        self._memo[key] = (loaded, base_pos + len(fences), best)
        return best

    def finish(self) -> None:
        pass
