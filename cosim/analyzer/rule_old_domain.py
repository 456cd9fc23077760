"""Invariant 1 (check a): once the driver's attach has returned, the device gets no translation
from any domain but the one attached.

With driver windows the attached domain is known exactly: the domain the stream's STE/CD in
memory denoted when the entry point returned. Then every translation served (xlate, ats) or
used (dma, atc_hit) for the stream until its next attach must come from that domain (the old
one, or one two attaches back, alike), and the device's ATC must hold no entry of another
domain at the moment of return: a translation it still holds is one it may use (an ATC_INV
that was skipped, or not waited for, shows here even when no DMA follows).

With userspace marker windows only the old domain is known to be wrong, and only when the new
one could be inferred from later traffic: those offences are gathered as they pass and judged
at the end of the trace, when the new domain is settled.
"""

from __future__ import annotations

from cosim.arch.domain import Domain

from .attaches import Attach
from .context import Context
from .domains import label
from .findings import Violation
from .view import Key, Record

RULE = "inv1-old-domain"
RANK = 0


class OldDomain:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # marker windows: (attach n, key) -> the offences gathered, judged at the end
        self._pending: dict[tuple[int, Key], Violation] = {}
        self._after = ctx.attaches.after   # changed in place only: bound once
        ctx.attaches.listeners.append(self)

    def traffic(self, i: int, r: Record, k: str, key: Key, dom: Domain) -> None:
        """A served (xlate, ats) or used (dma, atc_hit) record of stream `key`."""
        for a in self._after:
            keys = a._keys   # Attach.keys without the property call, once it is built
            if key not in (keys if keys is not None else a.keys):
                continue
            if a.source == "driver":
                new = a.new.get(key)
                if dom is not new and dom != new:  # one Domain object per domain read
                    self._offence(a, key, i, r, dom, self.ctx.out.get((RULE, a.n, key)))
            elif dom == a.old.get(key):
                self._offence(a, key, i, r, dom, self._pending.get((a.n, key)), pending=True)

    def _offence(self, a: Attach, key: Key, j: int, r: Record, dom: Domain | None,
                 v: Violation | None, pending: bool = False) -> None:
        if v is not None:
            v.add(j)
        else:
            old, new = a.old.get(key), a.new.get(key)
            v = Violation(RULE, j, key[0], key[1], "",
                          {"old_dom": label(old), "new_dom": label(new), "used_dom": label(dom),
                           "new_from": a.new_from.get(key, ""), "kinds": {}, "atc_ids": []},
                          attach=a.n, order=(RANK, 0, a.n, a.keys.index(key)))
            v.records = [j]
            v.entries["_k"] = r["k"]
            if pending:
                self._pending[(a.n, key)] = v
            else:
                self._word(v, a, key)
                self.ctx.out.new((RULE, a.n, key), v)
                a.rules.add(RULE)
        kinds = v.entries["kinds"]
        kinds[r["k"]] = kinds.get(r["k"], 0) + 1
        atc = r.get("atc_id") if r["k"] == "dma" else r.get("id") if r["k"] == "atc_hit" else None
        if atc is not None and atc not in v.entries["atc_ids"] and len(v.entries["atc_ids"]) < 20:
            v.entries["atc_ids"].append(atc)

    def _word(self, v: Violation, a: Attach, key: Key) -> None:
        old, new = a.old.get(key), a.new.get(key)
        dom_label = v.entries["used_dom"]
        after = "the driver's attach returned" if a.source == "driver" else "attach-end"
        v.message = (f"{v.entries.pop('_k')} from domain {dom_label} after {after} (line "
                     f"{self.ctx.view.line_of(a.end or 0)}); the stream is attached to "
                     f"{label(new)}" + ("" if dom_label == label(old) else
                                        f" and was attached to {label(old)} before"))
        v.entries["new_dom"] = label(new)
        v.entries["new_from"] = a.new_from.get(key, "")

    # -- at each driver attach's return -------------------------------------------------------
    def begin(self, a: Attach, i: int) -> None:
        pass

    def horizon(self, a: Attach, i: int) -> None:
        pass

    def stop(self, a: Attach, i: int) -> None:
        """At a driver attach's return, the device's ATC entries for the stream (the shared
        AtcState) must all be of the attached domain."""
        if a.source != "driver" or a.end != i:
            return
        out, view = self.ctx.out, self.ctx.view
        for n, key in enumerate(a.keys):
            new = a.new.get(key)
            for e in self.ctx.atc.held(key):
                if e.dom == new:
                    continue
                group = (RULE, a.n, key, "held")
                v = out.seen(group, e.inserted) or out.new(group, Violation(
                    RULE, i, key[0], key[1],
                    f"when the driver's attach returned, the device still held ATC entry "
                    f"{e.id} (inserted line {view.line_of(e.inserted)}) from domain "
                    f"{label(e.dom)}; the stream is attached to {label(new)}",
                    {"old_dom": label(a.old.get(key)), "new_dom": label(new),
                     "held_dom": label(e.dom), "atc_ids": [e.id], "dev": e.dev},
                    attach=a.n, order=(RANK, 1, a.n, n)))
                if e.id not in v.entries["atc_ids"] and len(v.entries["atc_ids"]) < 20:
                    v.entries["atc_ids"].append(e.id)
                a.rules.add(RULE)

    def finish(self) -> None:
        """Marker windows: their new domain is settled now."""
        by_n = {a.n: a for a in self.ctx.attaches.attaches}
        for (n, key), v in self._pending.items():
            a = by_n[n]
            old, new = a.old.get(key), a.new.get(key)
            if old is None or new is None or old == new:
                continue
            self._word(v, a, key)
            records = v.records
            self.ctx.out.new((RULE, a.n, key), v)
            v.records = records
            a.rules.add(RULE)
