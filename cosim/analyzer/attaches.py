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
from typing import Any

from cosim.arch.domain import ABORT, BYPASS, Domain
from cosim.arch.ste import S1DSS_SSID0, STE

from . import layouts
from .domains import DomainIndex, dom_of, label
from .view import Key, TraceView, ssid_of

FAMILIES = {"attach-begin": ("attach", True), "attach-end": ("attach", False),
            "pasid-attach-begin": ("pasid-attach", True),
            "pasid-attach-end": ("pasid-attach", False)}


@dataclass
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

    @property
    def keys(self) -> list[Key]:
        return [(sid, self.ssid) for sid in self.sids]

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
        t0 = view.t_of(self.begin)
        return {
            "n": self.n, "dev": self.dev, "kind": self.kind, "value": self.value,
            "label": self.label, "sids": self.sids, "ssid": self.ssid,
            "begin_t": t0, "end_t": view.t_of(self.end) if self.end is not None else None,
            "duration_ns": view.t_of(self.end) - t0 if self.end is not None else None,
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


def _key_str(k: Key) -> str:
    return f"{k[0]}" if k[1] is None else f"{k[0]}/{k[1]}"


def find_attaches(view: TraceView) -> list[Attach]:
    """Driver windows when the trace has them (labelled by the markers), else marker windows."""
    markers = find_marker_attaches(view)
    if not any(r.get("k") in ("drv", "drv_armed") for r in view.records):
        return markers
    drv = find_driver_attaches(view)
    _label(drv, markers)
    return drv


# A driver operation and the attach kind it is judged as.
DRV_KINDS = {"attach": "attach", "pasid-attach": "pasid-attach", "pasid-remove": "pasid-remove"}


def find_driver_attaches(view: TraceView) -> list[Attach]:
    """One window per driver entry point call: `drv` begin .. the matching `drv` end."""
    sid_dev = {sid: dev for dev, sids in view.dev_sids.items() for sid in sids}
    out: list[Attach] = []
    open_: dict[tuple[str, Key], Attach] = {}
    last_begin: dict[Key, list[Attach]] = {}
    for i, rec in enumerate(view.records):
        if rec.get("k") != "drv":
            continue
        sid, ssid = rec["sid"], ssid_of(rec)
        key = (sid, ssid)
        kind = DRV_KINDS[rec["op"]]
        if rec["phase"] == "begin":
            cur = open_.get((kind, key))
            if cur is not None:
                cur.notes.append(f"no return before the next {kind} entry (line "
                                 f"{view.line_of(i)})")
            a = Attach(len(out) + 1, sid_dev.get(sid, -1), kind, i, None, sids=[sid],
                       ssid=ssid, source="driver", target=rec["target"])
            a.old[key] = dom_of(rec)
            out.append(a)
            open_[(kind, key)] = a
            last_begin.setdefault(key, []).append(a)
            continue
        cur = open_.pop((kind, key), None)
        if cur is None:
            view.notes.append(f"line {view.line_of(i)}: driver {kind} return for "
                              f"{_key_str(key)} without its entry")
            continue
        cur.end = i
        cur.ret = rec.get("ret")
        cur.new[key] = dom_of(rec)
        cur.new_from[key] = "driver"
        if cur.ret:
            cur.notes.append(f"the driver's {kind} returned {cur.ret}")
    # Every domain change goes through one of these entry points, so a window's "after" lasts
    # until the next one for the same stream begins.
    n = len(view.records)
    for wins in last_begin.values():
        for a, b in zip(wins, wins[1:] + [None], strict=True):
            a.horizon = b.begin if b is not None else n
    for a in out:
        if a.end is None:
            a.notes.append("attach never returned (trace ends inside it)")
    return out


def driver_returns(attaches: list[Attach]) -> dict[int, list[Attach]]:
    """Record index of each driver window's return -> the windows that return there."""
    ends: dict[int, list[Attach]] = {}
    for a in attaches:
        if a.source == "driver" and a.end is not None:
            ends.setdefault(a.end, []).append(a)
    return ends


def _label(drv: list[Attach], markers: list[Attach]) -> None:
    """Name each driver window after the userspace marker pair around it, if any."""
    for a in drv:
        for m in markers:
            if m.dev == a.dev and m.kind == a.kind and m.begin < a.begin \
                    and (m.end is None or (a.end is not None and a.end < m.end)):
                a.value, a.label = m.value, m.label
                break


def find_marker_attaches(view: TraceView) -> list[Attach]:
    out: list[Attach] = []
    open_: dict[tuple[int, str], Attach] = {}
    for i, rec in enumerate(view.records):
        if rec.get("k") != "marker" or rec.get("tag") not in FAMILIES:
            continue
        dev = rec.get("dev")
        if not isinstance(dev, int):
            continue
        kind, begins = FAMILIES[rec["tag"]]
        cur = open_.get((dev, kind))
        if begins:
            if cur is not None:
                cur.notes.append(f"no {kind}-end before the next {kind}-begin (line "
                                 f"{view.line_of(i)})")
            ssid = rec.get("value") if kind == "pasid-attach" else None
            a = Attach(len(out) + 1, dev, kind, i, None, rec.get("value"), rec.get("label"),
                       view.sids_of(dev), ssid if isinstance(ssid, int) else None)
            if not a.sids:
                a.notes.append(f"device {dev} never named its StreamID: streams not checked")
            out.append(a)
            open_[(dev, kind)] = a
        elif cur is None:
            view.notes.append(f"line {view.line_of(i)}: {rec['tag']} for dev {dev} without a "
                              "begin")
        else:
            cur.end = i
            del open_[(dev, kind)]
    # An attach's "after" lasts until the next attach of the same scope begins, or until the
    # device's test ends or another begins: set-up and teardown between tests (closing VFIO,
    # new HWPTs) change domains outside any marked attach and are not judged.
    n = len(view.records)
    bounds: dict[int, list[int]] = {}
    for i, rec in enumerate(view.records):
        if rec.get("k") == "marker" and rec.get("tag") in TEST_BOUNDARIES \
                and isinstance(rec.get("dev"), int):
            bounds.setdefault(rec["dev"], []).append(i)
    for a in out:
        a.horizon = n
        for b in out:
            if b.begin > a.begin and b.dev == a.dev and b.kind == a.kind and b.ssid == a.ssid:
                a.horizon = b.begin
                break
        for i in bounds.get(a.dev, ()):
            if i > (a.end if a.end is not None else a.begin):
                a.horizon = min(a.horizon, i)
                break
        if a.end is None:
            a.notes.append("attach never ended (trace ends inside it)")
    return out


def infer_domains(view: TraceView, doms: DomainIndex, attaches: list[Attach]) -> None:
    for a in attaches:
        if a.source == "marker":
            _infer_marker_domains(view, doms, a)


def _infer_marker_domains(view: TraceView, doms: DomainIndex, a: Attach) -> None:
    """Old = the last domain that served the stream before attach-begin; new = the first other
    domain that serves it after attach-end, or, when no translation shows one, the domain the
    configuration fetched after attach-end denotes (only if that domain appears for the stream
    in the trace: the STE/CD alone cannot say which TTB walks an address, so a domain the
    SMMU never reported can never invent a change)."""
    for key in a.keys:
        old = doms.last_served_before(view, key, a.begin)
        a.old[key] = old
        if a.end is None:
            continue
        new, source = None, ""
        lst = doms.served.get(key)
        for j in (lst.between(a.end, a.horizon) if lst else []):
            d = dom_of(view.records[j])
            if d != old:
                new, source = d, "translation"
                break
        if new is None:
            new = _config_domain(view, doms, key, a.end, a.horizon)
            source = "config" if new is not None else ""
        if new is None:
            a.notes.append(f"stream {_key_str(key)}: nothing after attach-end shows a domain "
                           f"other than the old one ({old}); invariant 1 not checkable")
        a.new[key] = new
        if source:
            a.new_from[key] = source


def _config_domain(view: TraceView, doms: DomainIndex, key: Key, lo: int,
                   hi: int) -> Domain | None:
    sid, ssid = key
    ste = cd = None
    for j in range(lo + 1, hi):
        r = view.records[j]
        k = r.get("k")
        if r.get("sid") != sid or r.get("cached"):
            continue
        if k == "ste_fetch" and ste is None:
            ste = layouts.qwords(r.get("qw"))
        elif k == "cd_fetch" and cd is None and (ssid_of(r) or 0) == (ssid or 0):
            cd = layouts.qwords(r.get("qw"))
        if ste is not None and cd is not None:
            break
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


def attach_stats(view: TraceView, attaches: list[Attach]) -> None:
    for a in attaches:
        sids = set(a.sids)
        for j in range(a.begin + 1, a.stop):
            r = view.records[j]
            k = r.get("k")
            if k == "cmd":
                a.commands += 1
            elif k == "sync" and r.get("state") == "done":
                a.syncs += 1
            elif k == "dma" and r.get("dev") == a.dev and r.get("ok") is False:
                a.aborts += 1
            elif k == "event" and r.get("sid") in sids:
                a.faults += 1
