"""The trace as the analyzer sees it: read once, record by record (the analysis keeps no list
of records), plus what reports need about the few records a finding cites.

`read_records` is the one pass: it yields each valid record with its `dom` read into a
hashable `cosim.arch.domain.Domain` (or None: no domain translated the request), so the rules
only ever compare Domains. `TraceView` holds what the pass learnt that is not a finding (the
header, the problems, the notes, which StreamIDs each device uses) and, for the report, the
time and the surrounding timeline of the records findings cite: those come from a second,
lazy pass over the file that decodes only the lines around them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cosim.arch.domain import Domain, DomainError
from cosim.trace import TraceReader
from cosim.trace.reader import pick

Record = dict[str, Any]
Key = tuple[int, int | None]  # (StreamID, SubstreamID or None for no-PASID traffic)

# Fields printed in hex in the compact timeline: addresses, offsets and raw values.
_HEX_FIELDS = frozenset({"iova", "pa", "addr", "off", "val", "size", "raw", "qw", "value"})
# Kinds written by the endpoint helpers (they carry `dev`); the SMMU's `mmio` has dev 0.
DEVICE_SID_KINDS = frozenset({"dma", "atc_insert", "atc_hit", "atc_inv_rx"})
TIMELINE_RADIUS = 10


def ssid_of(rec: Record) -> int | None:
    s = rec.get("ssid")
    return s if isinstance(s, int) else None


class DomainReader:
    """`dom` objects -> Domains, one Domain per distinct object (a trace names few domains)."""

    def __init__(self) -> None:
        self.known: dict[tuple, Domain] = {}   # tuple(dom.items()) -> its Domain

    def read(self, dom: dict[str, Any]) -> Domain:
        """Raises DomainError for an object that is not a domain."""
        key = tuple(dom.items())
        d = self.known.get(key)
        if d is None:
            d = self.known[key] = Domain.from_record(dom)
        return d


@dataclass
class TraceView:
    path: str
    header: dict[str, Any]
    torn: str | None = None
    problems: list[str] = field(default_factory=list)
    dev_sids: dict[int, list[int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    count: int = 0                       # records read
    _skipped_lines: list[int] = field(default_factory=list)
    # Record index -> (t, timeline lines), for the records findings cite (see `cite`).
    _context: dict[int, tuple[int, list[str]]] = field(default_factory=dict)
    _wanted: set[int] = field(default_factory=set)

    @property
    def caching(self) -> bool:
        return self.header.get("cache_mode") in ("caching", "strict")

    def sids_of(self, dev: Any) -> list[int]:
        return self.dev_sids.get(dev, []) if isinstance(dev, int) else []

    def line_of(self, index: int) -> int:
        """File line number of record `index` (line 1 is the header; bad lines are skipped);
        in a binary trace, its record number (the header is record 1)."""
        line = index + 2
        # Each unparseable line before this record shifts it down by one.
        for skipped in self._skipped_lines:
            if skipped <= line:
                line += 1
            else:
                break
        return line

    def finished(self, reader: TraceReader) -> None:
        """The reader is at the end: take what it found wrong."""
        self.torn = reader.torn
        self.problems = list(reader.problems)
        self._skipped_lines = sorted(reader.skipped_lines)

    # -- cited records -------------------------------------------------------------------------
    def cite(self, index: int) -> None:
        """Ask for record `index`'s time and timeline (read on the first t_of / timeline)."""
        if index not in self._context:
            self._wanted.add(index)

    def t_of(self, index: int) -> int:
        if not 0 <= index < self.count:
            return 0
        return self._lookup(index)[0]

    def timeline(self, index: int, radius: int = TIMELINE_RADIUS) -> list[str]:
        return self._lookup(index)[1] if radius == TIMELINE_RADIUS else \
            self._read_context({index}, radius)[index][1]

    def _lookup(self, index: int) -> tuple[int, list[str]]:
        got = self._context.get(index)
        if got is None:
            self._wanted.add(index)
            self._context.update(self._read_context(self._wanted))
            self._wanted.clear()
            got = self._context[index]
        return got

    def _read_context(self, wanted: set[int], radius: int = TIMELINE_RADIUS
                      ) -> dict[int, tuple[int, list[str]]]:
        """One pass over the file that decodes only the records within `radius` of a wanted
        one (the analysis pass keeps none)."""
        near: dict[int, str] = {}
        times: dict[int, int] = {}
        lo_hi = sorted(wanted)
        want_near = set()
        for w in lo_hi:
            want_near.update(range(max(0, w - radius), min(self.count, w + radius + 1)))
        if want_near:
            doms = DomainReader()
            for i, line, rec in _numbered(self, want_near):
                _read_dom(rec, doms, None)
                t = rec.get("t")
                times[i] = t if isinstance(t, int) else 0
                near[i] = f"#{line} {fmt_t(times[i])} {format_record(rec)}"
        out = {}
        for w in lo_hi:
            lines = [("> " if i == w else "  ") + near[i]
                     for i in range(max(0, w - radius), min(self.count, w + radius + 1))
                     if i in near]
            out[w] = (times.get(w, 0), lines)
        return out

    @property
    def records(self) -> list[Record]:
        """Every record, read again from the file: for tests and tools, never the analysis."""
        return list(read_records(self.path, None, TraceView(self.path, {})))


