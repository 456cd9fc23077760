"""The binary trace format (cosim/trace/framing.py): the same records as JSON lines, a torn
tail, bad magic, corrupt frames, the exporter, and JSON-lines traces still read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent / "traces"))
from synth import DOM_A, DOM_B, Synth  # noqa: E402

from cosim.analyzer.cli import main as analyze  # noqa: E402
from cosim.arch.domain import Domain  # noqa: E402
from cosim.trace import (  # noqa: E402
    KINDS,
    BinaryTraceWriter,
    TraceReader,
    TraceWriter,
    framing,  # noqa: E402
    read_trace,
)
from cosim.trace.export import main as export  # noqa: E402
from cosim.trace.schema import (  # noqa: E402
    Bool,
    Dom,
    Enum,
    Field,
    IntList,
    Letters,
    Number,
    Object,
    ObjectList,
    OptInt,
    OptIntList,
    OptStr,
    OptUInt,
    Str,
    UInt,
)

SCHEMA1 = Path(__file__).parent / "traces" / "schema1.jsonl"
WHOLE = 1 << 64     # a whole-space size: beyond what orjson writes


def _value(f: Field, i: int) -> Any:
    """A value of the field's type, as handed to the writer (a Domain for `dom`)."""
    t = f.type
    if isinstance(t, Dom):
        return Domain("nested", 3, 0x4000, 1, 0x8000) if i % 2 else Domain.stage1(1, 0x40000)
    if isinstance(t, OptIntList | IntList):
        return [i + n for n in range(t.length if t.length is not None else 3)]
    if isinstance(t, Enum):
        return t.order[i % len(t.order)]
    if isinstance(t, Letters):
        return "rw" if "w" in t.letters else sorted(t.letters)[0]
    if isinstance(t, Bool):
        return i % 2 == 0
    if isinstance(t, OptUInt):
        return None if i % 3 == 0 else i
    if isinstance(t, UInt):
        return i + 1
    if isinstance(t, OptInt):
        return -i
    if isinstance(t, Number):
        return 1.5
    if isinstance(t, OptStr):
        return None
    if isinstance(t, Str):
        return f"s{i}"
    if isinstance(t, ObjectList):
        return [{"dev": 1, "sid": 8}]
    if isinstance(t, Object):
        return {"a": i, "b": [1, 2]}
    raise AssertionError(f"no sample for {type(t).__name__}")


def every_record() -> list[tuple[str, dict[str, Any]]]:
    """One record of every kind and of every variant of a tagged kind, every field set."""
    out = []
    for i, k in enumerate(KINDS):
        if k.name == "header":
            continue
        variants = k.variants or (None,)
        for v in variants:
            fields = {f.name: _value(f, i) for f in k.fields}
            if v is not None:
                fields[k.tag] = v.value  # type: ignore[index]
                fields.update({f.name: _value(f, i) for f in v.fields})
            out.append((k.name, fields))
    return out


def _as_json(fields: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(fields, default=lambda d: d.to_record()))


# Unchecked, the binary writer's emit is its own closure, which hands orjson each Domain
# already encoded (Domain.encoded): the records must read back the same.
@pytest.mark.parametrize("cls,check", [(BinaryTraceWriter, True), (BinaryTraceWriter, False),
                                       (TraceWriter, True)])
def test_every_kind_round_trips(tmp_path: Path, cls: type[TraceWriter], check: bool) -> None:
    recs = every_record()
    assert {k for k, _ in recs} == {k.name for k in KINDS} - {"header"}
    w = cls(tmp_path / "t", check=check, cache_mode="caching", options={"a": 1})
    assert ("emit" in vars(w)) == (cls is BinaryTraceWriter or check)
    for kind, fields in recs:
        w.emit(kind, **fields)
    w.close()
    t = read_trace(tmp_path / "t")
    assert t.problems == [] and t.torn is None
    assert t.header["cache_mode"] == "caching" and t.header["options"] == {"a": 1}
    assert [(r["k"], {n: v for n, v in r.items() if n not in ("t", "k")}) for r in t.records] \
        == [(k, _as_json(f)) for k, f in recs]
    times = [r["t"] for r in t.records]
    assert times == sorted(times) and times[0] >= 0


