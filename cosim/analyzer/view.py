"""The trace as the analyzer sees it: records in order, plus the cross-references every rule
needs (which StreamIDs a device uses, record line numbers, compact record formatting).

Every record's `dom` is read here, once, into a hashable `cosim.arch.domain.Domain` (or None:
no domain translated the request); the rules only ever compare Domains."""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from cosim.arch.domain import Domain, DomainError
from cosim.trace import Trace

Record = dict[str, Any]
Key = tuple[int, int | None]  # (StreamID, SubstreamID or None for no-PASID traffic)

# Fields printed in hex in the compact timeline: addresses, offsets and raw values.
_HEX_FIELDS = frozenset({"iova", "pa", "addr", "off", "val", "size", "raw", "qw", "value"})
# Kinds written by the endpoint helpers (they carry `dev`); the SMMU's `mmio` has dev 0.
_DEVICE_SID_KINDS = ("dma", "atc_insert", "atc_hit", "atc_inv_rx")
_LINE_RE = re.compile(r"line (\d+):")


def ssid_of(rec: Record) -> int | None:
    s = rec.get("ssid")
    return s if isinstance(s, int) else None


@dataclass
class TraceView:
    header: dict[str, Any]
    records: list[Record]
    torn: str | None = None
    problems: list[str] = field(default_factory=list)
    dev_sids: dict[int, list[int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _skipped_lines: list[int] = field(default_factory=list)

    @classmethod
    def from_trace(cls, trace: Trace) -> TraceView:
        view = cls(trace.header, trace.records, trace.torn, list(trace.problems))
        view._skipped_lines = sorted(int(m.group(1)) for p in trace.problems
                                     if (m := _LINE_RE.match(p)))
        view.dev_sids = _device_sids(trace.header, trace.records)
        view._read_domains()
        return view

    def _read_domains(self) -> None:
        """Replace each record's `dom` object by its Domain; one that is not a domain object
        is noted and read as no domain, so the rest of the trace is still analysed."""
        for i, rec in enumerate(self.records):
            dom = rec.get("dom")
            if dom is None or isinstance(dom, Domain):
                continue
            try:
                rec["dom"] = Domain.from_record(dom)
            except DomainError as e:
                self.notes.append(f"line {self.line_of(i)}: {e}; read as no domain")
                rec["dom"] = None

    @property
    def caching(self) -> bool:
        return self.header.get("cache_mode") in ("caching", "strict")

    def sids_of(self, dev: Any) -> list[int]:
        return self.dev_sids.get(dev, []) if isinstance(dev, int) else []

    def line_of(self, index: int) -> int:
        """File line number of record `index` (line 1 is the header; bad lines are skipped)."""
        line = index + 2
        # Each unparseable line before this record shifts it down by one.
        for skipped in self._skipped_lines:
            if skipped <= line:
                line += 1
            else:
                break
        return line

    def t_of(self, index: int) -> int:
        t = self.records[index].get("t") if 0 <= index < len(self.records) else None
        return t if isinstance(t, int) else 0

    def timeline(self, index: int, radius: int = 10) -> list[str]:
        lo, hi = max(0, index - radius), min(len(self.records), index + radius + 1)
        return [("> " if i == index else "  ") + self.format(i) for i in range(lo, hi)]

    def format(self, index: int) -> str:
        rec = format_record(self.records[index])
        return f"#{self.line_of(index)} {fmt_t(self.t_of(index))} {rec}"


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


def _device_sids(header: dict[str, Any], records: list[Record]) -> dict[int, list[int]]:
    """dev -> StreamIDs, from the optional header `devices` list and from endpoint records that
    carry both (`dma`, `atc_*`); markers only name the device."""
    found: dict[int, set[int]] = defaultdict(set)
    for d in header.get("devices") or []:
        if isinstance(d, dict) and isinstance(d.get("dev"), int):
            sid = d.get("sid", d.get("rid"))
            if isinstance(sid, int):
                found[d["dev"]].add(sid)
    all_sids: set[int] = set()
    for rec in records:
        sid = rec.get("sid")
        if not isinstance(sid, int):
            continue
        all_sids.add(sid)
        if rec.get("k") in _DEVICE_SID_KINDS and isinstance(rec.get("dev"), int):
            found[rec["dev"]].add(sid)
    out = {dev: sorted(s) for dev, s in found.items()}
    if len(all_sids) == 1:
        # One stream in the whole trace: any device that never named its SID owns it.
        only = next(iter(all_sids))
        for rec in records:
            dev = rec.get("dev")
            if rec.get("k") == "marker" and isinstance(dev, int) and dev not in out:
                out[dev] = [only]
    return out


class IndexList:
    """Sorted record indices with bisect helpers (records are appended in trace order)."""

    __slots__ = ("idx",)

    def __init__(self) -> None:
        self.idx: list[int] = []

    def append(self, i: int) -> None:
        self.idx.append(i)

    def between(self, lo: int, hi: int) -> list[int]:
        """Indices i with lo < i < hi."""
        a = bisect.bisect_right(self.idx, lo)
        b = bisect.bisect_left(self.idx, hi)
        return self.idx[a:b]

    def last_before(self, hi: int) -> int | None:
        b = bisect.bisect_left(self.idx, hi)
        return self.idx[b - 1] if b else None