def _numbered(view: TraceView, indices: set[int]) -> Iterator[tuple[int, int, Record]]:
    """(record index, number, record) of the wanted records, re-reading the file; the records
    the first pass refused are known by number and skipped undecoded."""
    return pick(view.path, set(view._skipped_lines), indices)


def _read_dom(rec: Record, doms: DomainReader, notes: Callable[[str], None] | None) -> None:
    dom = rec.get("dom")
    if dom is None:
        return
    try:
        rec["dom"] = doms.read(dom)
    except DomainError as e:
        if notes is not None:
            notes(f"{e}; read as no domain")
        rec["dom"] = None


def read_records(path: str | os.PathLike[str], reader: TraceReader | None,
                 view: TraceView) -> Iterator[Record]:
    """The valid records of the trace, in order, with `dom` read into Domains; fills in the
    view's header, problems, torn line and domain notes as it goes."""
    own = reader is None
    if reader is None:
        reader = TraceReader(path)
    view.header = reader.header
    doms = DomainReader()
    view._skipped_lines = reader.skipped_lines  # grows as the reader goes: line_of stays right
    n = 0
    try:
        for rec in reader:
            dom = rec.get("dom")
            if dom is not None:
                try:
                    rec["dom"] = doms.read(dom)
                except DomainError as e:
                    view.notes.append(f"line {view.line_of(n)}: {e}; read as no domain")
                    rec["dom"] = None
            n += 1
            yield rec
    finally:
        if own:
            reader.close()
    view.count = n
    view.finished(reader)


def fmt_t(t_ns: int | None) -> str:
    return "?" if t_ns is None else f"{t_ns / 1e9:.6f}s"


def _fmt_value(key: str, v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v).lower() if isinstance(v, bool) else "-"
    if isinstance(v, int) and key in _HEX_FIELDS:
        return hex(v)
    if isinstance(v, list):
        return "[" + ",".join(_fmt_value(key, x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}={_fmt_value(k, x)}" for k, x in v.items()) + "}"
    return str(v)


def format_record(rec: Record) -> str:
    parts = [str(rec.get("k", "?"))]
    for k, v in rec.items():
        # Absent values and raw command words add width without telling the reader anything.
        if k in ("t", "k", "raw") or v is None or v == "":
            continue
        parts.append(f"{k}={_fmt_value(k, v)}")
    return " ".join(parts)


class DeviceSids:
    """dev -> StreamIDs, from the optional header `devices` list and from endpoint records that
    carry both (`dma`, `atc_*`); markers only name the device. When the trace has one stream
    only, a device that never named its SID owns it. Built as the records pass; `final()` is
    the whole trace's answer, `guess()` the best one so far (see engine.Facts)."""

    def __init__(self, header: dict[str, Any]) -> None:
        self.found: dict[int, set[int]] = {}
        for d in header.get("devices") or []:
            if isinstance(d, dict) and isinstance(d.get("dev"), int):
                sid = d.get("sid", d.get("rid"))
                if isinstance(sid, int):
                    self.found.setdefault(d["dev"], set()).add(sid)
        self.all_sids: set[int] = set()
        self.marker_devs: list[int] = []     # devices named by markers, in order
        self._marker_seen: set[int] = set()
        self.link_rid: dict[int, int] = {}   # hint only: the link's device announcements

    def final(self) -> dict[int, list[int]]:
        out = {dev: sorted(s) for dev, s in self.found.items()}
        if len(self.all_sids) == 1:
            only = next(iter(self.all_sids))
            for dev in self.marker_devs:
                if dev not in out:
                    out[dev] = [only]
        return out

    def guess(self, dev: int) -> list[int]:
        """What `final()` will most likely say of dev, from the records so far."""
        s = self.found.get(dev)
        if s:
            return sorted(s)
        if dev in self.link_rid:
            return [self.link_rid[dev]]
        if len(self.all_sids) == 1:
            return [next(iter(self.all_sids))]
        return []

    def guess_dev(self, sid: int) -> int:
        dev = -1
        for d, s in self.found.items():
            if sid in s:
                dev = d
        if dev == -1:
            for d, rid in self.link_rid.items():
                if rid == sid:
                    dev = d
        return dev


def dev_of_sid(dev_sids: dict[int, list[int]], sid: int) -> int:
    """The device using `sid` (the last that names it), -1 if none."""
    dev = -1
    for d, sids in dev_sids.items():
        if sid in sids:
            dev = d
    return dev
