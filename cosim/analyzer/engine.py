"""The analysis as one pass over the trace: each record is read, handed to the shared
trackers (attach windows, domains, the device's ATC, invalidations and their syncs) once, then
to the rules that handle its kind (a dispatch table by `k`). Nothing keeps the records: the
memory is what is live (windows open, entries held, invalidations pending) plus the findings.

Two facts about the whole trace change how its start is read: whether it has driver probes
(`drv` records: the windows are the driver's, otherwise the userspace markers') and which
StreamIDs each device uses. The pass guesses both from what it has seen so far (the first
`drv_armed` comes before the first attach in practice, a device names its StreamID before its
tests begin); at the end it checks the guesses it relied on against the whole trace, and only
if one was wrong reads the trace again knowing the facts (`Facts`), so the result is always
the one the whole trace gives."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cosim.arch.domain import Domain, DomainError
from cosim.trace import TraceReader

from .atc_state import AtcState, UnsyncedAtcInv
from .attaches import AttachStats, AttachTracker
from .context import Context
from .domains import SERVED_KINDS, DomainTracker
from .findings import Collector
from .invalidations import SyncTracker
from .rule_atc_invalidation import AtcInvalidation
from .rule_domain_invalidation import DomainInvalidation
from .rule_entry_update import EntryUpdate
from .rule_hitless_abort import HitlessAbort
from .rule_old_domain import OldDomain
from .rule_other_stream import OtherStream
from .rule_protocol import Protocol
from .rule_stale_cache import StaleCache
from .view import (
    DEVICE_SID_KINDS,
    DeviceSids,
    DomainReader,
    TraceView,
    dev_of_sid,
)

Handler = Callable[[int, dict[str, Any]], None]


@dataclass
class Facts:
    """What only the whole trace tells: its mode and the device StreamIDs."""

    driver: bool
    dev_sids: dict[int, list[int]]


@dataclass
class Pass:
    ctx: Context
    kinds: dict[str, int]
    guess_ok: bool
    facts: Facts


Progress = Callable[[int], None]   # told the number of records read, every PROGRESS_EVERY
Ended = Callable[[], bool]         # true once the trace's writer is gone (cosim.trace.follow)
PROGRESS_EVERY = 1 << 20


def analyze_pass(path: str | os.PathLike[str], facts: Facts | None,
                 progress: Progress | None = None, ended: Ended | None = None) -> Pass:
    """`ended`: the trace is still being written until ended() is true (followed as it grows)."""
    reader = TraceReader(path, ended)
    view = TraceView(os.fspath(path), reader.header)
    sids = DeviceSids(reader.header)
    doms = DomainTracker()
    tracker = AttachTracker(view, doms, facts.driver if facts else False,
                            facts.dev_sids if facts else None, sids)
    atc, unsynced = AtcState(), UnsyncedAtcInv()
    ctx = Context(view, doms, tracker, atc, unsynced, Collector(), Collector())
    syncs = SyncTracker()
    stats = AttachStats(tracker)
    # The rules, in the order the report lists findings at one record.
    old_domain = OldDomain(ctx)
    atc_inv = AtcInvalidation(ctx)
    dom_inv = DomainInvalidation(ctx)
    hitless = HitlessAbort(ctx)
    other = OtherStream(ctx)
    entry = EntryUpdate(ctx)
    protocol = Protocol(ctx)
    stale = StaleCache(ctx)
    caching = stale.on
    rules = (old_domain, atc_inv, dom_inv, hitless, other, entry, protocol, stale)
    guessed = facts is None
    mode_broken = False
    kinds: defaultdict[str, int] = defaultdict(int)
    all_sids, found = sids.all_sids, sids.found
    after, inside = tracker.after, tracker.inside
    last_seen = doms.last_seen

    # -- per-kind handlers --------------------------------------------------------------------
    def on_traffic(i: int, r: dict[str, Any], k: str, served: bool = False) -> None:
        """`served`: k is one of SERVED_KINDS."""
        sid, dom = r.get("sid"), r.get("dom")
        if type(sid) is not int or dom is None:
            return
        ssid = r.get("ssid")
        key = (sid, ssid if type(ssid) is int else None)
        if served or last_seen.get(key) is not dom:
            doms.apply(k, key, dom, r)
        if after:
            old_domain.traffic(i, r, k, key, dom)
            if served and not tracker.driver:
                for a in after:
                    if key in a.keys:
                        tracker.served_after(a, key, dom)
        if inside:
            hitless.traffic(i, r, k, key, dom)

    def translation(k: str) -> Handler:
        """The handler of a translation the SMMU served (`xlate` untranslated, `ats` for an
        ATS Translation Request): both feed the same trackers and rules."""
        assert k in SERVED_KINDS

        def handle(i: int, r: dict[str, Any]) -> None:
            on_traffic(i, r, k, True)
            if caching:
                dom_inv.translation(i, r, k)
            if inside:
                hitless.failure(i, r, k)
                other.failure(i, r, k)
            if caching:
                stale.translation(i, r, k)
        return handle

    xlate, ats = translation("xlate"), translation("ats")

    def dma(i: int, r: dict[str, Any]) -> None:
        if not r.get("held"):
            # A held delivery was issued, and its use of the ATC entry judged, at its atc_hit
            # or ats record: before an invalidation it outlives, whose completion pushed it.
            on_traffic(i, r, "dma")
            atc_inv.used(i, r, "dma")
        if inside:
            hitless.failure(i, r, "dma")
            other.failure(i, r, "dma")
            stats.dma(i, r)

    def atc_hit(i: int, r: dict[str, Any]) -> None:
        on_traffic(i, r, "atc_hit")
        atc_inv.used(i, r, "atc_hit")

    def event(i: int, r: dict[str, Any]) -> None:
        if inside:
            hitless.failure(i, r, "event")
            other.failure(i, r, "event")
            stats.event(i, r)

    def drop(i: int, r: dict[str, Any]) -> None:
        if inside:
            other.failure(i, r, "drop")

    def atc_insert(i: int, r: dict[str, Any]) -> None:
        atc.insert(i, r)
        atc_inv.insert(i, r)

    def atc_evict(i: int, r: dict[str, Any]) -> None:
        atc.evict(r)
        atc_inv.gone(r.get("dev"), [r.get("id")])

    def atc_inv_rx(i: int, r: dict[str, Any]) -> None:
        atc.inv_rx(r)
        atc_inv.gone(r.get("dev"), r.get("dropped") or [])

    def atc_inv_rec(i: int, r: dict[str, Any]) -> None:
        inv = syncs.issue(i, r, "atc_inv")
        unsynced.apply(i, r, "atc_inv")
        atc_inv.issued(inv)
        protocol.atc_inv(i, r)

    def cfgi(i: int, r: dict[str, Any]) -> None:
        syncs.issue(i, r, "cfgi")
        protocol.cfgi(i, r)

    def tlbi(i: int, r: dict[str, Any]) -> None:
        syncs.issue(i, r, "tlbi")

    def cmd(i: int, r: dict[str, Any]) -> None:
        syncs.cmd(i, r)
        if inside:
            stats.cmd(i, r)

    def completed(invs: list) -> None:
        if invs:
            atc_inv.completed(invs)
            if caching:
                stale.completed(invs)

    def sync(i: int, r: dict[str, Any]) -> None:
        completed(syncs.sync(i, r))
        unsynced.apply(i, r, "sync")
        protocol.sync(i, r)
        if inside:
            stats.sync(i, r)

    def atc_inv_sync(i: int, r: dict[str, Any]) -> None:
        completed(syncs.atc_inv_sync(i, r))
        unsynced.apply(i, r, "atc_inv_sync")

    def fetcher(k: str, judge: Handler) -> Handler:
        """The handler of an STE or CD fetch (`judge`: the protocol rule's for the kind): both
        feed the same trackers and rules."""
        def handle(i: int, r: dict[str, Any]) -> None:
            judge(i, r)
            if type(r.get("sid")) is not int:
                return
            entry.fetch(i, r, k)
            if caching:
                stale.fetch(i, r, k)
            if after and not tracker.driver and not r.get("cached"):
                for a in after:
                    if r["sid"] in a.sids:
                        tracker.fetch_after(a, r, k)
        return handle

    ste_fetch = fetcher("ste_fetch", protocol.ste_fetch)
    cd_fetch = fetcher("cd_fetch", protocol.cd_fetch)

    def drv(i: int, r: dict[str, Any]) -> None:
        if not tracker.driver:
            first_drv()
        t = r.get("t")
        tracker.drv_record = r
        tracker.drv(i, r, t if isinstance(t, int) else 0)

    def drv_armed(i: int, r: dict[str, Any]) -> None:
        if not tracker.driver:
            first_drv()

    def first_drv() -> None:
        """The trace has driver probes after all: the windows are the driver's."""
        nonlocal mode_broken
        if tracker.markers:
            mode_broken = True    # marker windows were judged: read again in driver mode
        tracker.driver = True

    def marker(i: int, r: dict[str, Any]) -> None:
        dev = r.get("dev")
        if isinstance(dev, int) and dev not in sids._marker_seen:
            sids._marker_seen.add(dev)
            sids.marker_devs.append(dev)
        t = r.get("t")
        tracker.marker(i, r, t if isinstance(t, int) else 0)

    def link(i: int, r: dict[str, Any]) -> None:
        if r.get("event") == "device" and isinstance(r.get("dev"), int) \
                and isinstance(r.get("rid"), int):
            sids.link_rid.setdefault(r["dev"], r["rid"])

    handlers: dict[str, Handler] = {
        "xlate": xlate, "ats": ats, "dma": dma, "atc_hit": atc_hit, "event": event,
        "atc_insert": atc_insert, "atc_evict": atc_evict, "atc_inv_rx": atc_inv_rx,
        "atc_inv": atc_inv_rec, "cfgi": cfgi, "tlbi": tlbi, "cmd": cmd, "sync": sync,
        "atc_inv_sync": atc_inv_sync, "ste_fetch": ste_fetch, "cd_fetch": cd_fetch,
        "drv": drv, "drv_armed": drv_armed, "marker": marker, "drv_inv": dom_inv.drv_inv,
        "link": link, "drop": drop, "cfg": protocol.cfg,
    }
    get = handlers.get
    i = -1
    domain_reader = DomainReader()
    read_dom, known_doms = domain_reader.read, domain_reader.known
    last_sid: int | None = None
    last_dev, last_dev_sid = None, None   # the (dev, sid) pair last added to `found`
    # The last `dom` object read and its Domain: most records name the domain the last one
    # did. The reader checked the object (integers and strings only), so == is exact here.
    last_obj: dict[str, Any] | None = None
    last_dom: Domain | None = None
    view._skipped_lines = reader.skipped_lines  # grows as the reader goes: line_of stays right
    tell = progress is not None
    try:
        for rec in reader:
            i += 1
            dom = rec.get("dom")
            if dom is not None:
                if dom == last_obj:
                    rec["dom"] = last_dom
                else:
                    try:
                        got = known_doms.get(tuple(dom.items()))
                        rec["dom"] = last_dom = got if got is not None else read_dom(dom)
                        last_obj = dom
                    except DomainError as e:
                        view.notes.append(f"line {view.line_of(i)}: {e}; read as no domain")
                        rec["dom"] = None
            k = rec["k"]
            kinds[k] += 1
            sid = rec.get("sid")
            if type(sid) is int and sid != last_sid:
                all_sids.add(sid)
                last_sid = sid   # most records name the stream the last one did
            if k in DEVICE_SID_KINDS and type(sid) is int:
                dev = rec.get("dev")
                if type(dev) is int and (dev != last_dev or sid != last_dev_sid):
                    found.setdefault(dev, set()).add(sid)
                    last_dev, last_dev_sid = dev, sid
            h = get(k)
            if h is not None:
                h(i, rec)
            if tell and not i & (PROGRESS_EVERY - 1):
                progress(i)  # type: ignore[misc]
    finally:
        reader.close()
    n = view.count = i + 1
    view.finished(reader)
    tracker.finish(n)
    for rule in rules:
        rule.finish()
    view.dev_sids = sids.final()
    view.notes += tracker.marker_notes + (tracker.driver_notes if tracker.driver else []) \
        + dom_inv.notes
    final = Facts(tracker.driver, view.dev_sids)
    ok = not mode_broken
    if ok and guessed:
        ok = _guesses_hold(tracker, final)
    return Pass(ctx, dict(sorted(kinds.items())), ok, final)


def _guesses_hold(tracker: AttachTracker, facts: Facts) -> bool:
    """Did every attach get the StreamIDs / device the whole trace gives?"""
    for a in tracker.attaches:
        if a.source == "driver":
            if a.dev_guess != dev_of_sid(facts.dev_sids, a.sids[0]):
                return False
        elif a.dev_guess != facts.dev_sids.get(a.dev, []):
            return False
    return True


def analyze(path: str | os.PathLike[str], progress: Progress | None = None,
            ended: Ended | None = None) -> Pass:
    """One pass, and a second one only when the first pass's guesses did not hold (the first
    may follow a trace still being written; the second reads it whole)."""
    p = analyze_pass(path, None, progress, ended)
    if not p.guess_ok:
        p = analyze_pass(path, p.facts, progress)
    return p
