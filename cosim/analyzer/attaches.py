"""Attaches: the windows in which a stream's domain changes, the domain it had before and
after, and per-attach statistics.

When the guest loaded the driver probes (guest-kmod/cosim_drv_probe.c), a window is exactly
one call of a driver entry point that changes a domain (`drv` records: entry and return),
and its old and new domains are the ones the stream's configuration in memory denoted at
those two moments. The guest tests' userspace markers (attach-begin .. attach-end) then only
label the windows. Without the probes the marker pairs are the windows, the domains are
inferred from traffic, and the analysis says its evidence is incomplete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from cosim.arch.domain import ABORT, BYPASS, Domain
from cosim.arch.ste import S1DSS_SSID0, STE

from . import layouts
from .domains import DomainTracker, dom_of, label
from .view import DeviceSids, Key, Record, TraceView, dev_of_sid, ssid_of

FAMILIES = {"attach-begin": ("attach", True), "attach-end": ("attach", False),
            "pasid-attach-begin": ("pasid-attach", True),
            "pasid-attach-end": ("pasid-attach", False)}


@dataclass(slots=True)
class Attach:
    n: int
    dev: int
    kind: str                     # 'attach' (the RID domain) or 'pasid-attach'
    begin: int                    # record index of the begin marker
    end: int | None               # record index of the end marker; None: never ended
    value: Any = None
    label: Any = None
    sids: list[int] = field(default_factory=list)
    ssid: int | None = None       # PASID for 'pasid-attach' (the marker value)
    horizon: int = 0              # next attach of the same scope begins here (exclusive)
    old: dict[Key, Domain | None] = field(default_factory=dict)
    new: dict[Key, Domain | None] = field(default_factory=dict)
    new_from: dict[Key, str] = field(default_factory=dict)  # 'translation' | 'config' | 'driver'
    source: str = "marker"        # 'driver': a drv entry/return pair; 'marker': userspace
    target: str | None = None     # driver windows: the kind of domain attached
    ret: int | None = None        # driver windows: the entry point's return value
    commands: int = 0
    syncs: int = 0
    aborts: int = 0
    faults: int = 0
    rules: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    t_begin: int = 0
    t_end: int = 0
    # Streaming state: whether `horizon` is known yet, the first test boundary seen while
    # the window was open (the stop if it never ends), stats as they stood then.
    horizon_known: bool = False
    open_boundary: int | None = None
    _stats_then: tuple[int, int, int, int] | None = None
    stopped: bool = False
    dev_guess: list[int] | int | None = None  # what the device/StreamID mapping said

    _keys: list[Key] | None = None

    @property
    def keys(self) -> list[Key]:
        if self._keys is None:  # sids and ssid are fixed once the attach is found
            self._keys = [(sid, self.ssid) for sid in self.sids]
        return self._keys

    @property
    def stop(self) -> int:
        """Last record index inside the attach window (exclusive bound)."""
        return self.end if self.end is not None else self.horizon

    def verdict(self) -> str:
        if self.rules:
            return "violations"
        return "clean" if self.end is not None else "incomplete"

    def to_json(self, view: TraceView) -> dict[str, Any]:
        def dom_map(d: dict[Key, Domain | None]) -> dict[str, str | None]:
            return {_key_str(k): label(v) for k, v in d.items()}
        t0 = self.t_begin
        return {
            "n": self.n, "dev": self.dev, "kind": self.kind, "value": self.value,
            "label": self.label, "sids": self.sids, "ssid": self.ssid,
            "begin_t": t0, "end_t": self.t_end if self.end is not None else None,
            "duration_ns": self.t_end - t0 if self.end is not None else None,
            "begin_line": view.line_of(self.begin),
            "end_line": view.line_of(self.end) if self.end is not None else None,
            "old": dom_map(self.old), "new": dom_map(self.new),
            "new_from": {_key_str(k): v for k, v in self.new_from.items()},
            "source": self.source, "target": self.target, "ret": self.ret,
            "commands": self.commands,
            "syncs": self.syncs, "aborts": self.aborts, "faults": self.faults,
            "verdict": self.verdict(), "rules": sorted(self.rules), "notes": self.notes,
        }


# Markers that end every attach window of their device.
TEST_BOUNDARIES = frozenset({"test-begin", "test-end"})
# A driver operation and the attach kind it is judged as.
DRV_KINDS = {"attach": "attach", "pasid-attach": "pasid-attach", "pasid-remove": "pasid-remove"}


def _key_str(k: Key) -> str:
    return f"{k[0]}" if k[1] is None else f"{k[0]}/{k[1]}"


class WindowListener(Protocol):
    """What a rule hears of the judged attaches' windows, as the records pass. A window is
    (begin, stop) exclusive; after an attach ended, its "after" lasts until `horizon`."""

    def begin(self, a: Attach, i: int) -> None: ...
    def stop(self, a: Attach, i: int) -> None: ...
    def horizon(self, a: Attach, i: int) -> None: ...


@dataclass
class _Inference:
    """A marker window's new domain for one stream, looked for after attach-end."""

    old: Domain | None
    new: Domain | None = None
    ste: tuple[int, ...] | None = None
    cd: tuple[int, ...] | None = None


