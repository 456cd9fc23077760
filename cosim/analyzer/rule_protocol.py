"""Check f, the invalidation protocol, independent of timing: what the driver must have done
before its attach returns, whether or not any traffic happened to expose it.

- `protocol-cfgi`: an SMMU may keep any STE or CD it fetched until a CFGI that covers it has
  been followed by a completed CMD_SYNC (IHI 0070 §3.21, §4.3, §4.7.3). When the driver's
  attach returns, every STE/CD the SMMU fetched for the stream since the last such completed
  invalidation must equal, in the bits either uses (§5.2, §5.4), what memory holds then (the
  `drv` end record's snapshot); otherwise the driver changed a structure the SMMU may still
  hold cached and returned without invalidating it.
- `protocol-cfgi-step`: each step of an entry update is invalidated and the invalidation completed
  before the next step is written (the hitless update's guarantee, §3.21.3: the SMMU may hold
  or fetch the entry between any two writes, and only a completed CFGI + CMD_SYNC says it sees
  a step). The driver invalidates an entry only after writing it, so a second CFGI of the same
  STE (or the same CD) with no completed CMD_SYNC since the first means a step was written
  before the previous one was known to be seen: the SMMU may combine the two.
- `protocol-atc-sync`: every ATC_INV delivered during an attach must be covered by a
  completed CMD_SYNC before the attach returns (§3.9.1.3, §4.7.3: only the sync says the
  device no longer holds the translations).
- `protocol-atc-order`: when an attach changes the stream's domain and invalidates the ATC,
  an ATC_INV for the stream must follow the last configuration invalidation (CFGI) of the
  update: until the SMMU no longer uses the old STE/CD, an ATS request can bring an old
  translation back into the ATC (§3.9.1: the ATC is filled from what the SMMU translates).
  Only when the old configuration could serve ATS at all: an old STE that is invalid, aborts,
  bypasses or has EATS=0 answers every Translation Request with UR (§3.9.1.2), so nothing old
  can refill the ATC. And only when the device could ask: a Function with ATS Enable clear
  issues no Translation Request (PCIe ATS Control, Enable: "when Set, the Function is enabled
  to cache translations"; the endpoint model refuses ATS traffic while it is clear, `cfg`
  records carry the bit). If ATS Enable was clear from the last ATC_INV to the last CFGI, no
  refill could happen in between (6.1 detaches with pci_disable_ats() first, then ATC_INV,
  then the new STE); the ATC the invalidation emptied stays empty until ATS is enabled again.
  Clearing the bit does not flush the ATC (PCIe does not say it does; the model keeps its
  entries), so the ATC_INV itself is still needed, and it came.
"""

from __future__ import annotations

from cosim.arch.cd import cd_used
from cosim.arch.ste import may_serve_ats, ste_used

from .attaches import Attach
from .context import Context
from .findings import Violation
from .view import Record, ssid_of

CFGI_RULE = "protocol-cfgi"
STEP_RULE = "protocol-cfgi-step"
ATC_RULE = "protocol-atc-sync"
ORDER_RULE = "protocol-atc-order"
RANK = 5

# A fetched STE/CD; None where a qword is unknown (a torn qword a pending CFGI removes).
Words = tuple[int | None, ...]


class _Order:
    """A driver window's last configuration invalidation and ATC_INV for its stream, kept as
    the records pass (which CFGIs count depends on the CD the new configuration uses, known
    at the return: kept apart by what they name)."""

    __slots__ = ("dev", "sid", "ssid", "last_any", "last_cd_all", "last_cd", "last_inv",
                 "old_ste", "ats_from")

    def __init__(self, dev: int, sid: int, ssid: int | None, old_ste: object) -> None:
        self.dev, self.sid, self.ssid = dev, sid, ssid
        self.old_ste = old_ste     # the entry's STE snapshot
        self.last_any = self.last_cd_all = self.last_inv = -1
        self.last_cd: dict[object, int] = {}
        # The first record at or after last_inv at which the device had ATS Enable set (it
        # could issue Translation Requests from there on); None: clear ever since.
        self.ats_from: int | None = None

    def cfgi(self, j: int, rec: Record) -> None:
        op, s = rec["op"], rec.get("sid")
        if op == "CFGI_CD":
            if s == self.sid:
                self.last_cd[rec.get("ssid")] = j
        elif op == "CFGI_CD_ALL":
            if s == self.sid:
                self.last_cd_all = j
        elif _covers(rec, self.sid, None):
            self.last_any = j

    def last_cfgi(self, cd_index: int | None) -> int:
        if cd_index is None:
            return self.last_any
        return max(self.last_any, self.last_cd_all, self.last_cd.get(cd_index, -1))


