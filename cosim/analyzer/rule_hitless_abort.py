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

from .context import Context
from .domains import PAGE, acc_letters, dom_of, is_paging, label
from .findings import Collector, Violation
from .view import Record, ssid_of

RULE = "inv3-abort-during-attach"
NEITHER = "inv3-neither-domain"
# Faults found by walking a domain's own tables (§7.3 event types F_TRANSLATION etc.).
WALK_FAULTS = frozenset(TRANSLATION_FAULTS)


def _failure(r: Record) -> tuple[int | None, str, str | None] | None:
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


def _explained(r: Record, fault: str | None, old: Domain | None, new: Domain | None) -> bool:
    dom = dom_of(r)
    if dom not in (old, new) or not is_paging(dom):
        return False
    if r.get("k") == "ats":
        return True
    return fault in WALK_FAULTS or (fault or "").startswith("ats:")


def check(ctx: Context, out: Collector) -> None:
    _aborts(ctx, out)
    _neither(ctx, out)


def _neither(ctx: Context, out: Collector) -> None:
    """Inside a driver window a translation may come from the old or the new domain; one from
    any other (a nested pair of one old and one new stage, an ASID of one and a table of the
    other) is a configuration the driver never meant. Marker windows' domains are inferred, so
    only driver windows are judged this way."""
    recs = ctx.view.records
    for a in ctx.attaches:
        if a.source != "driver":
            continue
        for key in a.keys:
            allowed = (a.old.get(key), a.new.get(key))
            for lst in (ctx.doms.served.get(key), ctx.doms.used.get(key)):
                if lst is None:
                    continue
                for j in lst.between(a.begin, a.stop):
                    dom = dom_of(recs[j])
                    if dom is None or dom in allowed:
                        continue
                    group = (NEITHER, a.n, key)
                    out.seen(group, j) or out.new(group, Violation(
                        NEITHER, j, key[0], key[1],
                        f"{recs[j]['k']} from domain {label(dom)} during the attach: neither "
                        f"the old domain {label(allowed[0])} nor the new {label(allowed[1])}",
                        {"old_dom": label(allowed[0]), "new_dom": label(allowed[1]),
                         "used_dom": label(dom)}, attach=a.n))
                    a.rules.add(NEITHER)


def _aborts(ctx: Context, out: Collector) -> None:
    recs = ctx.view.records
    mapped = ctx.doms.mapped
    for a in ctx.attaches:
        for key in a.keys:
            old, new = a.old.get(key), a.new.get(key)
            if old is None or new is None:
                continue
            sid, ssid = key
            explained_pages: set[int] = set()
            for j in range(a.begin + 1, a.stop):
                r = recs[j]
                if r.get("sid") != sid or ssid_of(r) != ssid:
                    continue
                if r.get("k") == "dma" and r.get("dev") != a.dev:
                    continue
                f = _failure(r)
                if f is None or not isinstance(f[0], int):
                    continue
                addr, acc, fault = f
                page = addr & ~(PAGE - 1)
                if _explained(r, fault, old, new):
                    explained_pages.add(page)
                    continue
                if r.get("k") == "event" and fault in WALK_FAULTS and page in explained_pages:
                    continue
                if not (mapped.maps(old, addr, acc) and mapped.maps(new, addr, acc)):
                    continue
                group = (RULE, a.n, key)
                v = out.seen(group, j) or out.new(group, Violation(
                    RULE, j, sid, ssid,
                    f"{r['k']} failed ({fault or 'abort'}) at {addr:#x}, which both the old "
                    f"domain {old} and the new domain {new} map",
                    {"old_dom": label(old), "new_dom": label(new), "addresses": [],
                     "kinds": {}},
                    attach=a.n))
                if addr not in v.entries["addresses"] and len(v.entries["addresses"]) < 20:
                    v.entries["addresses"].append(addr)
                kinds = v.entries["kinds"]
                kinds[r["k"]] = kinds.get(r["k"], 0) + 1
                a.rules.add(RULE)
