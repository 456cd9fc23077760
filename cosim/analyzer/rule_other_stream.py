"""Invariant 3 for the device's other streams (check c): while one stream of a device changes
domain (an attach window of its RID, or of one of its PASIDs), every other stream of the same
device whose own configuration is not changing keeps translating as it did.

This is the seed's case: a PASID (SVA) relies on ATS while the RID's domain changes, so the
driver may neither switch ATS off for the change nor disturb the PASID's context descriptor
or the STE fields it depends on (S1CDMax, S1Fmt, S1ContextPtr, EATS; IHI 0070 §5.2). Offences:
- a failed `xlate`/`ats`/`dma`, or an `event`, on such a stream at an address its domain maps;
- a request of that stream the function itself refused (`drop`, why `ats`): ATS Enable was
  cleared under it (PCIe ATS Control; the device may not send ATS traffic then).

The stream's domain is the one that last served it; a stream never served has nothing to lose
and is not judged. A walk fault reported against that domain itself is its own contents (the
page really was absent, e.g. an munmap racing the window), not a disturbance. Judged at the end
of the trace, when what each domain maps is known.
"""

from __future__ import annotations

from cosim.arch.domain import Domain

from .context import Context
from .domains import acc_letters, dom_of, label
from .findings import MAX_LISTED, Violation
from .rule_hitless_abort import PageOffences, explained_by, failure_of
from .view import Key, Record, ssid_of

RULE = "inv3-other-stream"
RANK = 3


class _Offences:
    """One stream's failures inside one window, by (address, access), and its domain."""

    __slots__ = ("dom", "pages")

    def __init__(self, dom: Domain) -> None:
        self.dom = dom
        self.pages: dict[tuple[int, str], PageOffences] = {}

    def add(self, j: int, addr: int, acc: str, k: str, fault: str | None) -> None:
        p = self.pages.get((addr, acc))
        if p is None:
            p = self.pages[(addr, acc)] = PageOffences(j, k, fault)
        p.add(j, k)


class OtherStream:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._found: dict[tuple[int, Key], _Offences] = {}   # (attach n, stream) -> offences

    def failure(self, i: int, r: Record, k: str) -> None:
        """A record that may be a failure (xlate, ats, dma, event, drop) of a stream."""
        sid = r.get("sid")
        if type(sid) is not int:
            return
        key = (sid, ssid_of(r))
        windows = [a for a in self.ctx.attaches.inside if sid in a.sids]
        if not windows or any(key in a.keys for a in windows):
            return      # no change on this device, or this stream's own change (rule c)
        if k == "drop":
            if r.get("why") != "ats" or type(r.get("iova")) is not int:
                return
            addr, acc, fault = r["iova"], acc_letters(r.get("rw")), "ATS Enable clear"
        else:
            f = failure_of(r)
            if f is None or type(f[0]) is not int:
                return
            addr, acc, fault = f
        dom = self.ctx.doms.last_served.get(key)
        if dom is None or explained_by(k, dom_of(r), fault, dom, dom):
            return
        for a in windows:
            if k == "dma" and r.get("dev") != a.dev:
                continue
            o = self._found.get((a.n, key))
            if o is None:
                o = self._found[(a.n, key)] = _Offences(dom)
            o.add(i, addr, acc, k, fault)

    def finish(self) -> None:
        mapped = self.ctx.doms.mapped
        by_n = {a.n: a for a in self.ctx.attaches.attaches}
        for (n, key), o in sorted(self._found.items(), key=lambda kv: kv[0][0]):
            hits = sorted(((p.first, addr, p) for (addr, acc), p in o.pages.items()
                           if mapped.maps(o.dom, addr, acc)), key=lambda h: h[:2])
            if not hits:
                continue
            a = by_n[n]
            first_j, addr, p = hits[0]
            kinds: dict[str, int] = {}
            for _, _, q in hits:
                for kk, (_first, c) in q.kinds.items():
                    kinds[kk] = kinds.get(kk, 0) + c
            changing = ", ".join(f"sid={s}" + ("" if ss is None else f" ssid={ss}")
                                 for s, ss in a.keys)
            why = ("the device refused it: ATS Enable was cleared"
                   if p.k == "drop" else f"{p.k} failed")
            sid, ssid = key
            v = Violation(
                RULE, first_j, sid, ssid,
                f"{why} at {addr:#x}, which this stream's domain {label(o.dom)} maps, while "
                f"the attach of {changing} was changing another stream's domain",
                {"domain": label(o.dom), "attach_kind": a.kind, "changing": changing,
                 "addresses": sorted({ad for _, ad, _ in hits})[:20], "kinds": kinds},
                attach=a.n, order=(RANK, 2, a.n, 0))
            self.ctx.out.new((RULE, a.n, key), v)
            v.records = sorted(j for _, _, q in hits for j in q.records)[:MAX_LISTED]
            v.count = sum(q.count for _, _, q in hits)
            a.rules.add(RULE)