@pytest.mark.parametrize("check", [True, False])
def test_binary_reads_as_its_json_lines_export(tmp_path: Path, check: bool) -> None:
    w = BinaryTraceWriter(tmp_path / "t.cst", flush_every=7, check=check, cache_mode="coherent")
    for kind, fields in every_record() * 3:
        w.emit(kind, **fields)
    # Wide integers: a top-level one (patched per frame), a nested one (standard encoder).
    w.emit("atc_inv", sid=16, ssid=None, addr=0, size=WHOLE, g=False, id=1)
    w.emit("cmd", idx=1, op="CMD_ATC_INV", f={"Size": WHOLE}, raw=[1, 2])
    w.close()
    assert export(["--jsonl", str(tmp_path / "t.cst"), str(tmp_path / "t.jsonl")]) == 0
    b, j = read_trace(tmp_path / "t.cst"), read_trace(tmp_path / "t.jsonl")
    assert b.problems == j.problems == [] and b.header == j.header
    assert b.records == j.records
    assert b.records[-2]["size"] == WHOLE and b.records[-1]["f"]["Size"] == WHOLE
    # ... and back again to the same bytes, but for the nested wide integer: the JSON-lines
    # reader lets orjson read it inside an object as a float (it re-reads only a record the
    # schema refuses), which the binary format's STANDARD frames avoid.
    assert export(["--cst", str(tmp_path / "t.jsonl"), str(tmp_path / "again.cst")]) == 0
    assert export(["--jsonl", str(tmp_path / "again.cst"), str(tmp_path / "again.jsonl")]) == 0
    again = (tmp_path / "again.jsonl").read_bytes().splitlines()
    assert again[:-1] == (tmp_path / "t.jsonl").read_bytes().splitlines()[:-1]


def test_model_json_lines_survive_the_binary_format_byte_for_byte(tmp_path: Path) -> None:
    w = TraceWriter(tmp_path / "m.jsonl", cache_mode="coherent")
    for kind, fields in every_record() * 20:   # repetitive, as a model's trace is
        w.emit(kind, **fields)
    w.close()
    assert export(["--cst", str(tmp_path / "m.jsonl"), str(tmp_path / "m.cst")]) == 0
    assert (tmp_path / "m.cst").read_bytes()[:len(framing.MAGIC)] == framing.MAGIC
    assert (tmp_path / "m.cst").stat().st_size * 5 < (tmp_path / "m.jsonl").stat().st_size
    assert subprocess.run([sys.executable, "-m", "cosim", "trace", "export", "--jsonl",
                           str(tmp_path / "m.cst"), str(tmp_path / "back.jsonl")],
                          check=False).returncode == 0
    assert (tmp_path / "back.jsonl").read_bytes() == (tmp_path / "m.jsonl").read_bytes()


def _xlate(w: TraceWriter, iova: int) -> None:
    w.emit("xlate", sid=8, ssid=None, iova=iova, acc="r", ok=True, pa=iova, size=4096,
           perm="rw", dom=DOM_A, ste=None, cd=None, tlb=False, fault=None)


def test_a_killed_writer_loses_only_what_it_had_not_flushed(tmp_path: Path) -> None:
    w = BinaryTraceWriter(tmp_path / "t.cst", flush_every=16, cache_mode="coherent")
    for i in range(40):
        _xlate(w, i << 12)
    # Never closed: what a SIGKILL leaves. Two frames of 16 were written; 8 were buffered.
    t = read_trace(tmp_path / "t.cst")
    assert len(t.records) == 32 and t.torn is None and t.problems == []
    w.close()
    assert len(read_trace(tmp_path / "t.cst").records) == 40


@pytest.mark.parametrize("cut", [3, 8 + 5])  # inside the last frame's header, its zstd frame
def test_torn_last_frame_is_reported_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            cut: int) -> None:
    w = BinaryTraceWriter(tmp_path / "t.cst", flush_every=4, cache_mode="coherent")
    for i in range(8):
        _xlate(w, i << 12)
    w.close()
    data = (tmp_path / "t.cst").read_bytes()
    with open(tmp_path / "t.cst", "rb") as f:
        f.seek(len(framing.MAGIC) + framing.ORIGIN.size)
        last = list(framing.frames(f, len(framing.MAGIC) + framing.ORIGIN.size))[-1].offset
    (tmp_path / "t.cst").write_bytes(data[:last + cut])   # the second frame of 4 is torn
    whole = last
    t = read_trace(tmp_path / "t.cst")
    assert len(t.records) == 4 and t.problems == []
    assert t.torn is not None and f"frame at byte {whole}" in t.torn
    assert analyze([str(tmp_path / "t.cst"), "--json", str(tmp_path / "s.json")]) == 3
    assert "TORN" in capsys.readouterr().out
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["torn"] is True and summary["counts"]["records"] == 4
    assert summary["verdict"] == "incomplete"


def _stderr_only_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


@pytest.mark.parametrize("content", [b"\x89CST\x02\r\n\x1a" + bytes(8),   # another version
                                     b"\x89CST", framing.MAGIC + bytes(3),  # no origin
                                     framing.MAGIC + bytes(8)])              # no header frame
def test_bad_magic_or_empty_binary_is_one_line_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes) -> None:
    p = tmp_path / "trace.jsonl"   # the name says nothing: the magic decides
    p.write_bytes(content)
    assert analyze([str(p)]) == 2
    line = _stderr_only_line(capsys)
    assert "not a cosim" in line and str(p) in line


