"""The model's side of the trace: `TraceWriter` (JSON lines) and `BinaryTraceWriter` (the same
records in zstd frames, cosim/trace/framing.py), both buffered.

Every record is one JSON object `{"t": <ns since trace start>, "k": <kind>, ...fields}`; the
first is the header `{"k": "header", "schema": SCHEMA, ...}`. With checking on (`check=True`,
or `COSIM_TRACE_CHECK=1` in the environment, which the test suite sets) every record is checked
against the schema before it is written; off, `emit` does no checking at all.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Literal

import orjson

from cosim.arch.domain import Domain

from . import framing
from .schema import SCHEMA, check_written
from .sink import checking

Format = Literal["cst", "jsonl"]
FORMATS: tuple[Format, ...] = ("cst", "jsonl")
# orjson would write a Domain (a dataclass) field by field: `_default` writes its record
# (the unchecked binary emitter hands orjson the record already encoded instead).
_OPTS = orjson.OPT_PASSTHROUGH_DATACLASS


def encode(rec: dict[str, Any]) -> bytes:
    """One record as its JSON line (without the newline)."""
    try:
        return orjson.dumps(rec, default=_default, option=_OPTS)
    except orjson.JSONEncodeError:
        # An integer beyond 64 bits (a whole-space size, 2^64): the standard encoder.
        return json.dumps(rec, separators=(",", ":"), default=_default).encode()


class TraceWriter:
    """Buffered JSON-lines writer; flushes whole lines so a crash leaves at most one torn record.

    `path` None: a disabled writer that writes nothing (and, with checking on, still checks).
    `copy_header`: write this header record (another trace's, as read) instead of a new one.
    """

    def __init__(self, path: str | os.PathLike[str] | None, flush_every: int = 256,
                 check: bool | None = None, copy_header: dict[str, Any] | None = None,
                 **header: Any) -> None:
        self.path = path
        self.enabled = path is not None
        self.check = checking(check)
        self._buf: list[bytes] = []
        self._flush_every = flush_every
        self._t0 = time.monotonic_ns()
        self.count = 0
        self._fd = -1
        if self.check:
            # Per instance, so a writer without checking pays nothing for it on the hot path.
            self.emit = self._emit_checked  # type: ignore[method-assign]
        if self.enabled:
            self._fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
                               0o644)
            self._start()
            if copy_header is not None:
                self.write_record(copy_header)
            else:
                self.emit("header", schema=SCHEMA, wall=time.time(), **header)
            self.flush()

    def _start(self) -> None:
        """Write what precedes the records (nothing for JSON lines)."""

    def now(self) -> int:
        return time.monotonic_ns() - self._t0

    def emit(self, kind: str, **fields: Any) -> None:
        if not self.enabled:
            return
        rec = {"t": self.now(), "k": kind}
        rec.update(fields)
        try:
            line = orjson.dumps(rec, default=_default, option=_OPTS)
        except orjson.JSONEncodeError:
            line = encode(rec)
        self._buf.append(line)
        self.count += 1
        if len(self._buf) >= self._flush_every:
            self.flush()

    def write_record(self, rec: dict[str, Any]) -> None:
        """Append a record as read from a trace (its own `t`): the exporter's way in. `t` and
        `k` go first, as the model writes them (a binary trace's reader adds them last)."""
        if "t" in rec and "k" in rec:
            rec = {"t": rec["t"], "k": rec["k"], **rec}
        self._buf.append(encode(rec))
        self.count += 1
        if len(self._buf) >= self._flush_every:
            self.flush()

    def _emit_checked(self, kind: str, **fields: Any) -> None:
        check_written(kind, fields)
        TraceWriter.emit(self, kind, **fields)

    def _encode_buffer(self) -> bytes:
        return b"\n".join(self._buf) + b"\n"

    def flush(self) -> None:
        if self._buf and self._fd >= 0:
            view = memoryview(self._encode_buffer())
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            self._buf.clear()

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1


class BinaryTraceWriter(TraceWriter):
    """The run's trace (cosim/trace/framing.py): `emit` keeps the record as a tuple and each
    flush encodes the buffered ones as one zstd frame in one write, so a killed model loses at
    most the `flush_every` - 1 records it had not yet flushed, and a write cut short is a torn
    last frame the reader reports.

    Encoding at the flush keeps a reference to each emitted field value until then: the
    model hands over values it does not change afterwards (ints, strings, tuples, fresh
    lists and dicts, frozen Domains). A record keeps the monotonic clock as read; the file's
    prologue holds the origin the reader subtracts.
    """

    def __init__(self, path: str | os.PathLike[str] | None, flush_every: int = 256,
                 check: bool | None = None, copy_header: dict[str, Any] | None = None,
                 **header: Any) -> None:
        self._zc = framing.compressor()
        self._flushed = 0
        self._tuples: list[tuple[int, str, dict[str, Any]]] = []
        self._copying = copy_header is not None   # records come with their own `t`
        super().__init__(path, flush_every, check, copy_header, **header)
        if not self.enabled:
            if not self.check:
                self.emit = _discard  # type: ignore[method-assign]
        elif not self.check:
            # A closure over locals: the cheapest Python call there is, once per record.
            self.emit = self._emitter()  # type: ignore[method-assign]

    @property  # type: ignore[override]
    def count(self) -> int:
        return self._flushed + len(self._tuples)

    @count.setter
    def count(self, value: int) -> None:
        pass  # TraceWriter.__init__ sets it; here it is what was flushed plus what is buffered

    def _start(self) -> None:
        self._origin = 0 if self._copying else self._t0
        os.write(self._fd, framing.prologue(self._origin))

    def _emitter(self) -> Any:
        buf = self._tuples
        append = buf.append
        mono = time.monotonic_ns
        limit = self._flush_every
        flush = self.flush

        def emit(kind: str, **fields: Any) -> None:
            dom = fields.get("dom")
            if dom is not None:
                # Encoded once per Domain: orjson then calls no `default` for this record.
                fields["dom"] = dom.encoded or dom.keep_encoding(_fragment(dom))
            append((mono(), kind, fields))
            if len(buf) >= limit:
                flush()
        return emit

    def emit(self, kind: str, **fields: Any) -> None:
        if not self.enabled:
            return
        buf = self._tuples
        buf.append((time.monotonic_ns(), kind, fields))
        if len(buf) >= self._flush_every:
            self.flush()

    def _emit_checked(self, kind: str, **fields: Any) -> None:
        check_written(kind, fields)
        BinaryTraceWriter.emit(self, kind, **fields)

    def write_record(self, rec: dict[str, Any]) -> None:
        fields = dict(rec)
        t = fields.pop("t", None)
        self._tuples.append((t + self._origin if type(t) is int else t, fields.pop("k", None),
                             fields))
        if len(self._tuples) >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        buf = self._tuples
        if buf and self._fd >= 0:
            flags = 0
            try:
                payload = orjson.dumps(buf, default=_default_cached, option=_OPTS)
            except orjson.JSONEncodeError:
                payload, flags = _wide(buf)
            view = memoryview(framing.encode(payload, len(buf), flags, self._zc))
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            self._flushed += len(buf)
            buf.clear()


def _wide(buf: list[tuple[int, str, dict[str, Any]]]) -> tuple[bytes, int]:
    """A frame's payload when a record holds an integer orjson cannot write (beyond 64 bits:
    a whole-space size, 2^64): framing.WIDE, those fields moved to the patch list; or,
    nested in a list or object, framing.STANDARD and the standard encoder."""
    recs: list[tuple[int, str, dict[str, Any]]] = []
    patches: list[list[int | str]] = []
    for i, (t, k, f) in enumerate(buf):
        wide = [n for n, v in f.items()
                if isinstance(v, int) and not isinstance(v, bool) and not -(1 << 63) <= v < 1 << 64]
        if wide:
            f = dict(f)
            for n in wide:
                patches.append([i, n, str(int(f[n]))])
                f[n] = 0
        recs.append((t, k, f))
    try:
        return orjson.dumps([recs, patches], default=_default_cached, option=_OPTS), framing.WIDE
    except orjson.JSONEncodeError:
        return (json.dumps(buf, separators=(",", ":"), default=_default).encode(),
                framing.STANDARD)


def _fragment(dom: Domain) -> orjson.Fragment:
    """A Domain's record as JSON bytes orjson writes as they are."""
    return orjson.Fragment(orjson.dumps(dom.to_record()))


def _discard(kind: str, **fields: Any) -> None:
    pass


# id(Domain) -> (the Domain, its record): the model hands the same few Domain objects over and
# over (a TLB entry's), and building the record is most of what encoding one costs.
_DOM_RECORDS: dict[int, tuple[Domain, dict[str, int | str]]] = {}


def _default_cached(obj: Any) -> Any:
    got = _DOM_RECORDS.get(id(obj))
    if got is not None and got[0] is obj:
        return got[1]
    if isinstance(obj, Domain):
        if len(_DOM_RECORDS) >= 4096:
            _DOM_RECORDS.clear()
        rec = _DOM_RECORDS[id(obj)] = (obj, obj.to_record())
        return rec[1]
    return _default(obj)


def open_writer(path: str | os.PathLike[str] | None, format: Format = "cst",
                **kw: Any) -> TraceWriter:
    """A writer of `format`: 'cst' (binary, the run's default) or 'jsonl'."""
    cls = BinaryTraceWriter if format == "cst" else TraceWriter
    return cls(path, **kw)


def _default(obj: Any) -> Any:
    if isinstance(obj, Domain):
        return obj.to_record()
    if isinstance(obj, orjson.Fragment):
        # A Domain the emitter encoded, met by the standard encoder (_wide): its JSON again.
        return orjson.loads(orjson.dumps(obj))
    if isinstance(obj, bytes | bytearray):
        return obj.hex()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
