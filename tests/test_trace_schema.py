"""The trace schema (cosim/trace/schema.py): writer checks, reader validation, the schema-1
upgrade, the typed sink, and docs/trace.md's tables against the declaration."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cosim.arch.domain import Domain
from cosim.trace import (
    CHECK_ENV,
    KINDS,
    SCHEMA,
    NullTrace,
    SchemaViolation,
    TraceError,
    TraceSink,
    TraceWriter,
    iter_records,
    read_trace,
)
from cosim.trace import schema as sc

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "trace.md"
SCHEMA1 = Path(__file__).parent / "traces" / "schema1.jsonl"
DOM = Domain.stage1(1, 0x40000)


def xlate(**over: Any) -> dict[str, Any]:
    """An xlate record's fields as the model emits them."""
    rec: dict[str, Any] = dict(sid=8, ssid=None, iova=0x1000, acc="r", ok=True, pa=0x5000,
                               size=4096, perm="rw", dom=DOM, ste=0x1200, cd=0x9000, tlb=False,
                               fault=None)
    rec.update(over)
    return rec


def write_lines(path: Path, *recs: dict[str, Any], schema: int = SCHEMA) -> Path:
    header = {"t": 0, "k": "header", "schema": schema, "wall": 0.0}
    path.write_text("\n".join(json.dumps(r) for r in (header, *recs)) + "\n")
    return path


# -- the writer ---------------------------------------------------------------------------

def test_the_session_checks_traces() -> None:
    # tests/conftest.py turns checking on for every test, this one included.
    if os.environ.get(CHECK_ENV) == "0":
        pytest.skip("COSIM_TRACE_CHECK=0 given: checking turned off for this session")
    assert TraceWriter(None).check
    assert "emit" in vars(NullTrace()) and "emit" not in vars(NullTrace(check=False))


@pytest.mark.parametrize("over, message", [
    ({"iova": "x"}, "xlate.iova is 'x', expected an integer >= 0"),
    ({"iova": -1}, "xlate.iova is -1, expected an integer >= 0"),
    ({"ok": 1}, "xlate.ok is 1, expected true or false"),
    ({"sid": True}, "xlate.sid is true, expected an integer >= 0"),
    ({"acc": "rw"}, "xlate.acc is 'rw', expected one of 'r', 'w', 'x', 'rp', 'wp', 'xp'"),
    ({"perm": "rwz"}, "xlate.perm is 'rwz', expected a string of letters from 'rwx'"),
    ({"dom": "s1:asid=1:ttb=0x40000"}, "xlate.dom is 's1:asid=1:ttb=0x40000', expected a "
                                       "domain object or null"),
    ({"dom": {"kind": "s1", "asid": 1, "ttb": 0}}, "expected a domain object or null"),
    ({"extra": 1}, "xlate has field(s) extra that the schema"),
])
def test_checked_writer_names_kind_field_and_value(tmp_path: Path, over: dict[str, Any],
                                                   message: str) -> None:
    w = TraceWriter(tmp_path / "t.jsonl", check=True)
    with pytest.raises(SchemaViolation, match="^trace record ") as e:
        w.emit("xlate", **xlate(**over))
    assert message in str(e.value)
    assert w.count == 1  # only the header: the bad record was not written


def test_checked_writer_missing_field_and_unknown_kind() -> None:
    w = TraceWriter(None, check=True)
    fields = xlate()
    del fields["tlb"]
    with pytest.raises(SchemaViolation, match=r"xlate\.tlb is missing"):
        w.emit("xlate", **fields)
    with pytest.raises(SchemaViolation, match="kind 'xlat' is not in the schema"):
        w.emit("xlat", **xlate())
    with pytest.raises(SchemaViolation, match=r"link\.seq is 'one'"):
        w.emit("link", event="timeout", request="MMIO_READ", seq="one", ms=100)


