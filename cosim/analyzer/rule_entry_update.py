"""Check d: every STE and CD state the SMMU fetched while an entry was being updated is legal
and, in every bit that state uses (cosim.arch ste_used / cd_used, §5.2 / §5.4), equals the old or
the new entry. This is the "used bits" rule the driver's hitless update relies on: the SMMU
may fetch the entry between any two of the driver's writes (§3.21.3).

An update is an attach window of a device using the StreamID. For a window taken from the
driver probes, old and new are the entry as it was in memory when the driver's entry point was
entered and when it returned (the `drv` records' STE/CD snapshots; a CD only when the fetch is of
the CD the snapshot names). Otherwise old = the state last fetched before the window; new = the
first state fetched from memory (not from a cache) after it, or failing that the first cached
state after it (caching mode). An
illegal state equal to the old entry is not the update's doing; an invalid (V=0) final state
is a legitimate target (a PASID being detached).
"""

from __future__ import annotations

from collections import defaultdict

from cosim.arch.cd import CD, cd_used
from cosim.arch.ste import STE, ste_used

from . import layouts
from .context import Context
from .findings import Collector, Violation
from .view import IndexList, ssid_of

RULE = "entry-update"


def _windows(ctx: Context) -> dict[int, list[tuple[int, int, list[int]]]]:
    """sid -> merged (lo, hi, attach numbers) windows, in order."""
    raw: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for a in ctx.attaches:
        for sid in a.sids:
            raw[sid].append((a.begin, a.stop, a.n))
    merged: dict[int, list[tuple[int, int, list[int]]]] = {}
    for sid, ws in raw.items():
        out: list[tuple[int, int, list[int]]] = []
        for lo, hi, n in sorted(ws):
            if out and lo <= out[-1][1]:
                plo, phi, ns = out[-1]
                out[-1] = (plo, max(phi, hi), ns + [n])
            else:
                out.append((lo, hi, [n]))
        merged[sid] = out
    return merged


def check(ctx: Context, out: Collector) -> None:
    recs = ctx.view.records
    fetches: dict[tuple[str, int, int | None], IndexList] = defaultdict(IndexList)
    for i, r in enumerate(recs):
        k = r.get("k")
        if k in ("ste_fetch", "cd_fetch") and isinstance(r.get("sid"), int):
            ssid = None if k == "ste_fetch" else (ssid_of(r) or 0)
            fetches[(k, r["sid"], ssid)].append(i)
    windows = _windows(ctx)
    for (k, sid, ssid), lst in fetches.items():
        ws = windows.get(sid, [])
        for w, (lo, hi, ns) in enumerate(ws):
            nxt = ws[w + 1][0] if w + 1 < len(ws) else len(recs)
            _check_window(ctx, out, k, sid, ssid, lst, lo, hi, nxt, ns)


def _check_window(ctx: Context, out: Collector, kind: str, sid: int, ssid: int | None,
                  lst: IndexList, lo: int, hi: int, nxt: int, attaches: list[int]) -> None:
    recs = ctx.view.records
    inside = lst.between(lo, hi)
    if not inside:
        return
    table = STE if kind == "ste_fetch" else CD
    used_of = ste_used if kind == "ste_fetch" else cd_used
    before = lst.last_before(lo)
    old = layouts.qwords(recs[before].get("qw")) if before is not None else None
    new = None
    after = lst.between(hi, nxt)
    for j in after:
        if not recs[j].get("cached"):
            new = layouts.qwords(recs[j].get("qw"))
            break
    if new is None and after:
        # Caching mode may serve the new entry from its cache until the next update: the first
        # cached state after the window is what was loaded once the update settled.
        new = layouts.qwords(recs[after[0]].get("qw"))
    snap_old, snap_new = _snapshots(ctx, kind, attaches, recs[inside[0]].get("addr"))
    old = snap_old if snap_old is not None else old
    new = snap_new if snap_new is not None else new
    name = "STE" if kind == "ste_fetch" else "CD"
    for j in inside:
        r = recs[j]
        state = layouts.qwords(r.get("qw"))
        if state is None or state == old or state == new:
            if state is not None and state == new and r.get("legal") is False \
                    and layouts.is_valid(table, state):
                _report(ctx, out, j, name, sid, ssid, state, old, new, [],
                        "final state is illegal", attaches)
            continue
        bad_fields: list[str] = []
        if old is not None and new is not None:
            bits = layouts.mismatched_bits(state, old, new, used_of(state))
            bad_fields = table.fields_in(bits)
        illegal = r.get("legal") is False
        if illegal and not layouts.is_valid(table, state) and new is None:
            illegal = False  # may be the (unseen) final state of a detach
        if not bad_fields and not illegal:
            continue
        why = []
        if illegal:
            why.append(f"illegal ({r.get('why') or 'legal=false'})")
        if bad_fields:
            why.append("differs from both old and new in used field(s) " + ", ".join(bad_fields))
        _report(ctx, out, j, name, sid, ssid, state, old, new, bad_fields, "; ".join(why),
                attaches)


def _snapshots(ctx: Context, kind: str, attaches: list[int], addr: object
               ) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """The entry in memory at the driver's entry and at its return, for a window that is one
    driver call: what the driver changed from and to, whatever the SMMU had fetched or cached
    before (a fetch-based old entry would be the previous update's leftovers)."""
    if len(attaches) != 1:
        return None, None
    a = next((a for a in ctx.attaches if a.n == attaches[0]), None)
    if a is None or a.source != "driver" or a.end is None:
        return None, None
    recs = ctx.view.records
    begin, end = recs[a.begin], recs[a.end]

    def snap(r: dict[str, object]) -> tuple[int, ...] | None:
        if kind == "ste_fetch":
            return layouts.qwords(r.get("ste"))
        return layouts.qwords(r.get("cd")) if r.get("cd_addr") == addr else None
    return snap(begin), snap(end)


def _report(ctx: Context, out: Collector, j: int, name: str, sid: int, ssid: int | None,
            state: tuple[int, ...], old: tuple[int, ...] | None, new: tuple[int, ...] | None,
            fields: list[str], why: str, attaches: list[int]) -> None:
    r = ctx.view.records[j]

    def hexes(q: tuple[int, ...] | None) -> list[str] | None:
        return None if q is None else [f"{x:#018x}" for x in q]

    group = (RULE, name, sid, ssid, state)
    if out.seen(group, j) is None:
        out.new(group, Violation(
            RULE, j, sid, ssid if name == "CD" else None,
            f"{name} state fetched during an update ({r.get('cfg') or ''}) {why}".replace(
                " ()", ""),
            {"structure": name, "addr": r.get("addr"), "cfg": r.get("cfg"),
             "legal": r.get("legal"), "why": r.get("why"), "fields": fields,
             "state": hexes(state), "old": hexes(old), "new": hexes(new),
             "attaches": attaches},
            attach=attaches[0]))
    for a in ctx.attaches:
        if a.n in attaches:
            a.rules.add(RULE)
