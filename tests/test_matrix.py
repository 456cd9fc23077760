"""`cosim matrix` without a guest: cells from the command line, judging a run against the
expectation files cut to its areas, the Markdown / HTML / JSON table, `--collect`, and bad
input (one line, exit 2, nothing written). Run directories are fabricated: a summary.json
as the launcher writes it and a small trace of test-begin markers (TraceWriter)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cosim import expectations, launcher, matrix
from cosim.cli import main
from cosim.trace import TraceWriter

ROOT = Path(__file__).resolve().parent.parent
FINDING = "cd-replace-not-hitless"
FINDING_RULES = ("inv3-abort-during-attach", "entry-update")


def fake_run(base: Path, kernel: str, mode: str, areas: list[str], *,
             labels: tuple[str, ...] = (), violations: tuple[tuple[str, str, int], ...] = (),
             statuses: dict[str, str] | None = None, aborts: tuple[int, ...] = (0,),
             guest: str = "booted", verdict: str | None = None, perfetto: bool = False,
             model_args: list[str] | None = None) -> Path:
    """A run directory under `base`: its trace has one test-begin marker per label; each
    violation (rule, label, offences) sits on its label's marker line."""
    run = base / f"{kernel}-{mode}-{'+'.join(areas)}"
    run.mkdir(parents=True)
    w = TraceWriter(run / "trace.jsonl", cache_mode=mode)
    line_of = {}
    for i, label in enumerate(labels):
        w.emit("marker", dev=1, tag="test-begin", value=i, label=label)
        line_of[label] = i + 2          # line 1 is the header
    w.close()
    viol = [{"rule": r, "line": line_of[lb], "count": n, "message": f"{r} in {lb}",
             "timeline": [f"> #{line_of[lb]} marker {lb}"]} for r, lb, n in violations]
    tests = [{"name": n, "status": s, "reason": "", "output": [], "area": n.split("/")[0]}
             for n, s in (statuses or {}).items()]
    summary = {
        "run_dir": str(run), "kernel": "linux-source-6.12 6.12.117-1", "kernel_choice": kernel,
        "areas": areas, "smmu": "cosim", "guest": guest, "tests": tests,
        "model_args": [f"--cache-mode={mode}"] if model_args is None else model_args,
        "analysis": {
            "verdict": verdict or ("violations" if viol else "clean"), "violations": viol,
            "attaches": [{"n": i + 1, "aborts": a} for i, a in enumerate(aborts)],
            "counts": {"attaches": len(aborts), "by_rule": {}},
            "header": {"cache_mode": mode},
        },
    }
    by_rule = summary["analysis"]["counts"]["by_rule"]
    for v in viol:
        by_rule[v["rule"]] = by_rule.get(v["rule"], 0) + 1
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "report.txt").write_text("report\n")
    if perfetto:
        (run / matrix.PERFETTO).write_text("{}\n")
    return run


def replace_run(base: Path, kernel: str = "debian-6.12", mode: str = "coherent",
                **kw) -> Path:
    """A replace cell that shows the recorded finding, both rules, in both variants."""
    kw.setdefault("labels", ("replace ats", "replace"))
    kw.setdefault("violations", tuple((r, lb, 3) for r in FINDING_RULES
                                      for lb in ("replace ats", "replace")))
    kw.setdefault("statuses", {"replace/replace_ats": "fail",
                               "replace/replace_untranslated": "fail"})
    return fake_run(base, kernel, mode, ["replace"], **kw)


def unmap_run(base: Path, kernel: str = "debian-6.12", mode: str = "coherent", **kw) -> Path:
    kw.setdefault("labels", ("unmap ats", "unmap"))
    kw.setdefault("statuses", {"unmap/unmap_ats": "pass", "unmap/unmap_untranslated": "pass"})
    return fake_run(base, kernel, mode, ["unmap"], **kw)


# -- the cells the command line asks for --------------------------------------------------------

def test_defaults_are_every_kernel_two_modes_one_cell_per_area() -> None:
    cells = matrix.cells(matrix.parse_kernels(None), matrix.parse_modes(None),
                         matrix.parse_areas(None))
    assert len(cells) == 4 * 2 * len(launcher.AREAS)
    assert {c.kernel for c in cells} == {"debian-6.12", "debian-6.1", "debian-7.2",
                                         "debian-6.12-bin"}
    assert {c.mode for c in cells} == {"coherent", "strict"}
    assert all(len(c.areas) == 1 for c in cells)


