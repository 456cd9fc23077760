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

As the records pass: the windows of one StreamID merge while they overlap; the fetches inside
are gathered by distinct state (bounded by the states, not the fetches), and judged once the
"new" entry is known: at the first fetch from memory after the window, or when the next window
begins or the trace ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cosim.arch.cd import CD, cd_used
from cosim.arch.ste import STE, ste_used

from . import layouts
from .attaches import Attach
from .context import Context
from .findings import MAX_LISTED, Violation
from .view import Record, ssid_of

RULE = "entry-update"
RANK = 4

FetchKey = tuple[str, int, int | None]  # (kind, sid, ssid: None for STEs, CD index for CDs)
Words = tuple[int, ...]


class _States:
    """The fetches of one structure inside one window, by what they carried."""

    def __init__(self, old: Words | None, addr: object) -> None:
        self.old = old
        self.addr = addr             # of the first fetch inside: which CD a snapshot must name
        # (state, legal, why, cfg, addr) -> [first index, records, count]
        self.seen: dict[tuple, list] = {}
        self.first_after: Words | None = None
        self.any_after = False


@dataclass
class _Window:
    sid: int
    ns: list[int]
    open: int = 0                  # its attaches not yet stopped
    hi: int = -1                   # the last stop so far
    structs: dict[FetchKey, _States] = field(default_factory=dict)
    closed: bool = False
    # The driver's snapshots (ste, cd, cd_addr) at entry and return, for a one-call window.
    snap_begin: tuple | None = None
    snap_end: tuple | None = None
    driver: bool = False