def test_valid_records_of_every_shape_pass_the_writer(tmp_path: Path) -> None:
    w = TraceWriter(tmp_path / "t.jsonl", check=True, cache_mode="caching", options={"a": 1})
    w.emit("xlate", **xlate())
    w.emit("xlate", **xlate(ok=False, pa=0, size=0, perm="", dom=None, fault="C_BAD_STE"))
    w.emit("ste_fetch", sid=8, addr=0x1200, qw=(0,) * 8, cached=False, cfg="invalid",
           legal=False, why="V=0")
    w.emit("tlbi", op="TLBI_NH_VAA", vmid=0, asid=None, addr=0, size=4096, leaf=1, ttl=0, n=2)
    w.emit("link", event="timeout", request="send", ms=100)
    w.emit("link", event="bye")
    w.close()
    t = read_trace(tmp_path / "t.jsonl")
    assert t.problems == [] and len(t.records) == 6
    assert t.records[0]["dom"] == {"kind": "s1", "asid": 1, "ttb": 0x40000}
    assert t.header["cache_mode"] == "caching"


def test_unchecked_writer_writes_what_it_is_given(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CHECK_ENV, "0")
    w = TraceWriter(tmp_path / "t.jsonl")
    assert not w.check and "emit" not in vars(w)  # the plain method: nothing on the hot path
    w.emit("xlate", **xlate(iova="x"))
    w.close()
    t = read_trace(tmp_path / "t.jsonl")
    assert t.records == [] and t.problems == ["line 2: xlate.iova is 'x', expected an integer >= 0"]


def test_sinks_are_trace_sinks() -> None:
    for sink in (NullTrace(check=False), TraceWriter(None, check=False)):
        assert isinstance(sink, TraceSink)
        sink.emit("xlate", **xlate(iova="not checked"))
        sink.flush()
        assert sink.count == 0 and sink.now() >= 0
    with pytest.raises(SchemaViolation):
        NullTrace(check=True).emit("xlate", **xlate(iova="x"))


# -- the reader ---------------------------------------------------------------------------

def test_reader_turns_bad_records_into_problems(tmp_path: Path) -> None:
    good = {"t": 5, "k": "xlate", **xlate(dom=DOM.to_record())}
    p = write_lines(
        tmp_path / "t.jsonl",
        good,
        {**good, "iova": "x"},
        {"t": 6, "k": "nope"},
        {k: v for k, v in good.items() if k != "fault"},
        {**good, "acc": "q"},
        {**good, "dom": {"kind": "nested", "asid": 1, "ttb": 2}},
        {**good, "dom": "s1:asid=1:ttb=0x40000"},
        [1, 2],
        {"t": -1, "k": "gerror", "bits": 1},
        {"t": 7, "k": "link", "event": "reset", "dev": 1, "reset": "warm"},
        {**good, "later": "a field a newer writer added"},
    )
    with open(p, "a") as f:
        f.write("not json\n")
    t = read_trace(p)
    assert t.problems == [
        "line 3: xlate.iova is 'x', expected an integer >= 0",
        "line 4: unknown record kind 'nope'",
        "line 5: xlate.fault is missing",
        "line 6: xlate.acc is 'q', expected one of 'r', 'w', 'x', 'rp', 'wp', 'xp'",
        "line 7: xlate.dom is {\"kind\": \"nested\", \"asid\": 1, \"ttb\": 2}, expected a domain "
        "object or null (dom.vmid of a nested domain is None, not an integer)",
        "line 8: xlate.dom is 's1:asid=1:ttb=0x40000', expected a domain object or null "
        "(dom is str, not a domain object)",
        "line 9: not a JSON object",
        "line 10: gerror.t is -1, expected an integer >= 0",
        "line 11: link.reset is 'warm', expected one of 'system', 'flr'",
        "line 13: not a JSON record",
    ]
    assert [r["t"] for r in t.records] == [5, 5]
    assert t.torn is None


def test_torn_last_line_is_kept_out(tmp_path: Path) -> None:
    p = write_lines(tmp_path / "t.jsonl", {"t": 1, "k": "gerror", "bits": 1})
    with open(p, "a") as f:
        f.write('{"t": 2, "k": "gerr')
    t = read_trace(p)
    assert t.torn == '{"t": 2, "k": "gerr' and len(t.records) == 1 and t.problems == []
    assert [r["bits"] for r in iter_records(p)] == [1]


def test_bad_header_field_is_a_problem_and_dropped(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl"
    p.write_text('{"t": 0, "k": "header", "schema": 2, "wall": 0, "cache_mode": "fast"}\n')
    t = read_trace(p)
    assert t.problems == ["header.cache_mode is 'fast', expected one of 'coherent', 'caching', "
                          "'strict'"]
    assert "cache_mode" not in t.header


@pytest.mark.parametrize("schema", [0, 3, "2", None])
def test_unreadable_schema(tmp_path: Path, schema: object) -> None:
    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps({"t": 0, "k": "header", "schema": schema}) + "\n")
    with pytest.raises(TraceError, match="this cosim reads schema 1 and 2"):
        read_trace(p)