class Protocol:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # Fetched and not yet invalidated: sid -> {words: first index}; (sid, cd index) -> same.
        self.ste_held: dict[int, dict[Words, int]] = {}
        self.cd_held: dict[tuple[int, int], dict[Words, int]] = {}
        # CFGIs executed since the last completed sync, as (op, sid, ssid, range, index).
        self.pending: list[tuple[str, int | None, int | None, int | None, int]] = []
        self._order: dict[int, _Order] = {}    # open driver windows by attach n
        self._last: dict[object, tuple[dict[Words, int], list[int]]] = {}
        # Entries a CFGI named since the last completed sync -> where first.
        self.since_sync: dict[tuple[str, int, int | None], int] = {}
        # Each device's ATS Enable as its last `cfg` record left it; a device no record has
        # named yet counts as enabled (the rule then judges as if it could ask).
        self.ats_on: dict[int, bool] = {}
        ctx.attaches.listeners.append(self)

    def cfg(self, i: int, r: Record) -> None:
        dev, on = r.get("dev"), bool(r.get("ats"))
        if type(dev) is not int:
            return
        self.ats_on[dev] = on
        if on:
            for o in self._order.values():
                if o.dev == dev and o.last_inv >= 0 and o.ats_from is None:
                    o.ats_from = i

    def ste_fetch(self, i: int, r: Record) -> None:
        sid = r["sid"]
        held = self.ste_held.get(sid)
        if held is None:
            held = self.ste_held[sid] = {}
        self._hold(held, ("ste", sid), self._fetched(r, sid, None), i, r.get("cached"))

    def cd_fetch(self, i: int, r: Record) -> None:
        key = (r["sid"], ssid_of(r) or 0)
        held = self.cd_held.get(key)
        if held is None:
            held = self.cd_held[key] = {}
        self._hold(held, key, self._fetched(r, key[0], key[1]), i, r.get("cached"))

    def _fetched(self, r: Record, sid: int, cd: int | None) -> list[int | None]:
        """What a fetch leaves held past the pending CFGIs. A strict-mode fetch may be torn:
        its `torn` qwords are what the SMMU held (partially cached) before, not memory now
        (§3.21.3). Made while a CFGI covering the structure is executed and not yet synced
        (the queue is consumed over time, so traffic falls between a CFGI and its CMD_SYNC),
        those qwords predate that CFGI, and its completion removes them (§4.7.3): only the
        qwords read from memory may outlive it, so only those are judged at the return."""
        qw = r["qw"]
        torn = r.get("torn")
        if not torn or not any(_pending_covers(p, sid, cd) for p in self.pending):
            return qw
        return [None if n in torn else w for n, w in enumerate(qw)]

    def _hold(self, held: dict[Words, int], key: object, qw: list[int | None], i: int,
              cached: object = False) -> None:
        """held.setdefault(tuple(qw), i); most fetches repeat the last one into the same
        held set (an invalidation makes a new set), which needs no tuple. A cache hit of a
        copy already held (unknown qwords matching anything) is that copy, held since its
        fetch: not a new one dated now."""
        last = self._last.get(key)
        if last is not None and last[0] is held and last[1] == qw:
            return
        if cached and any(_same(w, qw) for w in held):
            return
        held.setdefault(tuple(qw), i)
        self._last[key] = (held, qw)

    def cfgi(self, i: int, r: Record) -> None:
        self._step(i, r)
        self.pending.append((r["op"], r.get("sid"), r.get("ssid"), r.get("range"), i))
        for o in self._order.values():
            o.cfgi(i, r)

    def _step(self, i: int, r: Record) -> None:
        entry = _entry(r)
        if entry is None:
            return
        first = self.since_sync.setdefault(entry, i)
        if first == i:
            return
        view, out = self.ctx.view, self.ctx.out
        name, sid, ssid = entry
        group = (STEP_RULE, entry, first)
        if out.seen(group, i) is None:
            out.new(group, Violation(
                STEP_RULE, i, sid, ssid,
                f"{r['op']} of the {name} again (line {view.line_of(i)}) with no "
                f"completed CMD_SYNC since its previous invalidation (line "
                f"{view.line_of(first)}): the driver wrote the next step of the update "
                "before the SMMU was known to see the previous one",
                {"structure": name, "first_line": view.line_of(first),
                 "again_line": view.line_of(i)}, order=(RANK, -1)))

    def atc_inv(self, i: int, r: Record) -> None:
        for o in self._order.values():
            a_ssid = o.ssid
            if r["sid"] == o.sid and (r["g"] or a_ssid is None or r["ssid"] in (None, a_ssid)):
                o.last_inv = i
                o.ats_from = i if self.ats_on.get(o.dev, True) else None

    def sync(self, i: int, r: Record) -> None:
        if r["state"] == "done":
            self.since_sync.clear()
            for p in self.pending:
                _invalidate(p, self.ste_held, self.cd_held)
            self.pending.clear()

    # -- windows -------------------------------------------------------------------------------
    def begin(self, a: Attach, i: int) -> None:
        if a.source == "driver" and a.sids:
            self._order[a.n] = _Order(a.dev, a.sids[0], a.ssid,
                                      self.ctx.attaches.drv_record.get("ste"))

    def horizon(self, a: Attach, i: int) -> None:
        pass

    def stop(self, a: Attach, i: int) -> None:
        order = self._order.pop(a.n, None)
        if a.source != "driver" or a.end != i:
            return
        end = self.ctx.attaches.drv_record
        self._judge_config(a, end)
        self._judge_atc(a)
        if order is not None:
            self._judge_order(a, end, order)

    def finish(self) -> None:
        pass

    def _judge_config(self, a: Attach, end: Record) -> None:
        view = self.ctx.view
        sid, ssid = end["sid"], ssid_of(end)
        checks = []
        if end.get("ste") is not None:
            checks.append(("STE", "ste", self.ste_held.get(sid, {}), end["ste"], 0))
        if end.get("cd") is not None:
            checks.append(("CD", "cd", self.cd_held.get((sid, ssid or 0), {}), end["cd"], 1))
        for name, kind, held, now, sub in checks:
            stale = [(w, j) for w, j in held.items() if _differs(w, now, kind)]
            if not stale:
                continue
            w, j = stale[0]
            self.ctx.out.new((CFGI_RULE, a.n, name), Violation(
                CFGI_RULE, a.end or 0, sid, ssid,
                f"the driver's attach returned with the {name} changed since the SMMU fetched "
                f"it (line {view.line_of(j)}) and no completed CFGI + CMD_SYNC since: the SMMU "
                f"may still use the cached copy",
                {"structure": name, "fetched_line": view.line_of(j),
                 "fetched": ["?" if x is None else f"{x:#x}" for x in w],
                 "memory": [f"{x:#x}" for x in now]},
                attach=a.n, order=(RANK, a.end, sub)))
            a.rules.add(CFGI_RULE)

    def _judge_atc(self, a: Attach) -> None:
        view = self.ctx.view
        inside = self.ctx.unsynced.between(a.begin, a.end or 0)
        if not inside:
            return
        self.ctx.out.new((ATC_RULE, a.n), Violation(
            ATC_RULE, inside[0], a.sids[0] if a.sids else None, a.ssid,
            f"the driver's attach returned before a CMD_SYNC completed after {len(inside)} "
            f"ATC_INV it issued (first line {view.line_of(inside[0])})",
            {"atc_inv_lines": [view.line_of(j) for j in inside[:20]]}, attach=a.n,
            order=(RANK, a.end, 2)))
        a.rules.add(ATC_RULE)

    def _judge_order(self, a: Attach, end: Record, o: _Order) -> None:
        if not a.sids or a.end is None:
            return
        key = (a.sids[0], a.ssid)
        if a.old.get(key) == a.new.get(key):
            return
        if o.old_ste is not None and not may_serve_ats(o.old_ste):  # type: ignore[arg-type]
            return
        view = self.ctx.view
        cd_index = (a.ssid or 0) if end.get("cd") is not None else None
        last_cfgi, last_inv = o.last_cfgi(cd_index), o.last_inv
        if last_inv < 0 or last_cfgi < last_inv:
            return
        if o.ats_from is None or o.ats_from > last_cfgi:
            return      # ATS Enable clear from the ATC_INV to the CFGI: nothing could refill
        self.ctx.out.new((ORDER_RULE, a.n), Violation(
            ORDER_RULE, last_cfgi, key[0], key[1],
            f"the attach's last ATC_INV for the stream (line {view.line_of(last_inv)}) came "
            f"before its last configuration invalidation (line {view.line_of(last_cfgi)}): "
            f"ATS requests in between could refill the ATC from the old domain",
            {"atc_inv_line": view.line_of(last_inv),
             "cfgi_line": view.line_of(last_cfgi)}, attach=a.n, order=(RANK, a.end, 3)))
        a.rules.add(ORDER_RULE)


