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

from collections import defaultdict
from typing import Any

from cosim.arch.commands import CFGI_ALL_RANGE

from .context import Context
from .domains import PAGE, dom_of, entry_base, label
from .findings import Violation
from .invalidations import Inval
from .view import Record, ssid_of

RULE = "stale-cache"
RANK = 6


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




class _CfgiScopes:
    """The latest completed CFGI of each scope, so a cached fetch asks a few dictionaries
    instead of every invalidation."""

    def __init__(self) -> None:
        self.all: Inval | None = None
        self.ste: dict[object, Inval] = {}
        self.ste_range: dict[tuple[int, int], Inval] = {}
        self.cd_all: dict[object, Inval] = {}
        self.cd: dict[tuple[object, object], Inval] = {}

    def completed(self, inv: Inval) -> None:
        r, op = inv.rec, inv.op
        if op == "CFGI_ALL" or (op == "CFGI_STE_RANGE" and r.get("range") == CFGI_ALL_RANGE):
            self.all = inv
        elif op == "CFGI_STE":
            self.ste[r.get("sid")] = inv
        elif op == "CFGI_STE_RANGE" and isinstance(r.get("sid"), int) \
                and isinstance(r.get("range"), int):
            n = 1 << (r["range"] + 1)  # §4.3.3: 2^(Range+1) StreamIDs, aligned
            self.ste_range[(r["sid"] & ~(n - 1), n)] = inv
        elif op == "CFGI_CD_ALL":
            self.cd_all[r.get("sid")] = inv
        elif op == "CFGI_CD":
            self.cd[(r.get("sid"), r.get("ssid"))] = inv

    def latest_ste(self, sid: int) -> Inval | None:
        c = [self.all, self.ste.get(sid)]
        c += [v for (lo, n), v in self.ste_range.items() if lo <= sid < lo + n]
        return _latest(c)

    def latest_cd(self, sid: int, ssid: int) -> Inval | None:
        return _latest([self.all, self.cd_all.get(sid), self.cd.get((sid, ssid))])


def _latest(invs: list[Inval | None]) -> Inval | None:
    got = [v for v in invs if v is not None]
    return max(got, key=lambda v: (v.done or 0, v.issue)) if got else None


class StaleCache:
    TLBI_KEPT = 1 << 16   # completed TLBIs remembered (a TLB hit asks those since its load)

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.on = ctx.view.caching
        self.cfgi = _CfgiScopes()
        self.tlbi: list[Inval] = []          # completed, in completion order
        self.tlbi_base = 0                   # absolute position of tlbi[0]
        self.loads = _Loads()
        self.walk_fail: dict[tuple[object, int], int] = {}
        # TLB entry -> (loaded_at, absolute TLBI position looked at up to, latest covering)
        self._memo: dict[Any, tuple[int, int, Inval | None]] = {}

    def completed(self, invs: list[Inval]) -> None:
        for inv in invs:
            if inv.kind == "cfgi":
                self.cfgi.completed(inv)
            elif inv.kind == "tlbi":
                self.tlbi.append(inv)
        if len(self.tlbi) > self.TLBI_KEPT:
            drop = len(self.tlbi) - self.TLBI_KEPT
            del self.tlbi[:drop]
            self.tlbi_base += drop

    def fetch(self, i: int, r: Record, k: str) -> None:
        sid = r["sid"]
        ssid = ssid_of(r) or 0
        key = (k, sid) if k == "ste_fetch" else (k, sid, ssid)
        content = tuple(r.get("qw") or ())
        if not r.get("cached"):
            self.loads.load(key, content, i)
            return
        inv = self.cfgi.latest_ste(sid) if k == "ste_fetch" else self.cfgi.latest_cd(sid, ssid)
        if inv is None:
            return
        loaded_at, changed = self.loads.loaded(key, content)
        if inv.issue > loaded_at:
            _report(self.ctx, i, r, inv, loaded_at, changed,
                    "STE" if k == "ste_fetch" else "CD")

    def translation(self, i: int, r: Record, k: str) -> None:
        dom, iova = dom_of(r), r.get("iova")
        if dom is None or not dom.paging or not isinstance(iova, int):
            return
        base, size = entry_base(iova, r.get("size") or PAGE)
        key = (dom, base, size)
        ok = r.get("ok") is True if k == "xlate" else \
            str(r.get("status", "")).upper() == "SUCCESS"
        pa = r.get("pa")
        content = ((pa - (iova - base)) if isinstance(pa, int) else None, r.get("perm"))
        if not r.get("tlb"):
            if ok:
                self.loads.load(key, content, i)
            else:
                self.walk_fail[(dom, iova & ~(PAGE - 1))] = i
            return
        if not ok:
            return
        loaded_at, changed = self.loads.loaded(key, content)
        changed = changed or self.walk_fail.get((dom, iova & ~(PAGE - 1)), -1) > loaded_at
        hit_inv = self._latest_tlbi(key, loaded_at, dom, base, size)
        if hit_inv is not None:
            _report(self.ctx, i, r, hit_inv, loaded_at, changed, "TLB")

    def _latest_tlbi(self, key: Any, loaded_at: int, dom: Any, base: int,
                     size: int) -> Inval | None:
        """The latest TLBI completed since the entry was loaded, issued after it, covering
        it; only the TLBIs completed since the last hit on the entry are looked at."""
        memo = self._memo.get(key)
        if memo is not None and memo[0] == loaded_at:
            _, pos, best = memo
        else:
            pos, best = self.tlbi_base, None
        log, base_pos = self.tlbi, self.tlbi_base
        for p in range(max(pos, base_pos) - base_pos, len(log)):
            v = log[p]
            if (v.done or 0) > loaded_at and v.issue > loaded_at \
                    and v.covers_tlb(dom, base, size):
                best = v
        self._memo[key] = (loaded_at, base_pos + len(log), best)
        return best

    def finish(self) -> None:
        pass


def _report(ctx: Context, i: int, r: Record, inv: Inval, loaded_at: int,
            changed: bool, cache: str) -> None:
    view, out = ctx.view, ctx.out
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
            order=(RANK,)))
