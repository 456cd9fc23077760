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
  can refill the ATC.
"""

from __future__ import annotations

from cosim.arch.cd import cd_used
from cosim.arch.ste import may_serve_ats, ste_used

from .atc_state import UnsyncedAtcInv
from .attaches import Attach, driver_returns
from .context import Context
from .findings import Collector, Violation
from .view import Record, ssid_of

CFGI_RULE = "protocol-cfgi"
STEP_RULE = "protocol-cfgi-step"
ATC_RULE = "protocol-atc-sync"
ORDER_RULE = "protocol-atc-order"

Words = tuple[int, ...]


def check(ctx: Context, out: Collector) -> None:
    _check_steps(ctx, out)
    ends = driver_returns(ctx.attaches)
    if not ends:
        return
    recs = ctx.view.records
    # Fetched and not yet invalidated: sid -> {words: first index}; (sid, cd index) -> same.
    ste_held: dict[int, dict[Words, int]] = {}
    cd_held: dict[tuple[int, int], dict[Words, int]] = {}
    # CFGIs executed since the last completed sync, as (op, sid, ssid, range, index).
    pending: list[tuple[str, int | None, int | None, int | None, int]] = []
    unsynced = UnsyncedAtcInv()
    for i, r in enumerate(recs):
        k = r.get("k")
        if k == "ste_fetch":
            ste_held.setdefault(r["sid"], {}).setdefault(tuple(r["qw"]), i)
        elif k == "cd_fetch":
            idx = ssid_of(r) or 0
            cd_held.setdefault((r["sid"], idx), {}).setdefault(tuple(r["qw"]), i)
        elif k == "cfgi":
            pending.append((r["op"], r.get("sid"), r.get("ssid"), r.get("range"), i))
        elif k == "sync" and r["state"] == "done":
            for p in pending:
                _invalidate(p, ste_held, cd_held)
            pending.clear()
        unsynced.apply(i, r)
        for a in ends.get(i, ()):
            _judge_config(ctx, out, a, r, ste_held, cd_held)
            _judge_atc(ctx, out, a, unsynced)
            _judge_order(ctx, out, a)


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


def _check_steps(ctx: Context, out: Collector) -> None:
    recs = ctx.view.records
    since_sync: dict[tuple[str, int, int | None], int] = {}
    for i, r in enumerate(recs):
        k = r.get("k")
        if k == "sync" and r["state"] == "done":
            since_sync.clear()
        elif k == "cfgi" and (entry := _entry(r)) is not None:
            first = since_sync.setdefault(entry, i)
            if first == i:
                continue
            name, sid, ssid = entry
            group = (STEP_RULE, entry, first)
            if out.seen(group, i) is None:
                out.new(group, Violation(
                    STEP_RULE, i, sid, ssid,
                    f"{r['op']} of the {name} again (line {ctx.view.line_of(i)}) with no "
                    f"completed CMD_SYNC since its previous invalidation (line "
                    f"{ctx.view.line_of(first)}): the driver wrote the next step of the update "
                    "before the SMMU was known to see the previous one",
                    {"structure": name, "first_line": ctx.view.line_of(first),
                     "again_line": ctx.view.line_of(i)}))


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


def _differs(held: Words, now: list[int], kind: str) -> bool:
    fn = ste_used if kind == "ste" else cd_used
    mask = [a | b for a, b in zip(fn(held), fn(now), strict=True)]
    return any((h ^ n) & m for h, n, m in zip(held, now, mask, strict=True))


def _judge_config(ctx: Context, out: Collector, a: Attach, end: Record,
                  ste_held: dict[int, dict[Words, int]],
                  cd_held: dict[tuple[int, int], dict[Words, int]]) -> None:
    sid, ssid = end["sid"], ssid_of(end)
    checks = []
    if end.get("ste") is not None:
        checks.append(("STE", "ste", ste_held.get(sid, {}), end["ste"]))
    if end.get("cd") is not None:
        checks.append(("CD", "cd", cd_held.get((sid, ssid or 0), {}), end["cd"]))
    for name, kind, held, now in checks:
        stale = [(w, j) for w, j in held.items() if _differs(w, now, kind)]
        if not stale:
            continue
        w, j = stale[0]
        out.new((CFGI_RULE, a.n, name), Violation(
            CFGI_RULE, a.end or 0, sid, ssid,
            f"the driver's attach returned with the {name} changed since the SMMU fetched it "
            f"(line {ctx.view.line_of(j)}) and no completed CFGI + CMD_SYNC since: the SMMU "
            f"may still use the cached copy",
            {"structure": name, "fetched_line": ctx.view.line_of(j),
             "fetched": [f"{x:#x}" for x in w], "memory": [f"{x:#x}" for x in now]},
            attach=a.n))
        a.rules.add(CFGI_RULE)


def _judge_atc(ctx: Context, out: Collector, a: Attach, unsynced: UnsyncedAtcInv) -> None:
    inside = unsynced.between(a.begin, a.end or 0)
    if not inside:
        return
    out.new((ATC_RULE, a.n), Violation(
        ATC_RULE, inside[0], a.sids[0] if a.sids else None, a.ssid,
        f"the driver's attach returned before a CMD_SYNC completed after {len(inside)} "
        f"ATC_INV it issued (first line {ctx.view.line_of(inside[0])})",
        {"atc_inv_lines": [ctx.view.line_of(j) for j in inside[:20]]}, attach=a.n))
    a.rules.add(ATC_RULE)


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


def _judge_order(ctx: Context, out: Collector, a: Attach) -> None:
    if not a.sids or a.end is None:
        return
    key = (a.sids[0], a.ssid)
    if a.old.get(key) == a.new.get(key):
        return
    recs = ctx.view.records
    old_ste = recs[a.begin].get("ste") if a.source == "driver" else None
    if old_ste is not None and not may_serve_ats(old_ste):
        return
    cd_index = (a.ssid or 0) if recs[a.end].get("cd") is not None else None
    last_cfgi = last_inv = -1
    for j in range(a.begin + 1, a.end):
        r = recs[j]
        k = r.get("k")
        if k == "cfgi" and _covers(r, key[0], cd_index):
            last_cfgi = j
        elif k == "atc_inv" and r["sid"] == key[0] and (r["g"] or a.ssid is None
                                                          or r["ssid"] in (None, a.ssid)):
            last_inv = j
    if last_inv < 0 or last_cfgi < last_inv:
        return
    out.new((ORDER_RULE, a.n), Violation(
        ORDER_RULE, last_cfgi, key[0], key[1],
        f"the attach's last ATC_INV for the stream (line {ctx.view.line_of(last_inv)}) came "
        f"before its last configuration invalidation (line {ctx.view.line_of(last_cfgi)}): "
        f"ATS requests in between could refill the ATC from the old domain",
        {"atc_inv_line": ctx.view.line_of(last_inv),
         "cfgi_line": ctx.view.line_of(last_cfgi)}, attach=a.n))
    a.rules.add(ORDER_RULE)