class AttachTracker:
    """The attach windows, found as the records pass.

    With driver probes (`drv` records) a window is one driver entry point call and lasts
    until its return; its "after" until the next entry for the same stream. Without, the
    userspace marker pairs are the windows, and their domains are inferred: old = the last
    domain that served the stream before attach-begin, new = the first other one serving it
    after attach-end, or the domain the configuration fetched after attach-end denotes (only
    if that domain appears for the stream anywhere in the trace: settled at its end).
    Markers are followed in both modes: in driver mode they label the driver windows.
    `driver` is which mode the trace is in; the engine's first pass guesses it (and the
    device StreamIDs) and checks the guess at the end (engine.Facts).
    """

    def __init__(self, view: TraceView, doms: DomainTracker, driver: bool,
                 dev_sids: dict[int, list[int]] | None, sids: DeviceSids) -> None:
        self.view = view
        self.doms = doms
        self.driver = driver
        self._final_sids = dev_sids
        self._sids = sids
        self.listeners: list[WindowListener] = []
        self.markers: list[Attach] = []
        self.drivers: list[Attach] = []
        self.marker_notes: list[str] = []
        self.driver_notes: list[str] = []
        self.inside: list[Attach] = []     # judged windows open now
        self.after: list[Attach] = []      # judged attaches between end and horizon
        self.drv_record: Record = {}   # the drv record being handled (its STE/CD snapshots)
        # markers
        self._open_m: dict[tuple[int, str], Attach] = {}
        self._abandoned_m: dict[tuple[int, str], Attach] = {}   # the first of each
        self._scope_last: dict[tuple[int, str, int | None], Attach] = {}
        self._dev_pending: dict[int, list[Attach]] = {}  # no boundary after them yet
        self._infer: dict[int, dict[Key, _Inference]] = {}   # attach n -> per stream
        # drivers
        self._open_d: dict[tuple[str, Key], Attach] = {}
        self._last_d: dict[Key, Attach] = {}

    @property
    def attaches(self) -> list[Attach]:
        return self.drivers if self.driver else self.markers

    # -- device <-> StreamID ------------------------------------------------------------------
    def _sids_of(self, dev: int) -> list[int]:
        if self._final_sids is not None:
            return self._final_sids.get(dev, [])
        return self._sids.guess(dev)

    def _dev_of(self, sid: int) -> int:
        if self._final_sids is not None:
            return dev_of_sid(self._final_sids, sid)
        return self._sids.guess_dev(sid)

    # -- events -------------------------------------------------------------------------------
    def _begin(self, a: Attach, i: int) -> None:
        self.inside.append(a)
        for w in self.listeners:
            w.begin(a, i)

    def _stop(self, a: Attach, i: int) -> None:
        if a.stopped:
            return
        a.stopped = True
        self.inside.remove(a)
        for w in self.listeners:
            w.stop(a, i)

    def _to_after(self, a: Attach) -> None:
        self.after.append(a)

    def _horizon(self, a: Attach, i: int) -> None:
        a.horizon = i
        a.horizon_known = True
        if a in self.after:
            self.after.remove(a)
            for w in self.listeners:
                w.horizon(a, i)

    # -- drv ------------------------------------------------------------------------------------
    def drv(self, i: int, rec: Record, t: int) -> None:
        sid, ssid = rec["sid"], ssid_of(rec)
        key = (sid, ssid)
        kind = DRV_KINDS[rec["op"]]
        if rec["phase"] == "begin":
            prev = self._last_d.get(key)
            if prev is not None and not prev.horizon_known:
                if prev.end is not None:
                    self._horizon(prev, i)
                else:
                    prev.horizon, prev.horizon_known = i, True
            cur = self._open_d.get((kind, key))
            if cur is not None:
                cur.notes.append(f"no return before the next {kind} entry (line "
                                 f"{self.view.line_of(i)})")
                if cur.horizon_known:
                    self._stop(cur, cur.horizon)
            a = Attach(len(self.drivers) + 1, self._dev_of(sid), kind, i, None, sids=[sid],
                       ssid=ssid, source="driver", target=rec["target"], t_begin=t)
            a.dev_guess = a.dev
            a.old[key] = dom_of(rec)
            self.drivers.append(a)
            self._open_d[(kind, key)] = a
            self._last_d[key] = a
            self._begin(a, i)
            return
        cur = self._open_d.pop((kind, key), None)
        if cur is None:
            self.driver_notes.append(f"line {self.view.line_of(i)}: driver {kind} return for "
                                     f"{_key_str(key)} without its entry")
            return
        cur.end, cur.t_end = i, t
        cur.ret = rec.get("ret")
        cur.new[key] = dom_of(rec)
        cur.new_from[key] = "driver"
        if cur.ret:
            cur.notes.append(f"the driver's {kind} returned {cur.ret}")
        self._label(cur)
        self._stop(cur, i)
        if not cur.horizon_known:
            self._to_after(cur)

    def _label(self, a: Attach) -> None:
        """Name a driver window after the first userspace marker pair around it: begun
        before it and not ended when it returned (or at all, when it never returned)."""
        cands = [m for m in (self._abandoned_m.get((a.dev, a.kind)),
                             self._open_m.get((a.dev, a.kind)))
                 if m is not None and m.begin < a.begin]
        if cands:
            m = min(cands, key=lambda m: m.n)
            a.value, a.label = m.value, m.label

    # -- markers ---------------------------------------------------------------------------------
    def marker(self, i: int, rec: Record, t: int) -> None:
        tag, dev = rec.get("tag"), rec.get("dev")
        if not isinstance(dev, int):
            return
        if tag in TEST_BOUNDARIES:
            self._boundary(dev, i)
            return
        fam = FAMILIES.get(tag)  # type: ignore[arg-type]
        if fam is None:
            return
        kind, begins = fam
        cur = self._open_m.get((dev, kind))
        if begins:
            ssid = rec.get("value") if kind == "pasid-attach" else None
            ssid = ssid if isinstance(ssid, int) else None
            if cur is not None:
                cur.notes.append(f"no {kind}-end before the next {kind}-begin (line "
                                 f"{self.view.line_of(i)})")
                self._abandoned_m.setdefault((dev, kind), cur)
            scope = (dev, kind, ssid)
            prev = self._scope_last.get(scope)
            sids = self._sids_of(dev)
            a = Attach(len(self.markers) + 1, dev, kind, i, None, rec.get("value"),
                       rec.get("label"), list(sids), ssid, t_begin=t)
            a.dev_guess = list(sids)
            if not a.sids:
                a.notes.append(f"device {dev} never named its StreamID: streams not checked")
            self.markers.append(a)
            self._open_m[(dev, kind)] = a
            self._scope_last[scope] = a
            self._dev_pending.setdefault(dev, []).append(a)
            if not self.driver:
                if prev is not None and not prev.horizon_known:
                    self._marker_horizon(prev, i)
                if cur is not None and not cur.stopped:
                    self._abandon(cur)
                for key in a.keys:
                    a.old[key] = self.doms.last_served.get(key)
                self._begin(a, i)
            elif prev is not None and not prev.horizon_known:
                prev.horizon, prev.horizon_known = i, True
            return
        if cur is None:
            self.marker_notes.append(f"line {self.view.line_of(i)}: {tag} for dev {dev} "
                                     "without a begin")
            return
        cur.end, cur.t_end = i, t
        cur.open_boundary = None
        cur._stats_then = None
        del self._open_m[(dev, kind)]
        if not self.driver:
            self._stop(cur, i)
            self._infer[cur.n] = {key: _Inference(cur.old.get(key)) for key in cur.keys}
            self._to_after(cur)

    def _marker_horizon(self, a: Attach, i: int) -> None:
        """The next attach of a's scope begins at i."""
        if a.end is not None:
            self._horizon(a, i)
        elif a.open_boundary is not None:
            pass  # the boundary came first and is the horizon
        else:
            a.horizon, a.horizon_known = i, True
            if a in self.inside and a.n not in self._open_n():
                self._stop(a, i)

    def _open_n(self) -> set[int]:
        return {m.n for m in self._open_m.values()}

    def _abandon(self, a: Attach) -> None:
        """a's device began another attach of its kind: a never ends."""
        if a.open_boundary is not None:
            a.horizon, a.horizon_known = a.open_boundary, True
            self._stop(a, a.open_boundary)
        elif a.horizon_known:
            self._stop(a, a.horizon)

    def _boundary(self, dev: int, i: int) -> None:
        pend = self._dev_pending.get(dev)
        if not pend:
            return
        keep = []
        open_n = self._open_n()
        for a in pend:
            if a.end is not None:
                if not a.horizon_known or a.horizon > i:
                    if self.driver:
                        a.horizon, a.horizon_known = i, True
                    else:
                        self._horizon(a, i)
                continue                  # settled
            if a.n in open_n:             # may still end: this boundary counts only if not
                if a.open_boundary is None:
                    a.open_boundary = i
                    a._stats_then = (a.commands, a.syncs, a.aborts, a.faults)
                keep.append(a)
                continue
            # abandoned: it never ends, the first boundary after its begin is its horizon
            if not a.horizon_known or a.horizon > i:
                a.horizon, a.horizon_known = i, True
            if not self.driver:
                self._stop(a, a.horizon)
        self._dev_pending[dev] = keep

    # -- the marker windows' new domains --------------------------------------------------------
    def served_after(self, a: Attach, key: Key, dom: Domain) -> None:
        """A served record (xlate, ats) for key inside a's after-phase."""
        inf = self._infer[a.n].get(key)
        if inf is not None and inf.new is None and dom != inf.old:
            inf.new = dom
            a.new_from[key] = "translation"

    def fetch_after(self, a: Attach, rec: Record, k: str) -> None:
        """A ste_fetch / cd_fetch from memory inside a's after-phase."""
        sid = rec.get("sid")
        for key, inf in self._infer[a.n].items():
            if key[0] != sid or inf.new is not None:
                continue
            if k == "ste_fetch" and inf.ste is None:
                inf.ste = layouts.qwords(rec.get("qw")) or None
            elif k == "cd_fetch" and inf.cd is None and (ssid_of(rec) or 0) == (key[1] or 0):
                inf.cd = layouts.qwords(rec.get("qw")) or None

    # -- end of trace ----------------------------------------------------------------------------
    def finish(self, n: int) -> None:
        for a in list(self.inside):
            if not a.horizon_known:
                a.horizon = n
                a.horizon_known = True
            if a.open_boundary is not None and a.open_boundary < a.horizon:
                a.horizon = a.open_boundary
            self._stop(a, a.horizon)
        for a in list(self.after):
            self._horizon(a, n)
        for lst in (self.markers, self.drivers):
            for a in lst:
                if not a.horizon_known:
                    a.horizon, a.horizon_known = n, True
                if a.end is None and a.open_boundary is not None:
                    a.horizon = min(a.horizon, a.open_boundary)
                    if a._stats_then is not None and a.horizon == a.open_boundary:
                        # it never ended: its window stopped at that boundary
                        a.commands, a.syncs, a.aborts, a.faults = a._stats_then
        for a in self.drivers:
            if a.end is None:
                self._label(a)
                a.notes.append("attach never returned (trace ends inside it)")
        for a in self.markers:
            if a.end is None:
                a.notes.append("attach never ended (trace ends inside it)")
        if not self.driver:
            for a in self.markers:
                inf = self._infer.get(a.n)
                if inf is not None:
                    self._settle(a, inf)

    def _settle(self, a: Attach, inf: dict[Key, _Inference]) -> None:
        for key, x in inf.items():
            new = x.new
            if new is None:
                new = _config_domain(self.doms, key, x.ste, x.cd)
                if new is not None:
                    a.new_from[key] = "config"
            if new is None:
                a.notes.append(f"stream {_key_str(key)}: nothing after attach-end shows a "
                               f"domain other than the old one ({x.old}); invariant 1 not "
                               "checkable")
            a.new[key] = new


