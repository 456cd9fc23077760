"""`cosim analyze` command line: exit codes, unreadable input, JSON and Perfetto outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "traces"))
from synth import DOM_A, DOM_B, Synth  # noqa: E402

from cosim.analyzer import analyze_path  # noqa: E402
from cosim.analyzer.cli import main  # noqa: E402
from cosim.trace import TraceWriter  # noqa: E402


def _trace(tmp_path: Path, stale: bool) -> Path:
    s = Synth()
    for p in (0x1000, 0x2000):
        s.translate(p, DOM_A)
    s.marker("attach-begin", 1)
    s.drv("begin", DOM_A)
    s.translate(0x1000, DOM_B)
    s.drv("end", DOM_B)
    s.marker("attach-end", 1)
    if stale:
        s.translate(0x2000, DOM_A)
    s.translate(0x2000, DOM_B)
    return s.write(tmp_path / ("dirty.jsonl" if stale else "clean.jsonl"))


def test_exit_codes_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(_trace(tmp_path, False))]) == 0
    out = capsys.readouterr().out
    assert "verdict: CLEAN" in out and "attaches: 1 (1 clean)" in out
    assert main([str(_trace(tmp_path, True))]) == 1
    out = capsys.readouterr().out
    assert out.index("verdict: VIOLATIONS") < out.index("[a] inv1-old-domain")
    assert "timeline:" in out


def test_json_summary_to_file_and_stdout(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    trace = _trace(tmp_path, True)
    out_file = tmp_path / "s.json"
    assert main([str(trace), "--json", str(out_file)]) == 1
    capsys.readouterr()
    summary = json.loads(out_file.read_text())
    assert summary["verdict"] == "violations" and summary["torn"] is False
    assert set(summary) >= {"verdict", "violations", "attaches", "counts", "torn"}
    v = summary["violations"][0]
    assert v["rule"] == "inv1-old-domain" and v["sid"] == 8 and v["timeline"]
    assert summary["attaches"][0]["verdict"] == "violations"
    assert summary["counts"]["by_rule"]["inv1-old-domain"] == 1
    assert main([str(trace), "--json", "-"]) == 1
    assert json.loads(capsys.readouterr().out)["verdict"] == "violations"


def test_perfetto_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pf = tmp_path / "p.json"
    assert main([str(_trace(tmp_path, True)), "--perfetto", str(pf), "-q"]) == 1
    assert capsys.readouterr().out == ""
    ev = json.loads(pf.read_text())["traceEvents"]
    names = {e["args"]["name"] for e in ev if e["ph"] == "M"}
    assert {"streams (sid/ssid)", "domains", "SMMU commands", "markers", "faults"} <= names
    assert {"sid 8", DOM_A.label(), DOM_B.label(), "dev 1", "violations"} <= names
    slices = [e for e in ev if e["ph"] == "X"]
    assert all(e["dur"] > 0 and "ts" in e for e in slices)
    assert any(e["name"].startswith("attach #1") for e in slices)
    assert any(e["name"] == "VIOLATION inv1-old-domain" for e in ev)


def _stderr_only_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_wrong_schema_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "old.jsonl"
    p.write_text('{"t": 0, "k": "header", "schema": 99}\n{"t": 1, "k": "irq"}\n')
    assert main([str(p)]) == 2
    assert "schema 99" in _stderr_only_line(capsys)


@pytest.mark.parametrize("content", ["hello world\n", "", '{"k": "xlate"}\n', "\x00\xff\n"])
def test_not_a_trace_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             content: str) -> None:
    p = tmp_path / "x.txt"
    p.write_text(content)
    assert main([str(p)]) == 2
    assert "not a cosim trace" in _stderr_only_line(capsys)


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl" in _stderr_only_line(capsys)


def test_torn_trace_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = TraceWriter(tmp_path / "w.jsonl", cache_mode="coherent")
    w.emit("xlate", sid=8, ssid=None, iova=0x1000, acc="r", ok=True, pa=0x1000, size=4096,
           perm="rw", dom=DOM_A, ste=None, cd=None, tlb=False, fault=None)
    w.close()
    with open(tmp_path / "w.jsonl", "a") as f:
        f.write('{"t": 5, "k": "dma", "dev"')
    # A torn last record is what a crash leaves: the rest is judged, and the verdict says the
    # evidence is incomplete (exit 3), never clean.
    assert main([str(tmp_path / "w.jsonl"), "--json", str(tmp_path / "s.json")]) == 3
    assert "TORN" in capsys.readouterr().out
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["torn"] is True and summary["counts"]["records"] == 1
    assert summary["verdict"] == "incomplete" and "torn" in summary["incomplete"][0]


def test_analyze_path_for_the_launcher(tmp_path: Path) -> None:
    rep = tmp_path / "report.txt"
    s = analyze_path(_trace(tmp_path, True), report_path=rep)
    assert s["verdict"] == "violations" and "violation" in s["why"]
    assert "inv1-old-domain" in rep.read_text()
    # The launcher writes the summary with plain json.dumps: domains appear as their labels.
    summary = json.loads(json.dumps(s))
    assert summary["attaches"][0]["old"] == {"8": DOM_A.label()}
    assert summary["violations"][0]["entries"]["old_dom"] == DOM_A.label()
    bad = tmp_path / "bad"
    bad.write_text("nope\n")
    assert analyze_path(bad)["verdict"] == "unreadable"


def test_python_dash_m(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "cosim.analyzer", str(_trace(tmp_path, False))],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "verdict: CLEAN" in r.stdout
    r = subprocess.run([sys.executable, "-m", "cosim.analyzer", str(tmp_path / "missing")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_malformed_record_is_one_line_exit_2_and_no_output(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _trace(tmp_path, False)
    bad = tmp_path / "bad.jsonl"
    lines = good.read_text().splitlines()
    lines.insert(3, '{"t": 9, "k": "xlate", "sid": "eight"}')
    bad.write_text("\n".join(lines) + "\n")
    out_json = tmp_path / "s.json"
    assert main(["--json", str(out_json), str(bad)]) == 2
    err = _stderr_only_line(capsys)
    assert "line 4" in err and "xlate" in err and "Traceback" not in err
    assert not out_json.exists()


def test_options_before_the_trace_and_help_through_cosim(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "cosim", "analyze", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--json" in r.stdout and "--perfetto" in r.stdout
    assert "3 incomplete" in r.stdout
    s = tmp_path / "s.json"
    r = subprocess.run([sys.executable, "-m", "cosim", "analyze", "-q", "--json", str(s),
                        str(_trace(tmp_path, True))], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and json.loads(s.read_text())["verdict"] == "violations"


def test_marker_windows_only_is_incomplete(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    s = Synth()
    s.translate(0x1000, DOM_A)
    s.marker("attach-begin", 1)
    s.marker("attach-end", 1)
    s.translate(0x1000, DOM_B)
    assert main([str(s.write(tmp_path / "m.jsonl"))]) == 3
    out = capsys.readouterr().out
    assert "verdict: INCOMPLETE" in out and "no driver probes" in out


def test_unwritable_output_leaves_nothing(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "nodir" / "s.json"
    assert main(["--json", str(target), str(_trace(tmp_path, False))]) == 2
    assert "cannot write output" in _stderr_only_line(capsys)
    assert not target.parent.exists()
