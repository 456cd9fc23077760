"""A run's trace analysed while the model writes it, so the verdict follows the guest's last
test within moments instead of one whole analysis later (a guest run keeps about one of two
cores busy).

`LiveAnalysis` (the launcher's side) starts `python -m cosim.live_analysis` beside the model.
The child follows the growing trace (cosim.trace.follow) until the launcher says the model is
gone by closing the child's stdin: it reads the records the finished file holds, so its verdict
is the one `cosim analyze` gives the trace afterwards. It writes the summary as JSON to a file
the launcher reads, and the text report, as the launcher's own analysis does.

It is a process, not a thread of the launcher, because it runs at the lowest priority while
the run goes on: it takes only CPU that QEMU and the model leave idle, so the analysis does
not change the timing of the run it judges, and a low-priority thread holding the launcher's
GIL would stall the launcher's console handling. Once the model is gone it gets the launcher's
priority back where the system allows that (raising a priority may need privilege).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

LIVE_NICE = 19          # added to the child's nice value while the run goes on
PROGRESS_SECONDS = 5.0  # once the run is over, the child says how far it got this often


class LiveAnalysis:
    """The launcher's handle on the analysing child (see the module)."""

    def __init__(self, trace: Path, report: Path, result: Path,
                 say: Callable[[str], None], echo: bool) -> None:
        self.trace, self.report, self.result_path = trace, report, result
        self._say = say
        self._nice = os.getpriority(os.PRIO_PROCESS, 0)
        self._gone_at: float | None = None
        self.gave_result = False   # the summary came from the child
        result.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "cosim.live_analysis", str(trace), str(report), str(result),
               str(LIVE_NICE), "echo" if echo else "quiet"]
        # Its own session: a Ctrl-C at the terminal is the launcher's to handle; the child
        # ends when its stdin closes, whatever becomes of the launcher.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, start_new_session=True)

    def model_gone(self) -> None:
        """The model has exited: its trace is complete (idempotent)."""
        if self._gone_at is not None:
            return
        self._gone_at = time.monotonic()
        try:
            os.setpriority(os.PRIO_PROCESS, self.proc.pid, self._nice)
        except OSError:   # PermissionError (no privilege to raise it back), or it has exited
            pass
        stdin: IO[bytes] | None = self.proc.stdin
        if stdin is not None:
            try:
                stdin.close()
            except OSError:
                pass

    def result(self) -> dict | None:
        """The summary once the child has read the whole trace; None if it could not give one
        (the caller then analyses the finished trace itself)."""
        self.model_gone()
        size = self.trace.stat().st_size / 1e6 if self.trace.exists() else 0
        self._say(f"==> analysis: {self.trace} ({size:.0f} MB), read while the model wrote it")
        try:
            self.proc.wait()
        except BaseException:
            self.stop()
            raise
        assert self._gone_at is not None
        try:
            summary = json.loads(self.result_path.read_text())
        except (OSError, ValueError):
            return None
        finally:
            self.result_path.unlink(missing_ok=True)
        if not isinstance(summary, dict):
            return None
        self.gave_result = True
        self._say(f"    analysis: done {time.monotonic() - self._gone_at:.1f} s after the run")
        return summary

    def stop(self) -> None:
        """Kill the child (the run is being abandoned)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _child(argv: list[str]) -> int:
    trace, report, result = (Path(a) for a in argv[:3])
    os.nice(int(argv[3]))   # before any other thread: they would keep the old value
    echo = argv[4] == "echo"
    gone = threading.Event()
    gone_at = [0.0]

    def watch_stdin() -> None:
        sys.stdin.buffer.read()   # returns at EOF: the launcher closed it, or it is gone
        gone_at[0] = time.monotonic()
        gone.set()
    threading.Thread(target=watch_stdin, daemon=True).start()
    last = [0.0]

    def progress(n: int) -> None:
        # Silent while the guest runs (its tests print then); every few seconds after.
        now = time.monotonic()
        if echo and gone.is_set() and now - max(last[0], gone_at[0]) >= PROGRESS_SECONDS:
            last[0] = now
            print(f"    analysis: {n / 1e6:.0f}M records read ({now - gone_at[0]:.0f} s "
                  "after the run)", flush=True)

    try:
        from cosim.analyzer import analyze_path
        summary = analyze_path(trace, report_path=report, progress=progress, ended=gone.is_set)
    except Exception as e:  # noqa: BLE001 - the launcher reports it as the run's analysis
        summary = {"verdict": "error", "why": f"{type(e).__name__}: {e}"}
    tmp = result.with_name(result.name + ".tmp")
    tmp.write_text(json.dumps(summary) + "\n")
    os.replace(tmp, result)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
