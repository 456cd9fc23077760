"""The analysis's side of the trace: read a trace file, record by record, validated.

Every record is checked against the schema (cosim/trace/schema.py) before anyone sees it; one
that does not match becomes a problem line ("line 7: xlate.iova is 'x', expected an integer
>= 0") instead of a record. A schema-1 trace is upgraded to schema 2 as it is read. The file
is read line by line, so `iter_records` streams.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Any

from cosim.arch.domain import DomainError

from .schema import (
    BY_KIND,
    DOM_KINDS,
    ENVELOPE,
    READABLE,
    _show,
    matcher,
    matches,
    problem,
    upgrade_v1,
)

try:  # a C decoder, several times faster than the standard library's on trace lines
    from orjson import loads
except ImportError:  # pragma: no cover - same records, slower
    loads = json.loads
_loads = loads


class TraceError(Exception):
    """The trace cannot be read (missing, not a trace, wrong schema)."""


@dataclass
class Trace:
    header: dict[str, Any]
    records: list[dict[str, Any]]
    torn: str | None = None  # the torn last line, when the writer died mid-record
    problems: list[str] = field(default_factory=list)


class TraceReader:
    """Open a trace and read its header; iterating yields the valid records in order.

    After iteration, `problems` lists the lines that were not handed out and `torn` the torn
    last line, if any (a writer that died mid-record leaves one).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self.problems: list[str] = []
        self.skipped_lines: list[int] = []  # line numbers of the records left out, in order
        self.torn: str | None = None
        try:
            self._f: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by close()/__exit__
        except OSError as e:
            raise TraceError(f"cannot read trace {path}: {e.strerror}") from None
        try:
            self.header = self._read_header()
        except BaseException:
            self._f.close()
            raise
        self.schema: int = self.header["schema"]

    def _read_header(self) -> dict[str, Any]:
        path = self.path
        first = self._f.readline()
        if not first.endswith(b"\n"):
            # Nothing, or only a torn first line: no header was ever completed.
            raise TraceError(f"{path} is empty: not a cosim trace")
        try:
            header = json.loads(first)
        except ValueError:
            raise TraceError(f"{path}: first line is not JSON: not a cosim trace") from None
        if not isinstance(header, dict) or header.get("k") != "header":
            raise TraceError(f"{path}: no trace header on the first line: not a cosim trace")
        schema = header.get("schema")
        if type(schema) is not int or schema not in READABLE:
            raise TraceError(f"{path}: trace schema {schema!r}, this cosim reads schema "
                             + " and ".join(str(s) for s in READABLE))
        # A bad header field is a problem and is dropped; the header stays usable. These
        # problems carry no "line N:" prefix: that prefix marks a record left out.
        for f in ENVELOPE[:1] + BY_KIND["header"].fields:
            if f.name not in header:
                if f.required:
                    self.problems.append(f"header.{f.name} is missing")
            elif not f.type.ok(header[f.name]):
                self.problems.append(f"header.{f.name} is {_show(header[f.name])}, "
                                     f"expected {f.type.why(header[f.name])}")
                del header[f.name]
        return header

    def __iter__(self) -> Iterator[dict[str, Any]]:
        problems = self.problems
        skipped = self.skipped_lines
        v1 = self.schema == 1
        loads = _loads
        plain = matcher()
        for n, line in enumerate(self._f, start=2):
            if line[-1:] != b"\n":
                self.torn = line.decode(errors="replace")
                break
            try:
                rec = loads(line)
            except ValueError:
                try:  # what the standard decoder takes and orjson does not (NaN, Infinity)
                    rec = json.loads(line)
                except ValueError:
                    problems.append(f"line {n}: not a JSON record")
                    skipped.append(n)
                    continue
            if type(rec) is not dict:
                problems.append(f"line {n}: not a JSON object")
                skipped.append(n)
                continue
            if v1 and rec.get("k") in DOM_KINDS:
                try:
                    upgrade_v1(rec)
                except DomainError as e:
                    # DomainError says "dom '<text>' is not a domain label".
                    problems.append(f"line {n}: {rec['k']}.{e} (schema 1)")
                    skipped.append(n)
                    continue
            kind = rec.get("k")
            fn = plain.get(kind) if type(kind) is str else None  # most kinds: no tag
            if fn(rec) if fn is not None else matches(rec):
                yield rec
                continue
            why = problem(rec)
            if why is not None and loads is not json.loads:
                # orjson reads an integer beyond 64 bits (a whole-space size, 2^64) as a
                # float: the standard decoder decides, as it always did.
                rec = json.loads(line)
                if v1 and rec.get("k") in DOM_KINDS:
                    upgrade_v1(rec)
                why = problem(rec)
            if why is not None:
                problems.append(f"line {n}: {why}")
                skipped.append(n)
                continue
            yield rec
        self.close()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> TraceReader:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def iter_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the valid records in order, streaming; bad lines and a torn last line are
    skipped (read_trace, or a TraceReader, reports them)."""
    with TraceReader(path) as reader:
        yield from reader


def read_trace(path: str | os.PathLike[str]) -> Trace:
    with TraceReader(path) as reader:
        records = list(reader)
        return Trace(reader.header, records, reader.torn, reader.problems)