class EntryUpdate:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.win: dict[int, _Window] = {}            # sid -> its latest window
        self.last_qw: dict[FetchKey, object] = {}    # the last fetch's qw, any window
        ctx.attaches.listeners.append(self)

    # -- windows -------------------------------------------------------------------------------
    def begin(self, a: Attach, i: int) -> None:
        for sid in a.sids:
            w = self.win.get(sid)
            if w is not None and w.closed and i <= w.hi:
                w.closed = False           # touches the last one: the same update
            elif w is None or w.closed:
                if w is not None:
                    self._settle_all(w)
                w = self.win[sid] = _Window(sid, [])
            w.ns.append(a.n)
            w.open += 1
            w.driver = a.source == "driver"
            if w.driver:
                w.snap_begin = _snap(self.ctx.attaches.drv_record)

    def stop(self, a: Attach, i: int) -> None:
        for sid in a.sids:
            w = self.win.get(sid)
            if w is None or a.n not in w.ns:
                continue
            w.open -= 1
            w.hi = max(w.hi, i)
            if a.source == "driver" and a.end == i:
                w.snap_end = _snap(self.ctx.attaches.drv_record)
            if w.open == 0:
                w.closed = True

    def horizon(self, a: Attach, i: int) -> None:
        pass

    # -- fetches -------------------------------------------------------------------------------
    def fetch(self, i: int, r: Record, k: str) -> None:
        sid = r["sid"]
        fk = (k, sid, None if k == "ste_fetch" else (ssid_of(r) or 0))
        w = self.win.get(sid)
        if w is not None:
            if not w.closed:
                st = w.structs.get(fk)
                if st is None:
                    before = self.last_qw.get(fk)
                    st = w.structs[fk] = _States(layouts.qwords(before)
                                                 if before is not None else None,
                                                 r.get("addr"))
                state = layouts.qwords(r.get("qw"))
                g = (state, r.get("legal"), r.get("why"), r.get("cfg"), r.get("addr"))
                got = st.seen.get(g)
                if got is None:
                    st.seen[g] = [i, [i], 1]
                else:
                    got[2] += 1
                    if len(got[1]) < MAX_LISTED:
                        got[1].append(i)
            elif i > w.hi:
                st = w.structs.get(fk)
                if st is not None:
                    q = layouts.qwords(r.get("qw"))
                    if not st.any_after:
                        st.any_after, st.first_after = True, q
                    if not r.get("cached"):
                        self._judge(w, fk, st, q if q is not None else st.first_after)
                        del w.structs[fk]
        self.last_qw[fk] = r.get("qw")

    def _settle_all(self, w: _Window) -> None:
        """The next window begins (or the trace ends): judge with the first state after."""
        for fk, st in w.structs.items():
            self._judge(w, fk, st, st.first_after)
        w.structs.clear()

    def finish(self) -> None:
        for w in self.win.values():
            self._settle_all(w)

    # -- judging -------------------------------------------------------------------------------
    def _judge(self, w: _Window, fk: FetchKey, st: _States, new: Words | None) -> None:
        kind, sid, ssid = fk
        table = STE if kind == "ste_fetch" else CD
        used_of = ste_used if kind == "ste_fetch" else cd_used
        name = "STE" if kind == "ste_fetch" else "CD"
        old = st.old
        snap_old, snap_new = self._snapshots(w, kind, st.addr)
        old = snap_old if snap_old is not None else old
        new = snap_new if snap_new is not None else new
        hits: dict[Words, list[tuple[int, list[int], int, tuple, list[str], str]]] = {}
        for g, (first, records, count) in st.seen.items():
            state, legal, why_rec, _cfg, _addr = g
            verdict = _verdict(table, used_of, state, legal, why_rec, old, new)
            if verdict is None:
                continue
            fields, why = verdict
            hits.setdefault(state, []).append((first, records, count, g, fields, why))
        for state, found in sorted(hits.items(), key=lambda kv: min(f[0] for f in kv[1])):
            found.sort(key=lambda f: f[0])
            first, _, _, g, fields, why = found[0]
            records = sorted(j for f in found for j in f[1])
            count = sum(f[2] for f in found)
            self._report(w, first, g, name, sid, ssid, state, old, new, fields, why,
                         records, count)

    @staticmethod
    def _snapshots(w: _Window, kind: str, addr: object) -> tuple[Words | None, Words | None]:
        """The entry in memory at the driver's entry and at its return, for a window that is
        one driver call: what the driver changed from and to, whatever the SMMU had fetched or
        cached before (a fetch-based old entry would be the previous update's leftovers)."""
        if len(w.ns) != 1 or not w.driver or w.snap_end is None or w.snap_begin is None:
            return None, None

        def snap(s: tuple) -> Words | None:
            ste, cd, cd_addr = s
            if kind == "ste_fetch":
                return layouts.qwords(ste)
            return layouts.qwords(cd) if cd_addr == addr else None
        return snap(w.snap_begin), snap(w.snap_end)

    def _report(self, w: _Window, j: int, g: tuple, name: str, sid: int, ssid: int | None,
                state: Words, old: Words | None, new: Words | None, fields: list[str],
                why: str, records: list[int], count: int) -> None:
        _state, legal, why_rec, cfg, addr = g

        def hexes(q: Words | None) -> list[str] | None:
            return None if q is None else [f"{x:#018x}" for x in q]

        out = self.ctx.out
        group = (RULE, name, sid, ssid, state)
        v = out.get(group)
        if v is not None:
            v.add_many(records, count)
        else:
            v = out.new(group, Violation(
                RULE, j, sid, ssid if name == "CD" else None,
                f"{name} state fetched during an update ({cfg or ''}) {why}".replace(
                    " ()", ""),
                {"structure": name, "addr": addr, "cfg": cfg,
                 "legal": legal, "why": why_rec, "fields": fields,
                 "state": hexes(state), "old": hexes(old), "new": hexes(new),
                 "attaches": list(w.ns)},
                attach=w.ns[0], order=(RANK,)))
            v.add_many(records[1:], count - 1)
        for a in self.ctx.attaches.attaches:
            if a.n in w.ns:
                a.rules.add(RULE)


def _snap(r: Record) -> tuple:
    return (r.get("ste"), r.get("cd"), r.get("cd_addr"))


def _verdict(table: object, used_of: object, state: Words | None, legal: object,
             why_rec: object, old: Words | None, new: Words | None
             ) -> tuple[list[str], str] | None:
    """(fields, why) when a fetched state is reported, else None (see the module doc)."""
    if state is None or state == old or state == new:
        if state is not None and state == new and legal is False \
                and layouts.is_valid(table, state):  # type: ignore[arg-type]
            return [], "final state is illegal"
        return None
    bad_fields: list[str] = []
    if old is not None and new is not None:
        bits = layouts.mismatched_bits(state, old, new, used_of(state))  # type: ignore[operator]
        bad_fields = table.fields_in(bits)  # type: ignore[attr-defined]
    illegal = legal is False
    if illegal and not layouts.is_valid(table, state) and new is None:  # type: ignore[arg-type]
        illegal = False  # may be the (unseen) final state of a detach
    if not bad_fields and not illegal:
        return None
    why = []
    if illegal:
        why.append(f"illegal ({why_rec or 'legal=false'})")
    if bad_fields:
        why.append("differs from both old and new in used field(s) " + ", ".join(bad_fields))
    return bad_fields, "; ".join(why)
