"""The analysis's side of the trace: read a trace file, record by record, validated.

Both formats are read, told apart by the file's first bytes (never its name): the binary one
(cosim/trace/framing.py's MAGIC, then zstd frames of JSON lines) and plain JSON lines. Every
record is checked against the schema (cosim/trace/schema.py) before anyone sees it; one that
does not match becomes a problem line ("line 7: xlate.iova is 'x', expected an integer >= 0";
"record 7: ..." in a binary trace, where the header is record 1 as it is line 1 of JSON lines)
instead of a record. A schema-1 trace is upgraded to schema 2 as it is read. The file is read
a line or a frame at a time, so `iter_records` streams.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Any

import zstandard

from cosim.arch.domain import DomainError

from . import framing
from .follow import Growing
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
    torn: str | None = None  # the torn last line (frame), when the writer died mid-record
    problems: list[str] = field(default_factory=list)


class TraceReader:
    """Open a trace and read its header; iterating yields the valid records in order.

    After iteration, `problems` lists the lines that were not handed out and `torn` the torn
    last line, if any (a writer that died mid-record leaves one); in a binary trace, `torn`
    describes the torn last frame, whose records are all lost.
    """

    def __init__(self, path: str | os.PathLike[str],
                 ended: Callable[[], bool] | None = None) -> None:
        # `ended`: the file is still being written until ended() is true (cosim.trace.follow).
        self.path = path
        self._ended = ended
        self.problems: list[str] = []
        self.skipped_lines: list[int] = []  # line numbers of the records left out, in order
        self.torn: str | None = None
        self.binary = False      # the binary format (else JSON lines)
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
        source: framing.Readable = self._f
        growing = None
        if self._ended is not None:
            source = growing = Growing(self._f, self._ended)
        magic = source.read(len(framing.MAGIC))
        if magic[:len(framing.MAGIC_PREFIX)] == framing.MAGIC_PREFIX:
            if magic != framing.MAGIC:
                raise TraceError(f"{path}: bad magic {magic!r}: not a cosim binary trace "
                                 "this cosim reads (framing version "
                                 f"{framing.MAGIC[len(framing.MAGIC_PREFIX)]})")
            self.binary = True
            origin = source.read(framing.ORIGIN.size)
            if len(origin) < framing.ORIGIN.size:
                raise TraceError(f"{path} is empty: not a cosim trace")
            (self._t0,) = framing.ORIGIN.unpack(origin)
            self._zd = zstandard.ZstdDecompressor()
            self._frames = framing.frames(source, len(magic) + len(origin))
            first = self._first_line(path)
        else:
            if growing is not None:
                growing.wait()   # JSON lines are read once they are all written
            self._f.seek(0)
            first = self._f.readline()
        return self._parse_header(first)

    def _first_line(self, path: str | os.PathLike[str]) -> bytes:
        """The binary trace's header: the first record of its first frame, which the writer
        writes alone; any other records of that frame are kept for iteration."""
        frame = next(self._frames, None)
        if frame is None or frame.torn:
            raise TraceError(f"{path} is empty: not a cosim trace")
        items, why = self._load(frame)
        recs = self._build(items) if items is not None else None
        if not recs:
            raise TraceError(f"{path}: the header's frame is {why or 'empty'}: "
                             "not a cosim trace")
        self._pending: list[Any] = items[1:]  # type: ignore[index]
        return json.dumps(recs[0]).encode() + b"\n"

    def _load(self, frame: framing.Frame, std: bool = False) -> tuple[list[Any] | None, str]:
        """A frame's [t, k, fields] items (wide integers patched in), or None and what is
        wrong with it. `std`: decode with the standard decoder (see _records)."""
        try:
            data = framing.decompress(frame, self._zd)
        except zstandard.ZstdError as e:
            return None, f"a corrupt frame of {frame.count} records ({e})"
        flags = frame.flags
        try:
            arr = json.loads(data) if std or flags & framing.STANDARD else _loads(data)
        except ValueError:
            return None, f"a frame of {frame.count} records that is not JSON"
        if flags & framing.WIDE:
            try:
                arr, patches = arr
                for i, name, digits in patches:
                    arr[i][2][name] = int(digits)
            except (TypeError, ValueError, IndexError, KeyError):
                return None, "a wide frame that is not [records, patches]"
        if type(arr) is not list or len(arr) != frame.count:
            return None, f"a frame whose records are not the {frame.count} its header says"
        return arr, ""

    def _build(self, items: list[Any]) -> list[dict[str, Any]] | None:
        """JSON-lines records of a frame's items (None: an item is not [t, k, fields])."""
        t0 = self._t0
        out = []
        try:
            for t, k, rec in items:
                rec["t"] = t - t0 if type(t) is int else t
                rec["k"] = k
                out.append(rec)
        except (TypeError, ValueError):
            return None
        return out

    def _parse_header(self, first: bytes) -> dict[str, Any]:
        path = self.path
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
        if self.binary:
            yield from self._binary()
        else:
            yield from self._records(self._f, 2)
        self.close()

    def _binary(self) -> Iterator[dict[str, Any]]:
        """The valid records of a binary trace: _records' checks, on each frame's items."""
        problems = self.problems
        skipped = self.skipped_lines
        v1 = self.schema == 1
        plain = matcher()
        t0 = self._t0
        std_decoder = _loads is not json.loads
        n = 2
        frame: framing.Frame | None = None
        items: list[Any] | None = self._pending
        frames = self._frames
        why = ""
        while True:
            if items is None:
                assert frame is not None
                problems.append(f"record {n}: {why}")
                skipped.extend(range(n, n + frame.count))
                n += frame.count
                items = []
            first = n
            std: list[dict[str, Any]] | None = None
            for item in items:
                try:
                    # The record is its fields object, the envelope added (at the end: only
                    # the exporter orders keys, and puts `t` and `k` first).
                    t, kind, rec = item
                    rec["t"] = t - t0 if type(t) is int else t
                    rec["k"] = kind
                except (TypeError, ValueError):
                    problems.append(f"record {n}: not a [t, k, fields] record")
                    skipped.append(n)
                    n += 1
                    continue
                if v1 and kind in DOM_KINDS:
                    try:
                        upgrade_v1(rec)
                    except DomainError as e:
                        problems.append(f"record {n}: {kind}.{e} (schema 1)")
                        skipped.append(n)
                        n += 1
                        continue
                try:
                    fn = plain[kind]   # most kinds: no tag
                except (KeyError, TypeError):  # a tagged kind, an unknown or unhashable one
                    fn = matches
                if fn(rec):
                    n += 1
                    yield rec
                    continue
                why = problem(rec)
                if why is not None and std_decoder and frame is not None \
                        and not frame.flags & framing.STANDARD:
                    # A frame not written by this writer may hold an integer beyond 64 bits
                    # that orjson reads as a float: the standard decoder decides.
                    if std is None:
                        got = self._load(frame, std=True)[0]
                        std = (self._build(got) if got is not None else None) or []
                    if n - first < len(std):
                        rec = std[n - first]
                        if v1 and rec.get("k") in DOM_KINDS:
                            upgrade_v1(rec)
                        why = problem(rec)
                if why is not None:
                    problems.append(f"record {n}: {why}")
                    skipped.append(n)
                    n += 1
                    continue
                n += 1
                yield rec
            frame = next(frames, None)
            if frame is None:
                return
            if frame.torn:
                self.torn = (f"frame at byte {frame.offset}: {len(frame.payload)} of "
                             f"{frame.size} bytes written ({frame.count} records lost)"
                             if frame.count else
                             f"frame at byte {frame.offset}: its header cut short")
                return
            items, why = self._load(frame)

    def _records(self, lines: Iterable[bytes], n: int) -> Generator[dict[str, Any], None, int]:
        """The valid records of `lines`, numbered from `n`; returns the next number."""
        problems = self.problems
        skipped = self.skipped_lines
        v1 = self.schema == 1
        loads = _loads
        plain = matcher()
        for line in lines:
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
                    n += 1
                    continue
            if type(rec) is not dict:
                problems.append(f"line {n}: not a JSON object")
                skipped.append(n)
                n += 1
                continue
            if v1 and rec.get("k") in DOM_KINDS:
                try:
                    upgrade_v1(rec)
                except DomainError as e:
                    # DomainError says "dom '<text>' is not a domain label".
                    problems.append(f"line {n}: {rec['k']}.{e} (schema 1)")
                    skipped.append(n)
                    n += 1
                    continue
            try:
                fn = plain[rec["k"]]   # most kinds: no tag
            except (KeyError, TypeError):  # no `k`, a tagged kind, an unknown or unhashable one
                fn = matches
            if fn(rec):
                n += 1
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
                n += 1
                continue
            n += 1
            yield rec
        return n

    def pick(self, skipped: set[int], indices: set[int]
             ) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """`pick` (below) on this reader, instead of iterating."""
        last = max(indices)
        v1 = self.schema == 1
        i = -1
        if not self.binary:
            for n, line in enumerate(self._f, start=2):
                if n in skipped or line[-1:] != b"\n":
                    continue
                i += 1
                if i in indices:
                    rec = json.loads(line)  # few records: the decoder the reader falls back on
                    if v1 and rec.get("k") in DOM_KINDS:
                        upgrade_v1(rec)
                    yield i, n, rec
                if i >= last:
                    return
            return
        n, recs = 2, self._build(self._pending) or []
        for frame in itertools.chain([None], self._frames):
            if frame is not None:
                if frame.torn:
                    return
                # The valid records of this frame: all but those the first reading left out.
                valid = frame.count - sum(1 for m in range(n, n + frame.count) if m in skipped)
                if not any(j in indices for j in range(i + 1, i + 1 + valid)):
                    n, i = n + frame.count, i + valid   # nothing wanted here: not decoded
                    if i >= last:
                        return
                    continue
                got = self._load(frame, std=True)[0]
                recs = (self._build(got) if got is not None else None) or []
            for rec in recs:
                if n not in skipped:
                    i += 1
                    if i in indices:
                        if v1 and rec.get("k") in DOM_KINDS:
                            upgrade_v1(rec)
                        yield i, n, rec
                    if i >= last:
                        return
                n += 1

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


def numbered(reader: TraceReader) -> Iterator[tuple[int, dict[str, Any]]]:
    """(number, record) of each valid record: its line in JSON lines, its place in a binary
    trace (the header is 1 in both), the number problem lines and findings cite."""
    skipped = reader.skipped_lines
    n, j = 1, 0
    for rec in reader:
        n += 1
        # The reader notes a record it leaves out before it yields the next one.
        while j < len(skipped) and skipped[j] == n:
            n += 1
            j += 1
        yield n, rec


def pick(path: str | os.PathLike[str], skipped: set[int], indices: set[int]
         ) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """(index, number, record) of the valid records at the wanted `indices` (0: the first
    after the header), reading the file again: the cited records of a finding. `skipped`: the
    numbers the first reading left out (`skipped_lines`), passed over undecoded, as is
    every record not wanted (in a binary trace, every frame without a wanted record)."""
    if not indices:
        return
    with TraceReader(path) as reader:
        yield from reader.pick(skipped, indices)
