"""Invariant 1 (check a): after attach-end, no translation from the old domain is served (xlate,
ats) or used (dma, atc_hit) for the stream, until the next attach of that stream begins."""

from __future__ import annotations

from .context import Context
from .domains import dom_of, label
from .findings import Collector, Violation

RULE = "inv1-old-domain"


def check(ctx: Context, out: Collector) -> None:
    recs = ctx.view.records
    for a in ctx.attaches:
        if a.end is None:
            continue
        for key in a.keys:
            old, new = a.old.get(key), a.new.get(key)
            if old is None or new is None or old == new:
                continue
            hits: list[int] = []
            for lst in (ctx.doms.served.get(key), ctx.doms.used.get(key)):
                if lst is not None:
                    hits += [j for j in lst.between(a.end, a.horizon) if dom_of(recs[j]) == old]
            for j in sorted(hits):
                r = recs[j]
                group = (RULE, a.n, key)
                v = out.seen(group, j) or out.new(group, Violation(
                    RULE, j, key[0], key[1],
                    f"{r['k']} from old domain {old} after attach-end "
                    f"(line {ctx.view.line_of(a.end)}); new domain {new}",
                    {"old_dom": label(old), "new_dom": label(new),
                     "new_from": a.new_from.get(key, ""), "kinds": {}, "atc_ids": []},
                    attach=a.n))
                kinds = v.entries["kinds"]
                kinds[r["k"]] = kinds.get(r["k"], 0) + 1
                atc = r.get("atc_id") if r["k"] == "dma" else r.get("id") \
                    if r["k"] == "atc_hit" else None
                if atc is not None and atc not in v.entries["atc_ids"] \
                        and len(v.entries["atc_ids"]) < 20:
                    v.entries["atc_ids"].append(atc)
                a.rules.add(RULE)