def test_plus_joins_areas_into_one_cell_and_duplicates_fold() -> None:
    assert matrix.parse_areas("unmap,blocked+dma,unmap") == [("unmap",), ("blocked", "dma")]
    assert matrix.parse_modes("strict,strict") == ["strict"]


@pytest.mark.parametrize("args, word", [
    (["--kernels", "debian-5.10"], "kernel 'debian-5.10'"),
    (["--kernels", "debian-6.12,/tmp/linux"], "kernel '/tmp/linux'"),
    (["--areas", "unmap,swap"], "area 'swap'"),
    (["--areas", "unmap+nope"], "area 'nope'"),
    (["--areas", ","], "no area"),
    (["--modes", "coherent,lazy"], "cache mode 'lazy'"),
    (["-j", "0"], "-j must be"),
    (["-j", "two"], "-j must be"),
    (["--replaces", "-3"], "--replaces must be"),
    (["--collect", "/nonexistent", "--areas", "unmap"], "--collect runs nothing: --areas"),
    (["--collect", "/nonexistent"], "not a directory"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
        args: list[str], word: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    assert main(["matrix", "--runs-dir", str(runs), *args]) == 2
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cosim matrix: ") and word in lines[0], cap.err
    assert "Traceback" not in cap.err and not runs.exists()


def test_collect_of_nothing_usable_is_exit_2_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["matrix", "--collect", str(empty), "--runs-dir", str(runs)]) == 2
    assert "no run directory" in capsys.readouterr().err
    old = tmp_path / "old"
    old.mkdir()
    (old / "summary.json").write_text(json.dumps({"kernel": "6.12", "tests": []}))
    assert main(["matrix", "--collect", str(old), "--runs-dir", str(runs)]) == 2
    assert "kernel_choice" in capsys.readouterr().err
    (old / "summary.json").write_text("{not json")
    assert main(["matrix", "--collect", str(old), "--runs-dir", str(runs)]) == 2
    assert "not JSON" in capsys.readouterr().err
    assert not runs.exists()


# -- judging a run ---------------------------------------------------------------------------

def test_expectations_cut_to_areas() -> None:
    exp = expectations.load("debian-6.12")
    rep = expectations.for_areas(exp, ["replace"])
    assert [f["id"] for f in rep.findings] == [FINDING]
    assert rep.rules == set(FINDING_RULES) and rep.verdict == "violations"
    assert set(rep.statuses) == {"replace/replace_ats", "replace/replace_untranslated"}
    un = expectations.for_areas(exp, ["unmap", "pasid"])
    assert un.findings == [] and un.rules == set() and un.verdict == "clean"
    assert set(un.statuses) == {n for n in exp.statuses if n.startswith("pasid/")}
    # A verdict the file states for another reason than a finding holds for every cut.
    assert expectations.for_areas(expectations.load("debian-6.12-bin"),
                                  ["dma"]).verdict == "incomplete"


def test_a_run_showing_its_recorded_finding_is_as_expected(tmp_path: Path) -> None:
    r = matrix.judge_dir(replace_run(tmp_path, aborts=(0, 5, 2), perfetto=True))
    assert r.verdict == "expected", r.differences
    assert r.findings == [FINDING] and r.missing == [] and r.new == []
    # Aborts: the offences of the abort rule (3 in each variant), not the attaches' failed
    # DMA (which an attach to the blocked domain has plenty of).
    assert (r.attaches, r.aborts, r.stale) == (3, 6, 0)
    assert r.cell == matrix.Cell("debian-6.12", "coherent", ("replace",))
    assert r.report.endswith("report.txt") and r.perfetto.endswith(matrix.PERFETTO)


def test_a_recorded_finding_that_disappears_differs(tmp_path: Path) -> None:
    run = replace_run(tmp_path, violations=(), statuses={"replace/replace_ats": "pass",
                                                         "replace/replace_untranslated": "pass"})
    r = matrix.judge_dir(run)
    assert r.verdict == "differs" and r.findings == [] and r.missing == [FINDING]
    assert any("did not show up" in d for d in r.differences), r.differences


def test_a_finding_showing_in_another_area_is_new(tmp_path: Path) -> None:
    # The finding's rule in unmap's trace is no recorded finding: the key is rule@test.
    run = unmap_run(tmp_path, violations=(("entry-update", "unmap ats", 2),))
    r = matrix.judge_dir(run)
    assert r.verdict == "differs" and r.findings == [] and r.missing == []
    assert r.new == ["entry-update@unmap"]
    assert any("entry-update@unmap matches no recorded finding" in d for d in r.differences)


def test_stale_uses_count_the_offences_of_the_cache_rules(tmp_path: Path) -> None:
    run = unmap_run(tmp_path, mode="strict", violations=(("stale-cache", "unmap", 4),
                                                         ("inv2-invalidated-atc", "unmap ats", 3),
                                                         ("inv1-old-domain", "unmap", 9)))
    r = matrix.judge_dir(run)
    assert r.stale == 7 and r.verdict == "differs"
    assert r.new == ["inv1-old-domain@unmap", "inv2-invalidated-atc@unmap", "stale-cache@unmap"]


def test_a_failed_guest_test_differs_and_a_hung_guest_is_an_error(tmp_path: Path) -> None:
    r = matrix.judge_dir(unmap_run(tmp_path / "a", statuses={"unmap/unmap_ats": "fail",
                                                             "unmap/unmap_untranslated": "pass"}))
    assert r.verdict == "differs"
    assert any(d.startswith("unmap/unmap_ats: expected pass, got fail") for d in r.differences)
    hung = matrix.judge_dir(unmap_run(tmp_path / "b", guest="hang"))
    assert hung.verdict == "error" and hung.note == "guest hang"
    broken = matrix.judge_dir(unmap_run(tmp_path / "c", verdict="unreadable"))
    assert broken.verdict == "error" and broken.note.startswith("analysis unreadable")
    # A torn trace (verdict incomplete) fires no rule, and is still no clean cell.
    torn = matrix.judge_dir(unmap_run(tmp_path / "d", verdict="incomplete"))
    assert torn.verdict == "differs"
    assert any("verdict incomplete, expected clean" in d for d in torn.differences)


def test_the_mode_is_the_trace_headers_else_the_model_option(tmp_path: Path) -> None:
    run = unmap_run(tmp_path, mode="strict")
    summary = json.loads((run / "summary.json").read_text())
    assert matrix.mode_of(summary) == "strict"
    summary["analysis"] = None
    assert matrix.mode_of(summary) == "strict"
    summary["model_args"] = ["--cache-mode", "caching"]
    assert matrix.mode_of(summary) == "caching"
    summary["model_args"] = []
    assert matrix.mode_of(summary) == "coherent"


# -- the table -------------------------------------------------------------------------------

class _Table(HTMLParser):
    """Rows of <td> text and every tag, script and external reference seen."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.tags: set[str] = set()
        self.hrefs: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self._cell = []
        for k, v in attrs:
            if k in ("href", "src") and v:
                self.hrefs.append(v)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _two_by_two(tmp_path: Path) -> Path:
    cells = tmp_path / "cells"
    for mode in ("coherent", "strict"):
        replace_run(cells, mode=mode, perfetto=True)
        unmap_run(cells, mode=mode)
    return cells


def test_collect_writes_the_same_table_as_markdown_html_and_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cells = _two_by_two(tmp_path)
    runs = tmp_path / "runs"
    assert main(["matrix", "--collect", str(cells), "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    (mdir,) = runs.glob("matrix-*")
    md = (mdir / "matrix.md").read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith("| debian")]
    # Ordered by kernel, mode, area (AREAS order: replace before unmap).
    assert [r.split(" | ")[1:3] for r in rows] == [["coherent", "replace"],
                                                    ["coherent", "unmap"],
                                                    ["strict", "replace"], ["strict", "unmap"]]
    assert all(" | expected | " in r for r in rows)
    # The finding links to its page in docs/findings.
    assert f" | [{FINDING}](" in rows[0] and FINDING not in rows[1]
    page = re.search(rf"\[{FINDING}\]\(([^)]+)\)", rows[0]).group(1)
    assert (mdir / page).resolve() == (ROOT / "docs" / "findings" / f"{FINDING}.md").resolve()
    # Links relative to the table's directory, and they resolve.
    for link in re.findall(r"\]\(([^)]+)\)", md):
        assert not link.startswith("/") and (mdir / link).is_file(), link
    assert "[perfetto](" in rows[0] and rows[1].endswith("| [report](" + rows[1].split(
        "[report](")[1].split(")")[0] + ") | - |")
    # The terminal gets the same rows with absolute links.
    assert sum(ln.startswith("| debian") for ln in out.splitlines()) == 4

    page = _Table()
    page.feed((mdir / "index.html").read_text())
    assert "script" not in page.tags and "link" not in page.tags
    assert all(not h.startswith(("http:", "https:", "//", "/")) for h in page.hrefs)
    assert all((mdir / h).is_file() for h in page.hrefs)
    body = [r for r in page.rows if r]
    assert len(body) == 4
    assert [r[:4] for r in body] == [[c.split(" | ")[0].strip("| ")] + c.split(" | ")[1:4]
                                     for c in rows]
    assert body[0][4] == FINDING and body[1][4] == "-"
    assert any(h.endswith(f"docs/findings/{FINDING}.md") for h in page.hrefs)

    doc = json.loads((mdir / "matrix.json").read_text())
    assert doc["exit_code"] == 0 and len(doc["cells"]) == 4
    assert doc["cells"][0]["cell"] == {"kernel": "debian-6.12", "mode": "coherent",
                                       "areas": ["replace"],
                                       "name": "debian-6.12_coherent_replace"}
    assert doc["cells"][0]["findings"] == [FINDING]


def test_a_differing_cell_fails_the_matrix_and_says_why(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cells = _two_by_two(tmp_path)
    unmap_run(cells / "more", kernel="debian-7.2", mode="strict",
              violations=(("inv1-old-domain", "unmap ats", 2),))
    runs = tmp_path / "runs"
    assert main(["matrix", "--collect", str(cells), "--runs-dir", str(runs)]) == 1
    (mdir,) = runs.glob("matrix-*")
    md = (mdir / "matrix.md").read_text()
    row = next(ln for ln in md.splitlines() if ln.startswith("| debian-7.2"))
    assert " | differs | new: inv1-old-domain@unmap | " in row
    assert "- debian-7.2 strict unmap: analysis: new violation of rule inv1-old-domain" in md
    page = _Table()
    page.feed((mdir / "index.html").read_text())
    bad = [r for r in page.rows if r and r[0].startswith("debian-7.2")]
    assert bad[0][3].startswith("differs") and "inv1-old-domain" in bad[0][3]
    assert json.loads((mdir / "matrix.json").read_text())["exit_code"] == 1


def test_collect_finds_runs_once_not_through_latest(tmp_path: Path) -> None:
    base = tmp_path / "runs"
    run = unmap_run(base)
    (base / "latest").symlink_to(run.name)
    assert matrix.find_runs([base, run]) == [run.resolve()]


def test_html_escapes_what_the_run_wrote(tmp_path: Path) -> None:
    r = matrix.judge_dir(unmap_run(tmp_path, statuses={"unmap/<b>x</b>": "fail"}))
    text = matrix.render_html([r], tmp_path, "t")
    assert "<b>x</b>" not in text and "&lt;b&gt;x&lt;/b&gt;" in text


def test_a_cell_runs_cosim_run_with_its_areas_and_mode(tmp_path: Path) -> None:
    opts = matrix.Options(["debian-7.2"], ["strict"], [("unmap", "blocked")], replaces=7,
                          timeout=99.0)
    cmd = matrix.cell_command(matrix.Cell("debian-7.2", "strict", ("unmap", "blocked")),
                              tmp_path, opts)
    assert cmd[1:4] == ["-m", "cosim", "run"]
    joined = " ".join(cmd)
    for part in ("--kernel debian-7.2", "--tests unmap,blocked", f"--runs-dir {tmp_path}",
                 "--replaces 7", "--timeout 99.0", "--model-arg=--cache-mode=strict"):
        assert part in joined, joined


def test_incomplete_evidence_is_expected_only_where_the_kernel_attaches(tmp_path: Path) -> None:
    # debian-6.12-bin has no driver probes: a run that attaches is 'incomplete' by its file;
    # one that attaches nothing is clean, and must not be called a difference.
    probe = {"probe/smmu_probed": "pass", "probe/ats_enabled_iommufd": "unsupported"}
    r = matrix.judge_dir(fake_run(tmp_path / "a", "debian-6.12-bin", "coherent", ["probe"],
                                  statuses=probe, aborts=(), verdict="clean"))
    assert r.verdict == "expected", r.differences
    r = matrix.judge_dir(fake_run(tmp_path / "b", "debian-6.12-bin", "coherent", ["probe"],
                                  statuses=probe, aborts=(0,), verdict="clean"))
    assert r.verdict == "differs"
    assert any("verdict clean, expected incomplete" in d for d in r.differences)
