"""What the model writes its trace records to: the `TraceSink` seam, and a sink that keeps none.

Model code types its `trace` parameter as `TraceSink`; `TraceWriter` (a file, or disabled)
and `NullTrace` are the two implementations.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, runtime_checkable

from .schema import check_written

CHECK_ENV = "COSIM_TRACE_CHECK"


def checking(check: bool | None) -> bool:
    """The `check=` argument, or when None the COSIM_TRACE_CHECK environment switch."""
    if check is not None:
        return check
    return os.environ.get(CHECK_ENV, "") not in ("", "0")


@runtime_checkable
class TraceSink(Protocol):
    """Takes the model's trace records (kinds and fields: cosim/trace/schema.py)."""

    @property
    def count(self) -> int:
        """Records written so far."""
        ...

    def emit(self, kind: str, **fields: Any) -> None: ...

    def now(self) -> int:
        """Nanoseconds since the trace started (the `t` of a record emitted now)."""
        ...

    def flush(self) -> None: ...


class NullTrace:
    """A sink that keeps nothing; with checking on it still checks every record."""

    def __init__(self, check: bool | None = None) -> None:
        if checking(check):
            # Replacing the bound method per instance keeps the unchecked path a bare return.
            self.emit = self._emit_checked  # type: ignore[method-assign]

    @property
    def count(self) -> int:
        return 0

    def emit(self, kind: str, **fields: Any) -> None:
        pass

    def _emit_checked(self, kind: str, **fields: Any) -> None:
        check_written(kind, fields)

    def now(self) -> int:
        return 0

    def flush(self) -> None:
        pass