def test_schema1_trace_is_upgraded() -> None:
    t = read_trace(SCHEMA1)
    assert t.header["schema"] == 1
    by_t = {r["t"]: r for r in t.records}
    s1 = {"kind": "s1", "asid": 1, "ttb": 0x40000}
    s2 = {"kind": "s2", "vmid": 2, "s2ttb": 0x10000}
    abort = {"kind": "abort"}
    assert by_t[1000]["dom"] == s1
    assert by_t[2000]["dom"] == {"kind": "bypass"}
    assert by_t[3000]["dom"] == abort                 # STE abort: silent, no fault
    assert by_t[4000]["dom"] is None                  # C_BAD_STE: no domain translated
    assert by_t[5000]["dom"] == {"kind": "nested", "asid": 3, "ttb": 0x4000, "vmid": 1,
                                 "s2ttb": 0x8000}
    assert by_t[6000]["dom"] == s2
    assert by_t[7000]["dom"] == {"kind": "bypass"}    # ATS UR for an STE bypass keeps it
    assert by_t[8000]["dom"] is None                  # CA: no domain translated
    assert by_t[9000]["dom"] == s2 and by_t[10000]["dom"] == s2
    assert by_t[11000]["dom"] == abort                # dma aborted silently by the STE
    assert by_t[12000]["dom"] is None and by_t[13000]["dom"] is None
    assert by_t[14000]["dom"] is None and by_t[15000]["dom"] == s2
    assert t.problems == ["line 17: xlate.dom 's3:what' is not a domain label (schema 1)"]
    assert by_t[17000]["k"] == "marker" and len(t.records) == 16


# -- the declaration ----------------------------------------------------------------------

def test_every_kind_is_declared_once_with_meanings() -> None:
    names = [k.name for k in KINDS]
    assert len(names) == len(set(names))
    for k in KINDS:
        assert k.meaning and all(f.meaning for f in k.fields), k.name
        assert len({f.name for f in k.fields}) == len(k.fields), k.name
        assert (k.tag is None) == (not k.variants), k.name
        if k.tag is not None:
            tag = k.by_name[k.tag].type
            assert isinstance(tag, sc.Enum) and tag.values == set(k.by_tag), k.name
    assert sc.DOM_KINDS == ("xlate", "ats", "drv", "atc_insert", "atc_hit", "dma")


def test_docs_tables_match_the_schema() -> None:
    text = DOC.read_text()
    fix = ("fix: declare the change in cosim/trace/schema.py, then regenerate the tables with "
           "`python -m cosim.trace --write-doc docs/trace.md`")
    doc, want = sc.parse_doc(text), sc.declared()
    assert set(doc) == set(want), (
        f"docs/trace.md record kinds differ from the schema: only in the doc "
        f"{sorted(set(doc) - set(want))}, only in the schema {sorted(set(want) - set(doc))}; "
        + fix)
    for kind, fields in want.items():
        assert set(doc[kind]) == set(fields), (
            f"docs/trace.md `{kind or 'every record'}` fields differ: only in the doc "
            f"{sorted(set(doc[kind]) - set(fields))}, only in the schema "
            f"{sorted(set(fields) - set(doc[kind]))}; " + fix)
        for name, (typ, required) in fields.items():
            assert doc[kind][name] == (typ, required), (
                f"docs/trace.md `{kind}.{name}` says {doc[kind][name]}, the schema "
                f"{(typ, required)}; " + fix)
    assert sc.replace_doc(text) == text, "docs/trace.md's record tables are stale; " + fix


@pytest.mark.parametrize("obj", [
    None, {"kind": "abort"}, {"kind": "bypass"}, {"kind": "s1", "asid": 1, "ttb": 0},
    {"kind": "s1", "asid": 1}, {"kind": "s2", "vmid": 0, "s2ttb": 4096},
    {"kind": "s2", "vmid": -1, "s2ttb": 4096}, {"kind": "nested", "asid": 1, "ttb": 2, "vmid": 3,
                                                "s2ttb": 4},
    {"kind": "nested", "asid": 1, "ttb": 2, "vmid": True, "s2ttb": 4}, {"kind": "s3"}, {},
    "bypass", [1],
])
def test_reader_dom_check_is_domain_from_record(obj: object) -> None:
    try:
        Domain.from_record(obj)
        valid = True
    except ValueError:
        valid = obj is None
    assert sc.DOM.ok(obj) is valid


