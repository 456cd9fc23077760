"""Check e (modes that cache, header `cache_mode` 'caching' or 'strict'): no translation is
served from a cache entry that a completed invalidation covered.

After CMD_CFGI_* / CMD_TLBI_* and a CMD_SYNC after it complete (§4.3, §4.4, §4.7.3;
§3.21.3 / §3.17 on what the caches may then hold), the SMMU must fetch the structure or walk
the tables again before using it. A cache hit (`ste_fetch`/`cd_fetch` cached=true, `xlate`
tlb=true) whose content was last loaded from memory before such an invalidation is stale.
It is a violation whether or not the trace shows the content had changed (the entry
must not be used at all); the report says which evidence it has. ATS completions served from
the TLB (`ats` tlb=true) are hits like untranslated ones.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import Any

from .context import Context
from .domains import PAGE, dom_of, entry_base, label
from .findings import Collector, Violation
from .invalidations import Inval
from .view import Record, ssid_of

RULE = "stale-cache"


class _Loads:
    """Per cache key: where each content was last loaded and where anything was last loaded."""

    def __init__(self) -> None:
        self.last_of: dict[Any, dict[Any, int]] = defaultdict(dict)
        self.last_any: dict[Any, int] = {}

    def load(self, key: Any, content: Any, i: int) -> None:
        self.last_of[key][content] = i
        self.last_any[key] = i

    def loaded(self, key: Any, content: Any) -> tuple[int, bool]:
        """(index content was last loaded or -1, whether something else was loaded since)."""
        at = self.last_of.get(key, {}).get(content, -1)
        return at, self.last_any.get(key, -1) > at


def check(ctx: Context, out: Collector) -> None:
    if not ctx.view.caching:
        return
    recs = ctx.view.records
    done = sorted((inv for inv in ctx.invals.all if inv.done is not None
                   and inv.kind in ("cfgi", "tlbi")), key=lambda v: v.done or 0)
    cfgi = [v for v in done if v.kind == "cfgi"]
    tlbi = [v for v in done if v.kind == "tlbi"]
    tlbi_done = [v.done for v in tlbi]
    covering: dict[Any, tuple[list[int], list[Inval]]] = {}
    loads = _Loads()
    walk_fail: dict[tuple[str, int], int] = {}
    for i, r in enumerate(recs):
        k = r.get("k")
        if k in ("ste_fetch", "cd_fetch") and isinstance(r.get("sid"), int):
            ssid = ssid_of(r) or 0
            key = (k, r["sid"]) if k == "ste_fetch" else (k, r["sid"], ssid)
            content = tuple(r.get("qw") or ())
            if not r.get("cached"):
                loads.load(key, content, i)
                continue
            if key not in covering:
                inv_list = [v for v in cfgi if (v.covers_ste(r["sid"]) if k == "ste_fetch"
                                                else v.covers_cd(r["sid"], ssid))]
                covering[key] = ([v.done or 0 for v in inv_list], inv_list)
            dones, invs = covering[key]
            pos = bisect.bisect_left(dones, i)
            if not pos:
                continue
            inv = invs[pos - 1]
            loaded_at, changed = loads.loaded(key, content)
            if inv.issue > loaded_at:
                _report(ctx, out, i, r, inv, loaded_at, changed,
                        "STE" if k == "ste_fetch" else "CD")
        elif k in ("xlate", "ats"):
            dom, iova = dom_of(r), r.get("iova")
            if dom is None or not dom.paging or not isinstance(iova, int):
                continue
            base, size = entry_base(iova, r.get("size") or PAGE)
            key = (dom, base, size)
            ok = r.get("ok") is True if k == "xlate" else \
                str(r.get("status", "")).upper() == "SUCCESS"
            pa = r.get("pa")
            content = ((pa - (iova - base)) if isinstance(pa, int) else None, r.get("perm"))
            if not r.get("tlb"):
                if ok:
                    loads.load(key, content, i)
                else:
                    walk_fail[(dom, iova & ~(PAGE - 1))] = i
                continue
            if not ok:
                continue
            loaded_at, changed = loads.loaded(key, content)
            changed = changed or walk_fail.get((dom, iova & ~(PAGE - 1)), -1) > loaded_at
            # Latest TLBI completed before this hit and issued after the entry was loaded.
            pos = bisect.bisect_left(tlbi_done, i)
            hit_inv = None
            for p in range(pos - 1, -1, -1):
                v = tlbi[p]
                if (v.done or 0) <= loaded_at:
                    break
                if v.issue > loaded_at and v.covers_tlb(dom, base, size):
                    hit_inv = v
                    break
            if hit_inv is not None:
                _report(ctx, out, i, r, hit_inv, loaded_at, changed, "TLB")


def _report(ctx: Context, out: Collector, i: int, r: Record, inv: Inval, loaded_at: int,
            changed: bool, cache: str) -> None:
    view = ctx.view
    sid = r.get("sid") if isinstance(r.get("sid"), int) else None

    key = (RULE, cache, r.get("sid"), ssid_of(r), r.get("dom"), inv.issue)
    if out.seen(key, i) is not None:
        return
    what = {"STE": "cached STE", "CD": "cached CD", "TLB": "TLB entry"}[cache]
    loaded = f"line {view.line_of(loaded_at)}" if loaded_at >= 0 else "never seen loaded"
    out.new(key, Violation(
            RULE, i, sid, ssid_of(r),
            f"{what} ({loaded}) served after {inv.op} (line {view.line_of(inv.issue)}) "
            f"completed (line {view.line_of(inv.done or 0)})"
            + ("; the content had changed since" if changed else
               "; the trace does not show whether the content had changed"),
            {"cache": cache, "dom": label(dom_of(r)), "iova": r.get("iova"),
             "loaded_line": view.line_of(loaded_at) if loaded_at >= 0 else None,
             "invalidation": {"op": inv.op, "line": view.line_of(inv.issue),
                              "completed_line": view.line_of(inv.done or 0),
                              **{k: v for k, v in inv.rec.items() if k not in ("t", "k")}},
             "changed": changed},
            ))
