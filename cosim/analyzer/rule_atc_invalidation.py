"""Invariant 2 (check b): once an ATC_INV and the CMD_SYNC after it have completed, the device
uses no ATC entry the invalidation covered (an entry present when the SMMU issued the
invalidation, for that StreamID, in its range, with its PASID or any PASID when the
invalidation had none; PCIe ATS invalidation semantics, SMMUv3 §3.9.1, §4.5.1)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from cosim.arch.domain import Domain

from .context import Context
from .domains import PAGE, dom_of, label
from .findings import Violation
from .invalidations import Inval
from .view import Record, ssid_of

RULE = "inv2-invalidated-atc"
RANK = 1


@dataclass(slots=True)
class _Entry:
    index: int
    dev: int
    id: int
    sid: int
    ssid: int | None
    iova: int
    size: int
    dom: Domain | None


class AtcInvalidation:
    """Entries the device holds (per StreamID), the entries each pending ATC_INV covered when
    the SMMU issued it, and the entries a completed one made forbidden. An entry leaves the
    held set when the device evicts it or an invalidation request drops it (`atc_inv_rx`):
    held entries are bounded by the device's ATC, not by the trace. Forbidden entries are
    kept until the id is inserted again, at most FORBIDDEN_KEPT of them (the oldest go)."""

    FORBIDDEN_KEPT = 1 << 14

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.live: dict[int, dict[tuple[int, int], _Entry]] = {}   # sid -> entries
        self.covered: dict[int, list[_Entry]] = {}  # inv issue index -> entries it covered
        self.forbidden: OrderedDict[tuple[int, int], tuple[_Entry, Inval]] = OrderedDict()

    def completed(self, invs: list[Inval]) -> None:
        forbidden = self.forbidden
        for inv in invs:
            if inv.kind != "atc_inv":
                continue
            for e in self.covered.pop(inv.issue, ()):
                ent = (e.dev, e.id)
                forbidden[ent] = (e, inv)
                forbidden.move_to_end(ent)
        while len(forbidden) > self.FORBIDDEN_KEPT:
            forbidden.popitem(last=False)

    def insert(self, i: int, r: Record) -> None:
        if not (isinstance(r.get("id"), int) and isinstance(r.get("sid"), int)
                and isinstance(r.get("iova"), int)):
            return
        e = _Entry(i, r.get("dev"), r["id"], r["sid"], ssid_of(r), r["iova"],
                   r.get("size") or PAGE, dom_of(r))
        held = self.live.get(e.sid)
        if held is None:
            held = self.live[e.sid] = {}
        held[(e.dev, e.id)] = e
        self.forbidden.pop((e.dev, e.id), None)  # a new entry that reuses the id

    def gone(self, dev: object, ids: list[object]) -> None:
        """`atc_evict` (one id) or `atc_inv_rx` (the ids it dropped)."""
        for entries in self.live.values():
            for n in ids:
                entries.pop((dev, n), None)  # type: ignore[arg-type]

    def issued(self, inv: Inval) -> None:
        sid = inv.rec.get("sid")
        held = self.live.get(sid) if isinstance(sid, int) else None
        self.covered[inv.issue] = [e for e in held.values()
                                   if inv.covers_atc(e.sid, e.ssid, e.iova, e.size)] \
            if held else []

    def used(self, i: int, r: Record, k: str) -> None:
        if not self.forbidden:
            return
        eid = r.get("id") if k == "atc_hit" else r.get("atc_id")
        if eid is None or (k == "dma" and not r.get("ats")):
            return
        hit = self.forbidden.get((r.get("dev"), eid))  # type: ignore[arg-type]
        if hit is None:
            return
        e, inv = hit
        out, view = self.ctx.out, self.ctx.view
        group = (RULE, inv.issue, e.dev, e.id)
        if out.seen(group, i) is None:
            out.new(group, Violation(
                RULE, i, e.sid, e.ssid,
                f"ATC entry {e.id} (iova {e.iova:#x}+{e.size:#x}, dom {e.dom}) used after "
                f"ATC_INV id {inv.rec.get('id')} (line {view.line_of(inv.issue)}) "
                f"completed (line {view.line_of(inv.done or 0)})",
                {"atc_id": e.id, "dev": e.dev, "inserted_line": view.line_of(e.index),
                 "dom": label(e.dom), "iova": e.iova, "size": e.size,
                 "inv": {"id": inv.rec.get("id"), "addr": inv.rec.get("addr"),
                         "size": inv.rec.get("size"), "ssid": inv.rec.get("ssid"),
                         "line": view.line_of(inv.issue),
                         "completed_line": view.line_of(inv.done or 0)}},
                order=(RANK,)))

    def finish(self) -> None:
        pass
