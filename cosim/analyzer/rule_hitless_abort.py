"""Invariant 3 (check c): between attach-begin and attach-end the device sees no abort, fault
event or failed translation at an address that both the old and the new domain map.

"Mapped" comes from successful xlate/ats records for that domain anywhere in the trace; bypass
maps everything, a blocked (ABORT) domain nothing, so aborts while attached to or from a
blocked domain are expected. A stage 1/2 walk fault reported against the old or the new domain
itself is that domain's own contents speaking (the page really was absent), not a mixed
configuration, and is not counted.
"""

from __future__ import annotations

from cosim.arch.domain import Domain
from cosim.arch.events import TRANSLATION_FAULTS

from .attaches import Attach
from .context import Context
from .domains import PAGE, SERVED_KINDS, acc_letters, dom_of, is_paging, label
from .findings import MAX_LISTED, Violation
from .view import Key, Record, ssid_of

RULE = "inv3-abort-during-attach"
RANK = 3
NEITHER = "inv3-neither-domain"
# Faults found by walking a domain's own tables (§7.3 event types F_TRANSLATION etc.).
WALK_FAULTS = frozenset(TRANSLATION_FAULTS)


def failure_of(r: Record) -> tuple[int | None, str, str | None] | None:
    """(address, access letters, fault name) of a failed request, else None."""
    k = r.get("k")
    if k == "xlate" and r.get("ok") is False:
        return r.get("iova"), acc_letters(r.get("acc")), str(r.get("fault") or "")
    if k == "ats" and str(r.get("status", "")).upper() not in ("SUCCESS", ""):
        return r.get("iova"), acc_letters(r.get("acc")), "ATS_" + str(r.get("status"))
    if k == "dma" and r.get("ok") is False:
        err = str(r.get("err") or "")
        fault = err.split(":", 1)[1] if err.startswith("fault:") else err
        return r.get("iova"), acc_letters(r.get("rw")), fault
    if k == "event":
        return r.get("addr"), "", str(r.get("name") or "")
    return None


def explained_by(k: str, dom: Domain | None, fault: str | None, old: Domain | None,
                   new: Domain | None) -> bool:
    """A failure the old or new domain's own tables explain (the page really was absent)."""
    if dom not in (old, new) or not is_paging(dom):
        return False
    if k == "ats":
        return True
    return fault in WALK_FAULTS or (fault or "").startswith("ats:")


class PageOffences:
    """The offences at one (address, access) of one window: judged at the end of the trace,
    when what each domain maps is known."""

    __slots__ = ("first", "k", "fault", "records", "count", "kinds")

    def __init__(self, j: int, k: str, fault: str | None) -> None:
        self.first, self.k, self.fault = j, k, fault
        self.records: list[int] = []
        self.count = 0
        self.kinds: dict[str, tuple[int, int]] = {}   # kind -> (first index, count)

    def add(self, j: int, k: str) -> None:
        self.count += 1
        if len(self.records) < MAX_LISTED:
            self.records.append(j)
        first, n = self.kinds.get(k, (j, 0))
        self.kinds[k] = (first, n + 1)


class _Other:
    """Translations during a driver window from one domain other than the old one."""

    __slots__ = ("first", "k", "records", "count")

    def __init__(self, j: int, k: str) -> None:
        self.first, self.k = j, k
        self.records: list[int] = []
        self.count = 0


Failure = tuple[int, str, int, str, str | None, Domain | None]  # j, kind, addr, acc, fault, dom


