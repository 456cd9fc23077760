"""A trace file read while its writer still appends to it.

The launcher analyses a run's trace as the model writes it, so the verdict is ready moments
after the guest stops instead of one whole analysis later. The reader then must not take the
current end of the file for the trace's end: a read that finds fewer bytes than it asked for
waits for more, until `ended()` says the writer is gone. Only then is a short read the end
(the frame cut short by a killed writer is torn, exactly as when the file is read afterwards),
so a followed trace yields the same records as the finished file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO

POLL_S = 0.05   # how long a read that found nothing new waits before looking again


class Growing:
    """The `read` of a file object that is still being appended to (see the module)."""

    def __init__(self, f: IO[bytes], ended: Callable[[], bool], poll_s: float = POLL_S) -> None:
        self._f = f
        self._ended = ended
        self._poll_s = poll_s

    def read(self, n: int) -> bytes:
        """`n` bytes, or fewer only once the writer has ended and the file holds no more."""
        got = self._f.read(n)
        if len(got) == n:
            return got
        parts = [got]
        have = len(got)
        while have < n:
            # Ended first, then the last read: what the writer wrote before it ended is on disk.
            last = self._ended()
            more = self._f.read(n - have)
            parts.append(more)
            have += len(more)
            if last:
                break
            if not more:
                time.sleep(self._poll_s)
        return b"".join(parts)

    def wait(self) -> None:
        """Until the writer has ended (a reader that needs the whole file at once)."""
        while not self._ended():
            time.sleep(self._poll_s)