def _good_value(t: sc.FieldType) -> object:
    """A value of each field type that its check accepts."""
    if isinstance(t, sc.Enum):
        return t.order[0]
    if isinstance(t, sc.IntList):
        return None if isinstance(t, sc.OptIntList) else [0] * (t.length or 1)
    return {sc.UInt: 1, sc.OptUInt: None, sc.OptInt: -1, sc.Number: 0.5, sc.Bool: False,
            sc.Str: "", sc.OptStr: None, sc.Letters: "", sc.Object: {}, sc.ObjectList: [],
            sc.Dom: None}[type(t)]


_S1 = {"kind": "s1", "asid": 2, "ttb": 4096}
_TRIALS: list[object] = [
    0, 1, -1, 2.0, True, False, None, "", "r", "rw", "wr", "rr", "xwr", "rwz", "s1", [], [0],
    [0] * 2, [0] * 8, [0] * 7, [-1] + [0] * 7, [True] + [0] * 7, [1.0] * 8, {}, [{}], [1],
    {"kind": "abort"}, _S1, {**_S1, "asid": 2.0}, {**_S1, "asid": True}, {**_S1, "ttb": -1},
    {"kind": "s1", "asid": 2}, {"kind": "s1", "asid": [2], "ttb": 4096}]


def test_reader_fast_check_agrees_with_problem() -> None:
    """The generated per-kind test the reader runs on every record (`matches`) says a record
    is good exactly when the declaration's checks (`problem`) find nothing, for every field of
    every kind and variant and values of every type: a good domain first, so that the test's
    memo of good domains is filled when equal-looking bad ones (2.0, true) follow."""
    for kind in KINDS:
        variants = kind.variants or (None,)
        for var in variants:
            fields = kind.fields + (var.fields if var is not None else ())
            base: dict[str, Any] = {"t": 1, "k": kind.name}
            base.update({f.name: _good_value(f.type) for f in fields})
            if var is not None:
                base[kind.tag] = var.value
            assert sc.matches(base) and sc.problem(base) is None, base
            for f in fields:
                if f.name == kind.tag:
                    continue
                trials = _TRIALS + (list(f.type.order) if isinstance(f.type, sc.Enum) else [])
                for v in trials:
                    rec = {**base, f.name: v}
                    assert sc.matches(rec) == (sc.problem(rec) is None), (kind.name, f.name, v)
                missing = {n: x for n, x in base.items() if n != f.name}
                assert sc.matches(missing) == (sc.problem(missing) is None), (kind.name, f.name)


@pytest.mark.parametrize("fmt", ["jsonl", "cst"])
def test_a_domain_equal_to_a_good_one_but_not_of_integers_is_a_problem(
        tmp_path: Path, fmt: str) -> None:
    """2.0 and true are equal to 2 and 1 (and hash alike): after a good domain, a record whose
    domain differs from it only so is still a problem line, in either format."""
    from cosim.trace.writer import open_writer
    good = {"t": 5, "k": "xlate", **xlate(dom=_S1)}
    p = tmp_path / f"t.{fmt}"
    w = open_writer(p, fmt, check=False, copy_header={"t": 0, "k": "header", "schema": SCHEMA,
                                                      "wall": 0.0})
    for dom in (_S1, {**_S1, "asid": 2.0}, {**_S1, "asid": True}, _S1):
        w.write_record({**good, "dom": dom})
    w.close()
    t = read_trace(p)
    word = "line" if fmt == "jsonl" else "record"
    assert t.problems == [
        f"{word} 3: xlate.dom is {{\"kind\": \"s1\", \"asid\": 2.0, \"ttb\": 4096}}, expected a "
        "domain object or null (dom.asid of a s1 domain is 2.0, not an integer)",
        f"{word} 4: xlate.dom is {{\"kind\": \"s1\", \"asid\": true, \"ttb\": 4096}}, expected a "
        "domain object or null (dom.asid of a s1 domain is True, not an integer)",
    ]
    assert len(t.records) == 2