def test_corrupt_frame_is_a_problem_exit_2(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    w = BinaryTraceWriter(tmp_path / "t.cst", flush_every=4, cache_mode="coherent")
    for i in range(12):
        _xlate(w, i << 12)
    w.close()
    data = bytearray((tmp_path / "t.cst").read_bytes())
    with open(tmp_path / "t.cst", "rb") as f:
        f.seek(len(framing.MAGIC) + framing.ORIGIN.size)
        frames = list(framing.frames(f, len(framing.MAGIC) + framing.ORIGIN.size))
    second = frames[2]   # records 6-9 (header, then 2-5, 6-9, 10-13)
    data[second.offset + framing.FRAME.size + 6] ^= 0xFF
    (tmp_path / "t.cst").write_bytes(bytes(data))
    with TraceReader(tmp_path / "t.cst") as r:
        recs = list(r)
    assert len(recs) == 8 and r.skipped_lines == [6, 7, 8, 9]
    assert r.problems[0].startswith("record 6: a corrupt frame of 4 records")
    assert analyze([str(tmp_path / "t.cst")]) == 2
    assert "record 6: a corrupt frame" in _stderr_only_line(capsys)


def _dirty() -> Synth:
    s = Synth()
    for p in (0x1000, 0x2000):
        s.translate(p, DOM_A)
    s.marker("attach-begin", 1)
    s.drv("begin", DOM_A)
    s.translate(0x1000, DOM_B)
    s.drv("end", DOM_B)
    s.marker("attach-end", 1)
    s.translate(0x2000, DOM_A)
    s.translate(0x2000, DOM_B)
    return s


def test_analysis_is_the_same_on_both_formats(tmp_path: Path) -> None:
    jsonl = _dirty().write(tmp_path / "d.jsonl")
    assert export(["--cst", str(jsonl), str(tmp_path / "d.cst")]) == 0
    for name in ("d.jsonl", "d.cst"):
        assert analyze(["-q", "--json", str(tmp_path / f"{name}.json"),
                        str(tmp_path / name)]) == 1
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("d.jsonl", "d.cst"))
    a.pop("trace", None)
    b.pop("trace", None)
    assert a == b and a["violations"] and a["violations"][0]["timeline"]


def test_schema1_json_lines_still_read_and_export(tmp_path: Path) -> None:
    old = read_trace(SCHEMA1)
    assert old.header["schema"] == 1 and old.records
    assert export(["--cst", str(SCHEMA1), str(tmp_path / "s1.cst")]) == 0
    new = read_trace(tmp_path / "s1.cst")
    # The record the reader refused is not copied (the exporter said so on stderr).
    assert old.problems == ["line 17: xlate.dom 's3:what' is not a domain label (schema 1)"]
    assert new.records == old.records and new.problems == []


def test_export_of_unreadable_input_is_one_line_exit_2(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    (tmp_path / "x").write_bytes(b"\x89CST\x07junk")
    assert export(["--jsonl", str(tmp_path / "x"), str(tmp_path / "y")]) == 2
    assert "bad magic" in _stderr_only_line(capsys)
    assert not (tmp_path / "y").exists()


def test_a_run_directory_names_its_trace(tmp_path: Path) -> None:
    from cosim.launcher import OLD_TRACE_NAME, TRACE_NAME, trace_of
    assert trace_of(tmp_path) == tmp_path / TRACE_NAME == tmp_path / "trace.cst"
    (tmp_path / OLD_TRACE_NAME).write_text("")   # a run from before the binary format
    assert trace_of(tmp_path) == tmp_path / "trace.jsonl"
    (tmp_path / TRACE_NAME).write_text("")
    assert trace_of(tmp_path) == tmp_path / "trace.cst"


def test_an_encoded_domain_in_a_frame_the_standard_encoder_writes(tmp_path: Path) -> None:
    # A nested integer beyond 64 bits sends the whole frame to the standard encoder, which
    # meets the Domain the unchecked emitter had already encoded for orjson.
    w = BinaryTraceWriter(tmp_path / "t.cst", check=False, cache_mode="coherent")
    dom = Domain("nested", 3, 0x4000, 1, 0x8000)
    w.emit("xlate", sid=8, ssid=None, iova=0, acc="r", ok=True, pa=0, size=4096, perm="rw",
           dom=dom, ste=None, cd=None, tlb=False, fault=None)
    w.emit("cmd", idx=1, op="CMD_ATC_INV", f={"Size": WHOLE}, raw=[1, 2])
    w.close()
    t = read_trace(tmp_path / "t.cst")
    assert t.problems == [] and [r["k"] for r in t.records] == ["xlate", "cmd"]
    assert t.records[0]["dom"] == dom.to_record() and t.records[1]["f"]["Size"] == WHOLE
