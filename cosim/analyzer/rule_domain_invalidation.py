"""Invariant 2 at the driver's own return: once the driver's invalidation of a domain's range
has returned (6.12 arm_smmu_atc_inv_domain, 7.2 arm_smmu_domain_inv_range, traced as
`drv_inv` by the driver probes), no device holds an ATC entry of that domain, overlapping
that range, that it held when the invalidation began. Entries the device fetched during the
call may be refills of what is still mapped; entries from before must be gone (§3.9.1.3: the
invalidation is complete only when the device has completed it, and CMD_SYNC waits for that).

The same window is held to the protocol: every ATC_INV delivered inside it must be followed
by a completed CMD_SYNC before the call returns (`protocol-atc-sync`, §4.7.3).
"""

from __future__ import annotations

from cosim.arch.domain import Domain

from .atc_state import HeldEntry
from .context import Context
from .domains import label
from .findings import Violation
from .rule_protocol import ATC_RULE
from .view import Record

RULE = "inv2-invalidated-atc"
RANK = 2
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
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.begun: dict[tuple[str, int], list[int]] = {}
        self.notes: list[str] = []

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

    def finish(self) -> None:
        pass
