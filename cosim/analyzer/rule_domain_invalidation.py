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

from cosim.arch.domain import Domain

from .atc_state import AtcState, HeldEntry, UnsyncedAtcInv
from .context import Context
from .domains import PAGE, dom_of, entry_base, label
from .findings import Collector, Violation
from .rule_protocol import ATC_RULE

RULE = "inv2-invalidated-atc"
TLB_RULE = "inv2-invalidated-tlb"
ADDRESS_SPACE = 1 << 64


@dataclass(frozen=True)
class _Fence:
    """A returned domain invalidation: TLB entries of its domain and range loaded before
    `begin` must not serve a translation after `end`."""
    stage: str
    tag: int
    iova: int
    size: int
    begin: int
    end: int


def _of(dom: Domain | None, stage: str, tag: int) -> bool:
    if dom is None:
        return False
    if stage == "s1":
        return dom.has_s1 and dom.asid == tag
    return dom.has_s2 and dom.vmid == tag


def _overlaps(e: HeldEntry, iova: int, size: int) -> bool:
    end = iova + (size or ADDRESS_SPACE)
    return e.iova < end and iova < e.iova + e.size


def check(ctx: Context, out: Collector) -> None:
    recs = ctx.view.records
    atc = AtcState()
    begun: dict[tuple[str, int], list[int]] = {}
    unsynced = UnsyncedAtcInv()
    walked: dict[tuple[Domain, int], int] = {}   # TLB key -> where it was last loaded
    fences: list[_Fence] = []
    for i, r in enumerate(recs):
        atc.apply(i, r)
        unsynced.apply(i, r)
        k = r.get("k")
        if ctx.view.caching and k in ("xlate", "ats"):
            _tlb(ctx, out, i, r, walked, fences)
        if k != "drv_inv":
            continue
        dom_key = (r["stage"], r["tag"])
        if r["phase"] == "begin":
            begun.setdefault(dom_key, []).append(i)
            continue
        starts = begun.get(dom_key)
        if not starts:
            ctx.view.notes.append(f"line {ctx.view.line_of(i)}: a domain invalidation return "
                                  "without its entry")
            continue
        begin = starts.pop()
        fences.append(_Fence(r["stage"], r["tag"], r["iova"], r["size"], begin, i))
        name = f"{'ASID' if r['stage'] == 's1' else 'VMID'} {r['tag']}"
        span = "the whole address space" if not r["size"] else \
            f"{r['iova']:#x}+{r['size']:#x}"
        for e in atc.all():
            if e.inserted > begin or not _of(e.dom, r["stage"], r["tag"]) \
                    or not _overlaps(e, r["iova"], r["size"]):
                continue
            group = (RULE, "drv_inv", dom_key, e.dev, e.id)
            out.seen(group, i) or out.new(group, Violation(
                RULE, i, e.key[0], e.key[1],
                f"the driver's invalidation of {name} ({span}) returned while the device still "
                f"held ATC entry {e.id} ({e.iova:#x}+{e.size:#x}, domain {label(e.dom)}, "
                f"inserted line {ctx.view.line_of(e.inserted)}, before the invalidation began)",
                {"atc_id": e.id, "dev": e.dev, "dom": label(e.dom),
                 "invalidation": {"stage": r["stage"], "tag": r["tag"], "iova": r["iova"],
                                  "size": r["size"], "begin_line": ctx.view.line_of(begin)}}))
        inside = unsynced.between(begin, i)
        if inside:
            out.seen((ATC_RULE, "drv_inv", begin), i) or out.new(
                (ATC_RULE, "drv_inv", begin), Violation(
                    ATC_RULE, inside[0], recs[inside[0]]["sid"], recs[inside[0]]["ssid"],
                    f"the driver's invalidation of {name} returned before a CMD_SYNC completed "
                    f"after the ATC_INV it issued (line {ctx.view.line_of(inside[0])})",
                    {"atc_inv_lines": [ctx.view.line_of(j) for j in inside[:20]]}))


def _tlb(ctx: Context, out: Collector, i: int, r: dict[str, object],
         walked: dict[tuple[Domain, int], int], fences: list[_Fence]) -> None:
    dom, iova = dom_of(r), r.get("iova")
    if dom is None or not dom.paging or not isinstance(iova, int):
        return
    ok = r.get("ok") is True if r["k"] == "xlate" else r.get("status") == "SUCCESS"
    size = r.get("size")
    base, span = entry_base(iova, size if isinstance(size, int) else PAGE)
    key = (dom, base)
    if not r.get("tlb"):
        if ok:
            walked[key] = i
        return
    if not ok:
        return
    loaded = walked.get(key, -1)
    for f in reversed(fences):
        if f.end <= loaded:
            break
        if loaded < f.begin and _of(dom, f.stage, f.tag) \
                and base < f.iova + (f.size or ADDRESS_SPACE) and f.iova < base + span:
            name = f"{'ASID' if f.stage == 's1' else 'VMID'} {f.tag}"
            group = (TLB_RULE, dom, base, f.begin)
            sid = r.get("sid")
            ssid = r.get("ssid")
            out.seen(group, i) or out.new(group, Violation(
                TLB_RULE, i, sid if isinstance(sid, int) else None,
                ssid if isinstance(ssid, int) else None,
                f"{r['k']} of {iova:#x} served from a TLB entry "
                + (f"loaded line {ctx.view.line_of(loaded)}" if loaded >= 0
                   else "loaded before the trace shows it")
                + f", after the driver's invalidation of {name} covering it returned (line "
                f"{ctx.view.line_of(f.end)}, began line {ctx.view.line_of(f.begin)})",
                {"dom": label(dom), "iova": iova, "entry": [base, span],
                 "loaded_line": ctx.view.line_of(loaded) if loaded >= 0 else None,
                 "invalidation": {"stage": f.stage, "tag": f.tag, "iova": f.iova,
                                  "size": f.size, "begin_line": ctx.view.line_of(f.begin),
                                  "end_line": ctx.view.line_of(f.end)}}))
            return
