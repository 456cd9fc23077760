"""Chrome trace-event JSON (opens in ui.perfetto.dev and chrome://tracing).

Processes group tracks: streams (one thread per StreamID/SSID, slices named by the domain that
translated), domains (one thread per domain, slices while it served anything), commands (the
command queue and CMD_SYNC waits), markers (one thread per device, attach windows as slices)
and faults (events, failed translations, violations). Timestamps are microseconds.
"""

from __future__ import annotations

import json
from typing import IO, Any

from .analysis import Analysis
from .domains import SERVED_KINDS, dom_of
from .view import TraceView, read_records, ssid_of

PID_STREAMS, PID_DOMAINS, PID_COMMANDS, PID_MARKERS, PID_FAULTS = 1, 2, 3, 4, 5
_PROCESSES = {PID_STREAMS: "streams (sid/ssid)", PID_DOMAINS: "domains",
              PID_COMMANDS: "SMMU commands", PID_MARKERS: "markers", PID_FAULTS: "faults"}
_GAP_NS = 1_000_000  # a domain's slice ends after 1 ms without it translating


class _Tracks:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._tids: dict[tuple[int, str], int] = {}

    def tid(self, pid: int, name: str) -> int:
        key = (pid, name)
        if key not in self._tids:
            self._tids[key] = len(self._tids) + 1
            self.events.append({"ph": "M", "name": "thread_name", "pid": pid,
                                "tid": self._tids[key], "args": {"name": name}})
        return self._tids[key]


def _us(t: int) -> float:
    return t / 1000.0


def build(an: Analysis) -> dict[str, Any]:
    view = an.view
    tr = _Tracks()
    for pid, name in _PROCESSES.items():
        tr.events.append({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": name}})
    runs: dict[tuple[int, str], list[Any]] = {}  # (pid, track) -> [dom, start, last]

    def extend(pid: int, track: str, label: str, t: int) -> None:
        cur = runs.get((pid, track))
        if cur is not None and cur[0] == label and t - cur[2] <= _GAP_NS:
            cur[2] = t
            return
        if cur is not None:
            close(pid, track, cur)
        runs[(pid, track)] = [label, t, t]

    def close(pid: int, track: str, cur: list[Any]) -> None:
        tr.events.append({"ph": "X", "name": cur[0], "pid": pid, "tid": tr.tid(pid, track),
                          "ts": _us(cur[1]), "dur": max(_us(cur[2] - cur[1]), 0.001)})

    sync_wait: dict[Any, int] = {}
    last_t = 0
    # A second streaming pass over the file: the analysis kept no records.
    for r in read_records(view.path, None, TraceView(view.path, {})):
        k = r.get("k")
        t = r.get("t")
        t = t if isinstance(t, int) else 0
        last_t = t
        dom = dom_of(r) if k in SERVED_KINDS else None
        if dom is not None:
            ssid = ssid_of(r)
            stream = f"sid {r.get('sid')}" + ("" if ssid is None else f" ssid {ssid}")
            extend(PID_STREAMS, stream, dom.label(), t)
            extend(PID_DOMAINS, dom.label(), "serving", t)
        if k == "cmd":
            tr.events.append({"ph": "i", "s": "t", "name": str(r.get("op")), "pid": PID_COMMANDS,
                              "tid": tr.tid(PID_COMMANDS, "command queue"), "ts": _us(t),
                              "args": {"idx": r.get("idx"), "f": r.get("f")}})
        elif k == "sync":
            if r.get("state") == "wait":
                sync_wait[r.get("idx")] = t
            else:
                t0 = sync_wait.pop(r.get("idx"), t)
                tr.events.append({"ph": "X", "name": f"CMD_SYNC {r.get('state')}",
                                  "pid": PID_COMMANDS, "tid": tr.tid(PID_COMMANDS, "CMD_SYNC"),
                                  "ts": _us(t0), "dur": max(_us(t - t0), 0.001)})
        elif k == "marker":
            tr.events.append({"ph": "i", "s": "t", "name": str(r.get("tag")), "pid": PID_MARKERS,
                              "tid": tr.tid(PID_MARKERS, f"dev {r.get('dev')}"), "ts": _us(t),
                              "args": {"value": r.get("value"), "label": r.get("label")}})
        elif k == "event" or (k in ("xlate", "dma") and r.get("ok") is False):
            name = str(r.get("name") or r.get("fault") or r.get("err") or k)
            tr.events.append({"ph": "i", "s": "t", "name": name, "pid": PID_FAULTS,
                              "tid": tr.tid(PID_FAULTS, f"sid {r.get('sid')}"), "ts": _us(t),
                              "args": {"addr": r.get("addr", r.get("iova")), "kind": k}})
    for (pid, track), cur in runs.items():
        close(pid, track, cur)
    for a in an.attaches:
        t0 = a.t_begin
        t1 = a.t_end if a.end is not None else last_t
        tr.events.append({"ph": "X", "name": f"{a.kind} #{a.n} ({a.verdict()})",
                          "pid": PID_MARKERS, "tid": tr.tid(PID_MARKERS, f"dev {a.dev} attaches"),
                          "ts": _us(t0), "dur": max(_us(t1 - t0), 0.001),
                          "args": a.to_json(view)})
    for v in an.violations:
        tr.events.append({"ph": "i", "s": "g", "name": f"VIOLATION {v.rule}", "pid": PID_FAULTS,
                          "tid": tr.tid(PID_FAULTS, "violations"), "ts": _us(view.t_of(v.index)),
                          "args": {"message": v.message, "line": view.line_of(v.index)}})
    return {"traceEvents": tr.events, "displayTimeUnit": "ns",
            "otherData": {"verdict": an.verdict, "records": view.count}}


def dump(an: Analysis, f: IO[str]) -> None:
    json.dump(build(an), f, default=str)


def write(an: Analysis, path: str) -> None:
    with open(path, "w") as f:
        dump(an, f)