def driver_returns(attaches: list[Attach]) -> dict[int, list[Attach]]:
    """Record index of each driver window's return -> the windows that return there."""
    ends: dict[int, list[Attach]] = {}
    for a in attaches:
        if a.source == "driver" and a.end is not None:
            ends.setdefault(a.end, []).append(a)
    return ends


def _config_domain(doms: DomainTracker, key: Key, ste: tuple[int, ...] | None,
                   cd: tuple[int, ...] | None) -> Domain | None:
    """The domain the STE (and CD) first fetched after attach-end denote, if the stream was
    ever served by or used it in the trace."""
    ssid = key[1]
    if ste is None:
        return None
    cfg, s2_part = layouts.ste_stage_parts(ste)
    s2 = Domain.stage2(s2_part[1], s2_part[2]) if s2_part is not None else None
    want: Domain
    if cfg in ("abort", "bypass"):
        want = ABORT if cfg == "abort" else BYPASS
    elif cfg == "s2" and s2 is not None:
        want = s2
    elif cfg in ("s1", "nested"):
        if ssid is None and STE["S1CDMax"].of_words(ste) \
                and STE["S1DSS"].of_words(ste) != S1DSS_SSID0:
            return None  # non-PASID traffic bypasses or terminates: leave it to translations
        s1_part = layouts.cd_stage1_part(cd) if cd is not None else None
        if s1_part is None:
            return None
        want = Domain.stage1(s1_part[1], s1_part[2])
        if cfg == "nested":
            if s2 is None or s2.vmid is None or s2.s2ttb is None:
                return None
            want = want.with_stage2(s2.vmid, s2.s2ttb)
    else:
        return None
    return want if want in doms.seen.get(key, ()) else None


class AttachStats:
    """Per judged window: commands, completed syncs, the device's aborts, fault events."""

    def __init__(self, tracker: AttachTracker) -> None:
        self.t = tracker

    def cmd(self, i: int, r: Record) -> None:
        for a in self.t.inside:
            a.commands += 1

    def sync(self, i: int, r: Record) -> None:
        if r.get("state") == "done":
            for a in self.t.inside:
                a.syncs += 1

    def dma(self, i: int, r: Record) -> None:
        if r.get("ok") is False:
            for a in self.t.inside:
                if r.get("dev") == a.dev:
                    a.aborts += 1

    def event(self, i: int, r: Record) -> None:
        sid = r.get("sid")
        for a in self.t.inside:
            if sid in a.sids:
                a.faults += 1