class HitlessAbort:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # failures inside a window, until its new domain is known: (n, key) -> in order
        self._failures: dict[tuple[int, Key], list[Failure]] = {}
        # judged pages, until the end of the trace: (n, key) -> (addr, acc) -> offences
        self._pages: dict[tuple[int, Key], dict[tuple[int, str], PageOffences]] = {}
        # per (n, key): served (xlate, ats) and used (dma, atc_hit) records apart, as the
        # report lists them
        self._others: dict[tuple[int, Key], tuple[dict[Domain, _Other],
                                                  dict[Domain, _Other]]] = {}
        ctx.attaches.listeners.append(self)

    # -- records -------------------------------------------------------------------------------
    def failure(self, i: int, r: Record, k: str) -> None:
        """A record that may be a failure (xlate, ats, dma, event) for its sid/ssid."""
        inside = self.ctx.attaches.inside
        if not inside:
            return
        f = failure_of(r)
        if f is None or not isinstance(f[0], int):
            return
        key = (r.get("sid"), ssid_of(r))
        for a in inside:
            if key not in a.keys:
                continue
            if k == "dma" and r.get("dev") != a.dev:
                continue
            self._failures.setdefault((a.n, key), []).append(  # type: ignore[arg-type]
                (i, k, f[0], f[1], f[2], dom_of(r)))

    def traffic(self, i: int, r: Record, k: str, key: Key, dom: Domain) -> None:
        """Served or used records: inside a driver window, from neither old nor new?"""
        for a in self.ctx.attaches.inside:
            if a.source != "driver" or key not in a.keys or dom == a.old.get(key):
                continue
            both = self._others.get((a.n, key))
            if both is None:
                both = self._others[(a.n, key)] = ({}, {})
            per = both[0] if k in SERVED_KINDS else both[1]
            o = per.get(dom)
            if o is None:
                o = per[dom] = _Other(i, k)
            o.count += 1
            if len(o.records) < MAX_LISTED:
                o.records.append(i)

    # -- windows -------------------------------------------------------------------------------
    def begin(self, a: Attach, i: int) -> None:
        pass

    def horizon(self, a: Attach, i: int) -> None:
        pass

    def stop(self, a: Attach, i: int) -> None:
        if a.source != "driver":
            return  # a marker window's new domain is settled at the end of the trace
        for key in a.keys:
            self._judge(a, key)
            self._neither(a, key)

    def _judge(self, a: Attach, key: Key) -> None:
        """Sort the window's failures: explained by the old or new domain itself, or
        offences if both domains map the address (known at the end)."""
        failures = self._failures.pop((a.n, key), None)
        old, new = a.old.get(key), a.new.get(key)
        if not failures or old is None or new is None:
            return
        pages: dict[tuple[int, str], PageOffences] = {}
        explained_pages: set[int] = set()
        for j, k, addr, acc, fault, dom in failures:
            page = addr & ~(PAGE - 1)
            if explained_by(k, dom, fault, old, new):
                explained_pages.add(page)
                continue
            if k == "event" and fault in WALK_FAULTS and page in explained_pages:
                continue
            p = pages.get((addr, acc))
            if p is None:
                p = pages[(addr, acc)] = PageOffences(j, k, fault)
            p.add(j, k)
        if pages:
            self._pages[(a.n, key)] = pages

    def _neither(self, a: Attach, key: Key) -> None:
        both = self._others.pop((a.n, key), None)
        if not both:
            return
        allowed = (a.old.get(key), a.new.get(key))
        records: list[int] = []
        got: list[tuple[Domain, _Other]] = []
        for others in both:  # served records first, then used ones
            part = sorted(((d, o) for d, o in others.items() if d not in allowed),
                          key=lambda do: do[1].first)
            got += part
            records += sorted(j for _, o in part for j in o.records)
        if not got:
            return
        dom, first = got[0]
        records = records[:MAX_LISTED]
        v = Violation(
            NEITHER, first.first, key[0], key[1],
            f"{first.k} from domain {label(dom)} during the attach: neither "
            f"the old domain {label(allowed[0])} nor the new {label(allowed[1])}",
            {"old_dom": label(allowed[0]), "new_dom": label(allowed[1]),
             "used_dom": label(dom)}, attach=a.n, order=(RANK, 1, a.n, a.keys.index(key)))
        self.ctx.out.new((NEITHER, a.n, key), v)
        v.records = records
        v.count = sum(o.count for _, o in got)
        a.rules.add(NEITHER)

    # -- end of trace --------------------------------------------------------------------------
    def finish(self) -> None:
        for a in self.ctx.attaches.attaches:
            if a.source != "driver":
                for key in a.keys:
                    self._judge(a, key)
        mapped = self.ctx.doms.mapped
        by_n = {a.n: a for a in self.ctx.attaches.attaches}
        for (n, key), pages in self._pages.items():
            a = by_n[n]
            old, new = a.old.get(key), a.new.get(key)
            hits = sorted((p.first, addr, p) for (addr, acc), p in pages.items()
                          if mapped.maps(old, addr, acc) and mapped.maps(new, addr, acc))
            if not hits:
                continue
            first_j, addr, p = hits[0]
            addresses: list[int] = []
            for _, ad, _p in hits:
                if ad not in addresses and len(addresses) < 20:
                    addresses.append(ad)
            kinds: dict[str, tuple[int, int]] = {}
            for _, _, q in hits:
                for kk, (f, c) in q.kinds.items():
                    f0, c0 = kinds.get(kk, (f, 0))
                    kinds[kk] = (min(f0, f), c0 + c)
            sid, ssid = key
            v = Violation(
                RULE, first_j, sid, ssid,
                f"{p.k} failed ({p.fault or 'abort'}) at {addr:#x}, which both the old "
                f"domain {old} and the new domain {new} map",
                {"old_dom": label(old), "new_dom": label(new), "addresses": addresses,
                 "kinds": {kk: c for kk, (f, c) in sorted(kinds.items(),
                                                          key=lambda kv: kv[1][0])}},
                attach=a.n, order=(RANK, 0, a.n, a.keys.index(key)))
            self.ctx.out.new((RULE, a.n, key), v)
            v.records = sorted(j for _, _, q in hits for j in q.records)[:MAX_LISTED]
            v.count = sum(q.count for _, _, q in hits)
            a.rules.add(RULE)
