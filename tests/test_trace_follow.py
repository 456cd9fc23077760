"""A trace analysed while it is written (cosim/trace/follow.py, the launcher's LiveAnalysis):
the same records, torn frame and verdict as the finished file, on traces the real model
writes, fed to the file in pieces by another thread as the model's flushes would."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from test_analyzer_driver import Rig

from cosim import launcher, live_analysis
from cosim.analyzer import analyze_path
from cosim.trace import BinaryTraceWriter, TraceReader, TraceWriter
from cosim.trace.follow import Growing


def _real_trace(tmp_path: Path, fmt: str, mutated: bool) -> Path:
    """A replace under traffic from the SMMU and endpoint models; `mutated`: the driver skips
    the ATC invalidation (invariant 1 breaks at the return)."""
    rig = Rig()
    rig.dma()
    rig.dma()
    rig.attach(1, atc_inv=not mutated)
    rig.dma()
    rig.attach(2)
    rig.dma()
    return rig.write(tmp_path / f"whole.{fmt}",
                     BinaryTraceWriter if fmt == "cst" else TraceWriter, flush_every=3)


class Feeder:
    """Copies a finished trace into `dest` a few bytes at a time from a thread, as a writer
    still running would; `ended` turns true once it has stopped (optionally short of the end,
    as a killed writer does)."""

    def __init__(self, src: Path, dest: Path, chunk: int = 37, stop_at: int | None = None):
        self.data = src.read_bytes()[:stop_at]
        self.dest = dest
        dest.write_bytes(b"")
        self.chunk = chunk
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._feed, daemon=True)

    def _feed(self) -> None:
        fd = os.open(self.dest, os.O_WRONLY | os.O_APPEND)
        try:
            for i in range(0, len(self.data), self.chunk):
                os.write(fd, self.data[i:i + self.chunk])
                time.sleep(0.001)
        finally:
            os.close(fd)
            self.done.set()

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join()


def test_a_short_read_is_the_end_only_once_the_writer_has_ended(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    ended = threading.Event()
    with open(p, "rb") as f:
        g = Growing(f, ended.is_set, poll_s=0.01)
        assert g.read(3) == b"abc"

        def later() -> None:
            time.sleep(0.1)
            with open(p, "ab") as w:
                w.write(b"defg")
            time.sleep(0.1)
            ended.set()
        t = threading.Thread(target=later)
        t.start()
        assert g.read(2) == b"de"        # waited for the bytes, not taken as the end
        assert g.read(10) == b"fg"       # short only once the writer ended
        assert g.read(1) == b""
        t.join()


@pytest.mark.parametrize("fmt", ["cst", "jsonl"])
@pytest.mark.parametrize("mutated", [False, True])
def test_a_followed_trace_gives_the_records_and_verdict_of_the_finished_file(
        tmp_path: Path, fmt: str, mutated: bool) -> None:
    whole = _real_trace(tmp_path, fmt, mutated)
    after = analyze_path(whole)
    assert after["verdict"] == ("violations" if mutated else "clean"), after.get("why")
    if mutated:
        assert after["counts"]["by_rule"]["inv1-old-domain"] > 0
    live = tmp_path / f"live.{fmt}"
    with Feeder(whole, live) as feed:
        got = analyze_path(live, ended=feed.done.is_set)
    assert json.dumps(got, sort_keys=True) == json.dumps(after, sort_keys=True)
    with Feeder(whole, tmp_path / f"again.{fmt}") as feed:
        recs = list(TraceReader(tmp_path / f"again.{fmt}", ended=feed.done.is_set))
    assert recs == list(TraceReader(whole))


def test_a_writer_killed_inside_a_frame_leaves_the_same_torn_end(tmp_path: Path) -> None:
    whole = _real_trace(tmp_path, "cst", True)
    cut = whole.stat().st_size - 5          # inside the last frame
    short = tmp_path / "short.cst"
    short.write_bytes(whole.read_bytes()[:cut])
    after = TraceReader(short)
    after_recs = list(after)
    with Feeder(whole, tmp_path / "live.cst", stop_at=cut) as feed:
        live = TraceReader(tmp_path / "live.cst", ended=feed.done.is_set)
        live_recs = list(live)
    assert live_recs == after_recs and live.torn == after.torn and live.torn is not None
    assert analyze_path(tmp_path / "live.cst")["verdict"] == analyze_path(short)["verdict"]


def _live(run_dir: Path, said: list[str]) -> live_analysis.LiveAnalysis:
    return live_analysis.LiveAnalysis(run_dir / launcher.TRACE_NAME, run_dir / "report.txt",
                                      run_dir / "analysis.json", said.append, echo=True)


def test_the_launcher_reports_the_live_verdict_once_the_model_is_gone(tmp_path: Path) -> None:
    whole = _real_trace(tmp_path, "cst", True)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    said: list[str] = []
    feed = Feeder(whole, run_dir / launcher.TRACE_NAME, chunk=500)
    live = _live(run_dir, said)
    with feed:
        pass
    live.model_gone()
    got = live.result()
    assert got is not None and got["verdict"] == "violations" and live.gave_result
    assert json.dumps(got, sort_keys=True) == \
        json.dumps(analyze_path(run_dir / launcher.TRACE_NAME), sort_keys=True)
    assert (run_dir / "report.txt").read_text().count("inv1-old-domain") > 0
    assert any("read while the model wrote it" in s for s in said), said
    assert not (run_dir / "analysis.json").exists()   # its content is the summary's now


def _nice(pid: int) -> int | None:
    try:
        return os.getpriority(os.PRIO_PROCESS, pid)
    except OSError:
        return None


def test_the_live_analysis_takes_only_idle_cpu_while_the_run_goes_on(tmp_path: Path) -> None:
    whole = _real_trace(tmp_path, "cst", False)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # Only the prologue yet: the child waits for the rest, as during a run.
    (run_dir / launcher.TRACE_NAME).write_bytes(whole.read_bytes()[:12])
    base = os.getpriority(os.PRIO_PROCESS, 0)
    live = _live(run_dir, [])
    low = min(base + live_analysis.LIVE_NICE, 19)
    for _ in range(500):
        if _nice(live.proc.pid) == low:
            break
        time.sleep(0.01)
    assert _nice(live.proc.pid) == low
    assert os.getpriority(os.PRIO_PROCESS, 0) == base      # the launcher itself is untouched
    with open(run_dir / launcher.TRACE_NAME, "ab") as f:
        f.write(whole.read_bytes()[12:])
    live.model_gone()
    if os.geteuid() == 0 and live.proc.poll() is None:  # raising it back needs privilege
        assert _nice(live.proc.pid) in (base, None)     # None: it finished meanwhile
    got = live.result()
    assert got is not None and got["verdict"] == "clean"


def test_a_live_analysis_that_dies_gives_no_verdict(tmp_path: Path) -> None:
    whole = _real_trace(tmp_path, "cst", False)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / launcher.TRACE_NAME).write_bytes(whole.read_bytes()[:12])
    live = _live(run_dir, [])
    live.proc.kill()
    assert live.result() is None and not live.gave_result   # the launcher analyses it then