def _invalidate(p: tuple[str, int | None, int | None, int | None, int],
                ste_held: dict[int, dict[Words, int]],
                cd_held: dict[tuple[int, int], dict[Words, int]]) -> None:
    op, sid, ssid, rng, at = p

    def before(held: dict[Words, int]) -> dict[Words, int]:
        """Drop what was fetched before the CFGI executed: the sync made that invalidation
        complete. What was fetched after it stays held."""
        return {w: j for w, j in held.items() if j > at}

    if op == "CFGI_ALL":
        for s in ste_held:
            ste_held[s] = before(ste_held[s])
        for c in cd_held:
            cd_held[c] = before(cd_held[c])
        return
    if sid is None:
        return
    if op == "CFGI_STE_RANGE" and rng is not None:
        lo = sid & ~((1 << (rng + 1)) - 1)
        sids = [s for s in ste_held if lo <= s < lo + (1 << (rng + 1))]
    else:
        sids = [sid]
    if op in ("CFGI_STE", "CFGI_STE_RANGE"):
        # §4.3.2: CFGI_STE also invalidates the CDs cached through that STE.
        for s in sids:
            if s in ste_held:
                ste_held[s] = before(ste_held[s])
        for c in cd_held:
            if c[0] in sids:
                cd_held[c] = before(cd_held[c])
    elif op == "CFGI_CD_ALL":
        for c in cd_held:
            if c[0] == sid:
                cd_held[c] = before(cd_held[c])
    elif op == "CFGI_CD" and ssid is not None and (sid, ssid) in cd_held:
        cd_held[(sid, ssid)] = before(cd_held[(sid, ssid)])


