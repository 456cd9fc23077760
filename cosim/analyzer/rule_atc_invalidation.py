"""Invariant 2 (check b): once an ATC_INV and the CMD_SYNC after it have completed, the device
uses no ATC entry the invalidation covered (an entry present when the SMMU issued the
invalidation, for that StreamID, in its range, with its PASID or any PASID when the
invalidation had none; PCIe ATS invalidation semantics, SMMUv3 §3.9.1, §4.5.1)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from cosim.arch.domain import Domain

from .context import Context
from .domains import PAGE, dom_of, label
from .findings import Collector, Violation
from .invalidations import Inval
from .view import ssid_of

RULE = "inv2-invalidated-atc"


@dataclass
class _Entry:
    index: int
    dev: int
    id: int
    sid: int
    ssid: int | None
    iova: int
    size: int
    dom: Domain | None


def check(ctx: Context, out: Collector) -> None:
    recs = ctx.view.records
    atc_invs = {inv.issue: inv for inv in ctx.invals.all if inv.kind == "atc_inv"}
    completes: dict[int, list[Inval]] = defaultdict(list)
    for inv in atc_invs.values():
        if inv.done is not None:
            completes[inv.done].append(inv)
    live: dict[int, dict[tuple[int, int], _Entry]] = defaultdict(dict)  # sid -> entries
    covered: dict[int, list[_Entry]] = {}       # inv issue index -> entries it covered
    forbidden: dict[tuple[int, int], tuple[_Entry, Inval]] = {}
    for i, r in enumerate(recs):
        for inv in completes.get(i, ()):
            for e in covered.pop(inv.issue, ()):
                forbidden[(e.dev, e.id)] = (e, inv)
        k = r.get("k")
        if k == "atc_insert":
            if not (isinstance(r.get("id"), int) and isinstance(r.get("sid"), int)
                    and isinstance(r.get("iova"), int)):
                continue
            e = _Entry(i, r.get("dev"), r["id"], r["sid"], ssid_of(r), r["iova"],
                       r.get("size") or PAGE, dom_of(r))
            live[e.sid][(e.dev, e.id)] = e
            forbidden.pop((e.dev, e.id), None)  # a new entry that reuses the id
        elif k == "atc_evict":
            for entries in live.values():
                entries.pop((r.get("dev"), r.get("id")), None)
        elif k == "atc_inv" and i in atc_invs:
            inv = atc_invs[i]
            sid = r.get("sid")
            covered[i] = [e for e in live.get(sid, {}).values()
                          if inv.covers_atc(e.sid, e.ssid, e.iova, e.size)] \
                if isinstance(sid, int) else []
        elif k in ("atc_hit", "dma"):
            eid = r.get("id") if k == "atc_hit" else r.get("atc_id")
            if eid is None or (k == "dma" and not r.get("ats")):
                continue
            hit = forbidden.get((r.get("dev"), eid))
            if hit is None:
                continue
            e, inv = hit
            group = (RULE, inv.issue, e.dev, e.id)
            if out.seen(group, i) is None:
                out.new(group, Violation(
                    RULE, i, e.sid, e.ssid,
                    f"ATC entry {e.id} (iova {e.iova:#x}+{e.size:#x}, dom {e.dom}) used after "
                    f"ATC_INV id {inv.rec.get('id')} (line {ctx.view.line_of(inv.issue)}) "
                    f"completed (line {ctx.view.line_of(inv.done or 0)})",
                    {"atc_id": e.id, "dev": e.dev, "inserted_line": ctx.view.line_of(e.index),
                     "dom": label(e.dom), "iova": e.iova, "size": e.size,
                     "inv": {"id": inv.rec.get("id"), "addr": inv.rec.get("addr"),
                             "size": inv.rec.get("size"), "ssid": inv.rec.get("ssid"),
                             "line": ctx.view.line_of(inv.issue),
                             "completed_line": ctx.view.line_of(inv.done or 0)}}))
