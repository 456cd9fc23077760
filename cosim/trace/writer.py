"""The model's side of the trace: `TraceWriter`, a buffered JSON-lines writer.

Every record is one line `{"t": <ns since trace start>, "k": <kind>, ...fields}`; the first
line is the header `{"k": "header", "schema": SCHEMA, ...}`. With checking on (`check=True`,
or `COSIM_TRACE_CHECK=1` in the environment, which the test suite sets) every record is checked
against the schema before it is written; off, `emit` does exactly what it did before the
schema existed.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from cosim.arch.domain import Domain

from .schema import SCHEMA, check_written
from .sink import checking


class TraceWriter:
    """Buffered JSON-lines writer; flushes whole lines so a crash leaves at most one torn record.

    `path` None: a disabled writer that writes nothing (and, with checking on, still checks).
    """

    def __init__(self, path: str | os.PathLike[str] | None, flush_every: int = 256,
                 check: bool | None = None, **header: Any) -> None:
        self.path = path
        self.enabled = path is not None
        self.check = checking(check)
        self._buf: list[str] = []
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

    def _emit_checked(self, kind: str, **fields: Any) -> None:
        check_written(kind, fields)
        TraceWriter.emit(self, kind, **fields)

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