def _same(held: Words, qw: list[int | None]) -> bool:
    return all(h is None or h == q for h, q in zip(held, qw, strict=True))


def _pending_covers(p: tuple[str, int | None, int | None, int | None, int], sid: int,
                    cd: int | None) -> bool:
    """Does pending CFGI `p` invalidate the STE of `sid` (cd None) or its CD `cd`? As
    `_invalidate` applies it."""
    op, psid, pssid, rng, _ = p
    if op == "CFGI_ALL":
        return True
    if psid is None:
        return False
    if op == "CFGI_STE_RANGE" and rng is not None:
        lo = psid & ~((1 << (rng + 1)) - 1)
        return lo <= sid < lo + (1 << (rng + 1))
    if op == "CFGI_STE":
        return psid == sid              # §4.3.2: with the CDs cached through it
    if cd is None:
        return False
    if op == "CFGI_CD_ALL":
        return psid == sid
    return op == "CFGI_CD" and psid == sid and pssid == cd


def _differs(held: Words, now: list[int], kind: str) -> bool:
    """Do `held` and `now` differ in a bit either uses? Unknown qwords (None) count as
    equal: the used bits come from the known ones and from memory."""
    fn = ste_used if kind == "ste" else cd_used
    known = [n if h is None else h for h, n in zip(held, now, strict=True)]
    mask = [a | b for a, b in zip(fn(known), fn(now), strict=True)]
    return any((h ^ n) & m for h, n, m in zip(known, now, mask, strict=True))


def _covers(rec: Record, sid: int, cd_index: int | None) -> bool:
    """Does this `cfgi` record invalidate configuration that stream `sid` uses afterwards?
    `cd_index`: the CD the new configuration uses, None when it uses none (a CFGI_CD then
    only tidies a CD the stream has left, e.g. the old domain's after a switch to blocked)."""
    op, s = rec["op"], rec.get("sid")
    if op == "CFGI_ALL":
        return True
    if op == "CFGI_STE_RANGE" and s is not None and rec.get("range") is not None:
        span = 1 << (rec["range"] + 1)
        return s & ~(span - 1) <= sid < (s & ~(span - 1)) + span
    if op == "CFGI_CD":
        return s == sid and cd_index is not None and rec.get("ssid") == cd_index
    if op == "CFGI_CD_ALL":
        return s == sid and cd_index is not None
    return s == sid


def _entry(r: Record) -> tuple[str, int, int | None] | None:
    """The single entry a CFGI names (STE of a StreamID, CD of a SubstreamID, all CDs of a
    StreamID); None for the invalidations that name no single entry."""
    op, sid = r["op"], r.get("sid")
    if sid is None:
        return None
    if op == "CFGI_STE":
        return ("STE", sid, None)
    if op == "CFGI_CD":
        return ("CD", sid, r.get("ssid"))
    if op == "CFGI_CD_ALL":
        return ("CDs", sid, None)
    return None
