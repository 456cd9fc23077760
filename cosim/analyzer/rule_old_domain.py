"""Invariant 1 (check a): once the driver's attach has returned, the device gets no translation
from any domain but the one attached.

With driver windows the attached domain is known exactly: the domain the stream's STE/CD in
memory denoted when the entry point returned. Then every translation served (xlate, ats) or
used (dma, atc_hit) for the stream until its next attach must come from that domain (the old
one, or one two attaches back, alike), and the device's ATC must hold no entry of another
domain at the moment of return: a translation it still holds is one it may use (an ATC_INV
that was skipped, or not waited for, shows here even when no DMA follows).

With userspace marker windows only the old domain is known to be wrong, and only when the new
one could be inferred from later traffic.
"""

from __future__ import annotations

from cosim.arch.domain import Domain

from .atc_state import AtcState
from .attaches import Attach, driver_returns
from .context import Context
from .domains import dom_of, label
from .findings import Collector, Violation
from .view import Key

RULE = "inv1-old-domain"


def check(ctx: Context, out: Collector) -> None:
    recs = ctx.view.records
    for a in ctx.attaches:
        if a.end is None:
            continue
        for key in a.keys:
            old, new = a.old.get(key), a.new.get(key)
            if a.source == "driver":
                def wrong(d: Domain | None, new: Domain | None = new) -> bool:
                    return d is not None and d != new
            elif old is None or new is None or old == new:
                continue
            else:
                def wrong(d: Domain | None, old: Domain | None = old) -> bool:
                    return d == old
            hits: list[int] = []
            for lst in (ctx.doms.served.get(key), ctx.doms.used.get(key)):
                if lst is not None:
                    hits += [j for j in lst.between(a.end, a.horizon) if wrong(dom_of(recs[j]))]
            for j in sorted(hits):
                _offence(ctx, out, a, key, j, old, new)
    _held_at_return(ctx, out)


def _offence(ctx: Context, out: Collector, a: Attach, key: Key, j: int, old: Domain | None,
             new: Domain | None) -> None:
    r = ctx.view.records[j]
    dom = dom_of(r)
    group = (RULE, a.n, key)
    after = "the driver's attach returned" if a.source == "driver" else "attach-end"
    v = out.seen(group, j) or out.new(group, Violation(
        RULE, j, key[0], key[1],
        f"{r['k']} from domain {label(dom)} after {after} (line {ctx.view.line_of(a.end or 0)}"
        f"); the stream is attached to {label(new)}"
        + ("" if dom == old else f" and was attached to {label(old)} before"),
        {"old_dom": label(old), "new_dom": label(new), "used_dom": label(dom),
         "new_from": a.new_from.get(key, ""), "kinds": {}, "atc_ids": []},
        attach=a.n))
    kinds = v.entries["kinds"]
    kinds[r["k"]] = kinds.get(r["k"], 0) + 1
    atc = r.get("atc_id") if r["k"] == "dma" else r.get("id") if r["k"] == "atc_hit" else None
    if atc is not None and atc not in v.entries["atc_ids"] and len(v.entries["atc_ids"]) < 20:
        v.entries["atc_ids"].append(atc)
    a.rules.add(RULE)


def _held_at_return(ctx: Context, out: Collector) -> None:
    """At each driver attach's return, the device's ATC entries for the stream (rebuilt from
    atc_insert / atc_evict / atc_inv_rx) must all be of the attached domain."""
    ends = driver_returns(ctx.attaches)
    if not ends:
        return
    atc = AtcState()
    for i, r in enumerate(ctx.view.records):
        atc.apply(i, r)
        for a in ends.get(i, ()):
            for key in a.keys:
                new = a.new.get(key)
                for e in atc.held(key):
                    if e.dom == new:
                        continue
                    group = (RULE, a.n, key, "held")
                    v = out.seen(group, e.inserted) or out.new(group, Violation(
                        RULE, i, key[0], key[1],
                        f"when the driver's attach returned, the device still held ATC entry "
                        f"{e.id} (inserted line {ctx.view.line_of(e.inserted)}) from domain "
                        f"{label(e.dom)}; the stream is attached to {label(new)}",
                        {"old_dom": label(a.old.get(key)), "new_dom": label(new),
                         "held_dom": label(e.dom), "atc_ids": [e.id], "dev": e.dev},
                        attach=a.n))
                    if e.id not in v.entries["atc_ids"] and len(v.entries["atc_ids"]) < 20:
                        v.entries["atc_ids"].append(e.id)
                    a.rules.add(RULE)
