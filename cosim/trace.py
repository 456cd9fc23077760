"""The trace: an append-only stream of JSON-lines records written by the model.

This module is the boundary between the model and the analyzer: the model writes through
`TraceWriter`, the analyzer reads through `read_trace`, and neither sees the other.
Every record is one line `{"t": <ns since trace start>, "k": <kind>, ...fields}`; the first
line is the header `{"k": "header", "schema": SCHEMA, ...}`. Kinds and fields: docs/trace.md.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cosim.arch.domain import Domain

SCHEMA = 1


class TraceError(Exception):
    """The trace cannot be read (missing, not a trace, wrong schema)."""


class TraceWriter:
    """Buffered JSON-lines writer; flushes whole lines so a crash leaves at most one torn record."""

    def __init__(self, path: str | os.PathLike[str] | None, flush_every: int = 256,
                 **header: Any) -> None:
        self.path = path
        self.enabled = path is not None
        self._buf: list[str] = []
        self._flush_every = flush_every
        self._t0 = time.monotonic_ns()
        self.count = 0
        self._fd = -1
        if self.enabled:
            self._fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
                               0o644)
            self.emit("header", schema=SCHEMA, wall=time.time(), **header)
            self.flush()

    def now(self) -> int:
        return time.monotonic_ns() - self._t0

    def emit(self, kind: str, **fields: Any) -> None:
        if not self.enabled:
            return
        rec = {"t": self.now(), "k": kind}
        rec.update(fields)
        self._buf.append(json.dumps(rec, separators=(",", ":"), default=_default))
        self.count += 1
        if len(self._buf) >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        if self._buf and self._fd >= 0:
            data = ("\n".join(self._buf) + "\n").encode()
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            self._buf.clear()

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1


def _default(obj: Any) -> Any:
    if isinstance(obj, Domain):
        return obj.to_record()
    if isinstance(obj, bytes | bytearray):
        return obj.hex()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@dataclass
class Trace:
    header: dict[str, Any]
    records: list[dict[str, Any]]
    torn: str | None = None  # the torn last line, when the writer died mid-record
    problems: list[str] = field(default_factory=list)


def iter_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield records in order; a torn *last* line is skipped (read_trace reports it)."""
    yield from read_trace(path).records


def read_trace(path: str | os.PathLike[str]) -> Trace:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise TraceError(f"cannot read trace {path}: {e.strerror}") from None
    lines = raw.split(b"\n")
    torn = None
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        torn = lines.pop().decode(errors="replace")
    if not lines:
        raise TraceError(f"{path} is empty: not a cosim trace")
    try:
        header = json.loads(lines[0])
    except ValueError:
        raise TraceError(f"{path}: first line is not JSON: not a cosim trace") from None
    if not isinstance(header, dict) or header.get("k") != "header":
        raise TraceError(f"{path}: no trace header on the first line: not a cosim trace")
    if header.get("schema") != SCHEMA:
        raise TraceError(f"{path}: trace schema {header.get('schema')!r}, "
                         f"this cosim reads schema {SCHEMA}")
    records = []
    problems = []
    for n, line in enumerate(lines[1:], start=2):
        try:
            records.append(json.loads(line))
        except ValueError:
            problems.append(f"line {n}: not a JSON record")
    return Trace(header, records, torn, problems)
