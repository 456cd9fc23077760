"""The streaming analysis (cosim/analyzer/engine.py): what it must give whatever the order
the trace reveals its whole-trace facts in, and the reader's fast schema check."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "traces"))
from synth import DEV, DOM_A, DOM_B, SID, Synth  # noqa: E402

from cosim.analyzer import analyze_file  # noqa: E402
from cosim.analyzer.engine import Facts, analyze_pass  # noqa: E402
from cosim.trace import TraceReader, TraceWriter  # noqa: E402
from cosim.trace.schema import matches, problem  # noqa: E402

PAGE = 0x1000


def _summary(an) -> tuple:
    return (an.verdict, [(v.rule, v.index, v.sid, v.attach, v.count) for v in an.violations],
            [(a.n, a.sids, a.dev, a.old, a.new) for a in an.attaches])


def _late_sid_trace(s: Synth) -> None:
    """Marker windows where the device names its StreamID (its first DMA) only after its
    first attach began, in a trace of two streams: the first pass cannot know the attach's
    stream at its begin."""
    s.xlate(PAGE, DOM_A, sid=SID + 1)
    s.xlate(PAGE, DOM_A)
    s.marker("attach-begin", 1)
    s.dma(PAGE, DOM_A)
    s.marker("attach-end", 1)
    s.xlate(2 * PAGE, DOM_B)
    s.xlate(PAGE, DOM_A)       # the old domain after attach-end: inv1 (marker windows)
    s.dma(PAGE, DOM_A)


def test_a_guess_that_does_not_hold_is_read_again_with_the_facts(tmp_path: Path) -> None:
    s = Synth()
    _late_sid_trace(s)
    path = s.write(tmp_path / "t.jsonl")
    first = analyze_pass(path, None)
    assert not first.guess_ok                      # dev 1 had no StreamID at attach-begin
    assert first.facts.dev_sids == {DEV: [SID]}
    an = analyze_file(path)
    assert an.attaches[0].sids == [SID]
    assert "inv1-old-domain" in [v.rule for v in an.violations]
    # The same result as a pass told the facts from the start.
    known = analyze_pass(path, Facts(False, {DEV: [SID]}))
    assert [(v.rule, v.index) for v in known.ctx.out.items] == \
        [(v.rule, v.index) for v in an.violations]


def test_driver_probes_after_marker_windows_make_the_windows_the_drivers(
        tmp_path: Path) -> None:
    """A `drv` record after a marker window: the whole trace is driver mode, as if the pass
    had known it at the first record."""
    s = Synth()
    s.dma(PAGE, DOM_A)
    s.marker("attach-begin", 1)
    s.marker("attach-end", 1)
    s.drv("begin", DOM_A)
    s.drv("end", DOM_B)
    s.dma(PAGE, DOM_B)
    path = s.write(tmp_path / "t.jsonl")
    assert not analyze_pass(path, None).guess_ok
    an = analyze_file(path)
    assert [a.source for a in an.attaches] == ["driver"]
    assert an.verdict == "clean", [v.message for v in an.violations] + an.incomplete


def test_the_analysis_keeps_no_records(tmp_path: Path) -> None:
    """Records are not kept: the view knows their number, and reads the file again for the
    lines a finding cites."""
    s = Synth()
    _late_sid_trace(s)
    an = analyze_file(s.write(tmp_path / "t.jsonl"))
    assert not hasattr(an.view, "_records")
    assert an.counts["records"] == len(s.recs)
    v = an.violations[0]
    (cited,) = [ln for ln in an.view.timeline(v.index) if ln.startswith(">")]
    assert cited.startswith(f"> #{an.view.line_of(v.index)} ")
    assert an.view.t_of(v.index) == s.recs[v.index]["t"]


def test_integers_beyond_64_bits_stay_integers(tmp_path: Path) -> None:
    """The whole-address-space ATC_INV size, 2^64, is an integer to the reader (orjson alone
    would read a float, which the schema refuses)."""
    s = Synth()
    s.atc_inv(1, size=1 << 64)
    path = s.write(tmp_path / "t.jsonl")
    with TraceReader(path) as r:
        recs = list(r)
        assert not r.problems
    assert recs[-1]["size"] == 1 << 64 and type(recs[-1]["size"]) is int


def test_what_the_standard_decoder_reads_is_read(tmp_path: Path) -> None:
    """NaN is JSON to Python's decoder (not to orjson): a line with one is still a record."""
    s = Synth()
    s.emit("link", event="timing", dev=0, ms=float("nan"))
    path = s.write(tmp_path / "t.jsonl")
    with TraceReader(path) as r:
        recs = list(r)
        problems = r.problems
    assert all("not a JSON record" not in p for p in problems), problems
    assert len(recs) + len(problems) == 1


def test_the_fast_schema_check_agrees_with_problem(tmp_path: Path) -> None:
    """matches(rec) is problem(rec) is None, on good records and on each with one field
    replaced by values of every JSON type or removed."""
    s = Synth()
    _late_sid_trace(s)
    s.atc_inv(1)
    s.ste([0] * 8)
    s.cd([0] * 8)
    s.drv("begin", None)
    s.sync()
    s.cfgi()
    values = [None, -1, 0, 7, 1 << 64, 1.5, "", "r", "rw", True, False, [], [0] * 8, [-1] * 8,
              {}, {"kind": "s1", "asid": 1, "ttb": 0}, {"kind": "nested"}]
    checked = 0
    for rec in s.recs:
        rec = json.loads(json.dumps(rec, default=lambda d: d.to_record()))
        assert matches(rec) and problem(rec) is None
        for key in rec:
            for v in values + ["missing"]:
                bad = dict(rec)
                if v == "missing":
                    del bad[key]
                else:
                    bad[key] = v
                if key == "k" and isinstance(v, list | dict):
                    continue  # an unhashable kind: problem() itself is not asked that
                assert matches(bad) == (problem(bad) is None), (bad, problem(bad))
                checked += 1
    assert checked > 500


def test_progress_is_told_every_million_records(tmp_path: Path) -> None:
    """A large trace's analysis says how far it got (the launcher prints it)."""
    from cosim.analyzer.engine import PROGRESS_EVERY, analyze

    path = tmp_path / "t.jsonl"
    w = TraceWriter(path)
    for i in range(PROGRESS_EVERY + 10):
        w.emit("marker", dev=1, tag="label", value=i, label="")
    w.close()
    told: list[int] = []
    analyze(path, told.append)
    assert told == [0, PROGRESS_EVERY]
