"""`cosim mutate` without a guest: the catalogue's headers, the tree handling (apply, revert,
refuse), the argument errors, and how a row is judged against the baseline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cosim import mutate
from cosim.mutate import Mutant, MutateError, RunFacts
from cosim.trace import FORMATS, open_writer

ROOT = Path(__file__).resolve().parent.parent
# Each Debian source choice and its catalogue: every mutant must exist for both kernels.
CATALOGUES = {k: sorted((ROOT / "mutants" / folder).glob("*.patch"))
              for k, folder in mutate.CATALOGUE_FOR.items()}
CATALOGUE = CATALOGUES["debian-6.12"]
DRIVER = "drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c"

PATCH = """\
# Mutant: hello says goodbye
# Breaks: nothing real
# Areas: dma,unmap
# Model-args: --cache-mode=caching
--- a/hello.c
+++ b/hello.c
@@ -1,3 +1,3 @@
 int main(void)
 {
-\treturn 0; /* hello */
+\treturn 1; /* goodbye */
"""


def _cosim(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "cosim", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=env)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A tiny committed git tree that passes for a kernel source tree."""
    t = tmp_path / "linux"
    (t / "arch" / "arm64").mkdir(parents=True)
    (t / "Makefile").write_text("all:\n")
    (t / "arch" / "arm64" / "Kconfig").write_text("\n")
    (t / "hello.c").write_text("int main(void)\n{\n\treturn 0; /* hello */\n}\n")
    for cmd in (["init", "-q"], ["add", "-A"],
                ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]):
        subprocess.run(["git", "-C", str(t), *cmd], check=True)
    return t


@pytest.fixture
def patch_file(tmp_path: Path) -> Path:
    p = tmp_path / "01-hello.patch"
    p.write_text(PATCH)
    return p


# -- the catalogue -----------------------------------------------------------------------------

@pytest.mark.parametrize("kernel", sorted(CATALOGUES))
def test_the_catalogue_has_at_least_twelve_mutants_with_full_headers(kernel: str) -> None:
    mutants = [mutate.parse_mutant(p) for p in CATALOGUES[kernel]]
    assert len(mutants) >= 12
    for m in mutants:
        assert m.statement and m.breaks and m.areas, m
        assert "invariant" in m.breaks or "rule" in m.breaks, m.name
        assert "IHI 0070" in m.breaks, m.name
        assert all(a in mutate.launcher.AREAS for a in m.areas), m
    assert [m.name for m in mutants] == sorted(m.name for m in mutants)


def _number(p: Path) -> str:
    return p.stem.split("-", 1)[0]


def test_every_612_mutant_has_its_72_counterpart_with_the_same_number() -> None:
    old = {_number(p): p for p in CATALOGUES["debian-6.12"]}
    new = {_number(p): p for p in CATALOGUES["debian-7.2"]}
    assert sorted(new) == sorted(old)
    for n, p in new.items():
        m, m612 = mutate.parse_mutant(p), mutate.parse_mutant(old[n])
        # The same guest areas exercise the same bug on both kernels.
        assert m.areas == m612.areas, m.name
        if p.stem != old[n].stem:  # a renamed one says why 7.2 has no direct equivalent
            assert "no direct equivalent" in p.read_text().split("\n--- ")[0], m.name


def _params() -> list:
    out = []
    for kernel, patches in sorted(CATALOGUES.items()):
        src = mutate.unpacked_source(kernel)
        why = (f"{mutate.SOURCE_PKG[kernel]} is not unpacked under "
               f"{mutate.cache_dir() / 'src'} (`cosim setup --kernel {kernel}` unpacks it)")
        out += [pytest.param(src, p, id=f"{kernel}/{p.stem}",
                             marks=pytest.mark.skipif(src is None, reason=why))
                for p in patches]
    return out


@pytest.mark.parametrize("src, patch", _params())
def test_each_mutant_applies_cleanly_to_the_pristine_tree(src: Path, patch: Path) -> None:
    r = subprocess.run(["patch", "-p1", "--dry-run", "--forward", "-s"], cwd=src,
                       input=patch.read_text(), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    touched = [ln for ln in patch.read_text().splitlines() if ln.startswith("+++ ")]
    assert touched == [f"+++ b/{DRIVER}"]


def test_parse_mutant_reads_every_header_field(patch_file: Path) -> None:
    m = mutate.parse_mutant(patch_file)
    assert m == Mutant("01-hello", patch_file, "hello says goodbye", "nothing real",
                       ("dma", "unmap"), ("--cache-mode=caching",), "")


@pytest.mark.parametrize("drop, why", [("# Areas: dma,unmap\n", "no '# Areas:' line"),
                                       ("# Mutant: hello says goodbye\n", "no '# Mutant:' line")])
def test_a_header_without_a_required_field_is_refused(tmp_path: Path, drop: str,
                                                      why: str) -> None:
    p = tmp_path / "bad.patch"
    p.write_text(PATCH.replace(drop, ""))
    with pytest.raises(MutateError, match=why):
        mutate.parse_mutant(p)


def test_a_header_naming_an_unknown_area_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "bad.patch"
    p.write_text(PATCH.replace("dma,unmap", "dma,bogus"))
    with pytest.raises(MutateError, match="unknown area.*bogus"):
        mutate.parse_mutant(p)


def test_load_catalogue_globs_names_in_the_kernels_folder() -> None:
    names = [m.name for m in mutate.load_catalogue("debian-6.12", "0[1-3]-*")]
    assert names == [p.stem for p in CATALOGUE[:3]]
    both = mutate.load_catalogue("debian-6.12", f"{CATALOGUE[4].stem},0[1-2]-*")
    assert [m.name for m in both] == [CATALOGUE[0].stem, CATALOGUE[1].stem, CATALOGUE[4].stem]
    with pytest.raises(MutateError, match="no mutant matches nothing-\\*"):
        mutate.load_catalogue("debian-6.12", "01-*,nothing-*")


def test_each_kernel_gets_the_catalogue_of_its_driver_version(tmp_path: Path) -> None:
    assert [m.path for m in mutate.load_catalogue("debian-7.2", None)] == \
        CATALOGUES["debian-7.2"]
    tree = tmp_path / "linux"
    tree.mkdir()
    (tree / "Makefile").write_text("# SPDX-License-Identifier: GPL-2.0\nVERSION = 7\n"
                                   "PATCHLEVEL = 2\nSUBLEVEL = 13\n")
    assert mutate.tree_version(tree) == "7.2"
    assert mutate.catalogue_folder(str(tree)) == ROOT / "mutants" / "linux-7.2"
    (tree / "Makefile").write_text("VERSION = 5\nPATCHLEVEL = 10\n")  # no catalogue of its own
    assert mutate.catalogue_folder(str(tree)) == ROOT / "mutants" / "linux-6.12"
    assert mutate.catalogue_folder(str(tmp_path / "absent")) == ROOT / "mutants" / "linux-6.12"


# -- the tree ----------------------------------------------------------------------------------

def test_applied_reverts_the_mutant_also_when_the_block_raises(tree: Path,
                                                               patch_file: Path) -> None:
    m = mutate.parse_mutant(patch_file)
    with pytest.raises(KeyboardInterrupt):
        with mutate.applied(tree, m):
            assert "goodbye" in (tree / "hello.c").read_text()
            assert (tree / ".git" / mutate.APPLIED_MARK).exists()
            raise KeyboardInterrupt
    assert "hello" in (tree / "hello.c").read_text()
    assert not (tree / ".git" / mutate.APPLIED_MARK).exists()
    mutate.ensure_clean(tree)  # nothing left


def test_a_tree_with_changes_the_command_did_not_make_is_refused(tree: Path) -> None:
    (tree / "hello.c").write_text("int main(void) { return 2; }\n")
    with pytest.raises(MutateError, match="uncommitted changes the command did not make"):
        mutate.ensure_clean(tree)


def test_a_mutant_a_killed_run_left_applied_is_reverted(tree: Path, patch_file: Path) -> None:
    subprocess.run(["patch", "-p1", "-s"], cwd=tree, input=PATCH, text=True, check=True)
    (tree / ".git" / mutate.APPLIED_MARK).write_text(PATCH)
    mutate.ensure_clean(tree, say=lambda s: None)
    assert "hello" in (tree / "hello.c").read_text()
    assert not (tree / ".git" / mutate.APPLIED_MARK).exists()


def test_resolve_tree_wants_the_top_of_a_git_kernel_tree(tree: Path, tmp_path: Path) -> None:
    assert mutate.resolve_tree(str(tree)) == tree.resolve()
    with pytest.raises(MutateError, match="not a kernel source tree"):
        mutate.resolve_tree(str(tree / "arch"))
    with pytest.raises(MutateError, match="binary kernel"):
        mutate.resolve_tree("debian-6.12-bin")
    plain = tmp_path / "plain"
    (plain / "arch" / "arm64").mkdir(parents=True)
    (plain / "Makefile").write_text("\n")
    with pytest.raises(MutateError, match="not the top of a git work tree"):
        mutate.resolve_tree(str(plain))


# -- findings and rows -------------------------------------------------------------------------

def _violation(rule: str, line: int, msg: str = "m") -> dict:
    return {"rule": rule, "line": line, "message": msg,
            "timeline": [f"  #{line - 1} x", f"> #{line} 1.0s ats sid=16", f"  #{line + 1} y"]}


def test_findings_are_keyed_by_rule_and_the_test_they_happened_in(tmp_path: Path) -> None:
    # The records between the markers are not valid ones: the reader leaves them out, and the
    # markers keep the numbers (JSON lines: the lines) findings cite.
    def marker(label: str) -> dict:
        return {"t": 1, "k": "marker", "dev": 1, "tag": "test-begin", "value": 0,
                "label": label}
    recs = [marker("replace ats"), {"k": "ats"}, marker("paging-blocked"), {"k": "ats"},
            marker("replace"), {"k": "x"}]
    for fmt in FORMATS:
        trace = tmp_path / f"trace.{fmt}"
        w = open_writer(trace, fmt)
        for r in recs:
            w.write_record(r)
        w.close()
        begins = mutate.tests_by_line(trace)
        assert begins == [(2, "replace ats"), (4, "paging-blocked"), (6, "replace")], fmt
    summary = {"run_dir": "r", "guest": "booted",
               "analysis": {"verdict": "violations",
                            "violations": [_violation("entry-update", 3),
                                           _violation("entry-update", 3),
                                           _violation("inv1-old-domain", 5, "old dom"),
                                           _violation("entry-update", 7)]},
               "tests": [{"name": "replace/replace_ats", "status": "fail"},
                         {"name": "replace/replace_untranslated", "status": "pass"}]}
    facts = mutate.facts_from_summary(summary, begins)
    # Both variants of a test are one family: the second entry-update is the same finding.
    assert sorted(facts.findings) == ["entry-update@replace", "inv1-old-domain@paging-blocked"]
    assert facts.findings["inv1-old-domain@paging-blocked"] == \
        "#5 1.0s ats sid=16  (old dom)"
    assert facts.failed == ["replace/replace_ats"]


def _m(undetectable: str = "") -> Mutant:
    return Mutant("07-x", Path("07-x.patch"), "does x", "inv 1", ("replace",), (), undetectable)


BASE = RunFacts("b", "booted", {"entry-update@replace_ats": "#9 e"}, ["replace/replace_ats"])


def test_a_rule_the_baseline_already_shows_in_that_test_does_not_count() -> None:
    facts = RunFacts("r", "booted", {"entry-update@replace_ats": "#3 e",
                                     "entry-update@blocked_ats": "#40 e2",
                                     "inv1-old-domain@replace_ats": "#20 i"},
                     ["replace/replace_ats"])
    row = mutate.classify(_m(), facts, BASE)
    assert row.verdict == "caught"
    assert row.rules == ["entry-update", "inv1-old-domain"]
    assert row.checks == []  # the baseline fails replace_ats too
    assert row.evidence == "inv1-old-domain@replace_ats: #20 i"  # the earliest new one


def test_verdicts_guest_only_missed_undetectable_and_error() -> None:
    only_guest = RunFacts("r", "booted", dict(BASE.findings), ["replace/replace_ats", "unmap/x"])
    assert mutate.classify(_m(), only_guest, BASE).verdict == "guest-only"
    assert mutate.classify(_m(), only_guest, BASE).checks == ["unmap/x"]
    same = RunFacts("r", "booted", dict(BASE.findings), list(BASE.failed))
    assert mutate.classify(_m(), same, BASE).verdict == "missed"
    assert mutate.classify(_m("the model never caches"), same, BASE).verdict == "undetectable"
    panic = RunFacts("r", "panic", {}, [])
    assert mutate.classify(_m(), panic, BASE).checks == ["guest:panic"]
    err = mutate.classify(_m(), None, None, error="build failed: x")
    assert (err.verdict, err.note) == ("error", "build failed: x")


def test_exit_code_is_zero_only_when_every_mutant_is_caught_or_declared() -> None:
    caught = mutate.classify(_m(), RunFacts("r", "booted", {"inv1-old-domain@a": "#1"}, []), BASE)
    declared = mutate.classify(_m("why"), RunFacts("r", "booted", {}, []), BASE)
    missed = mutate.classify(_m(), RunFacts("r", "booted", {}, []), BASE)
    assert mutate.exit_code([caught, declared]) == 0
    assert mutate.exit_code([caught, missed]) == 1
    assert mutate.exit_code([]) == 1


def test_the_tables_list_every_row_and_escape_markdown() -> None:
    row = mutate.classify(_m(), RunFacts("r", "booted", {"inv1-old-domain@a": "#1 a|b"}, []),
                          BASE)
    md = mutate.render_table([row], markdown=True)
    assert md.splitlines()[0].startswith("| mutant | verdict |")
    assert "| 07-x | caught | inv1-old-domain | - | inv1-old-domain@a: #1 a\\|b |" in md
    text = mutate.render_table([row])
    assert text.splitlines()[1].split()[:3] == ["07-x", "caught", "inv1-old-domain"]


# -- the command line --------------------------------------------------------------------------

def test_no_matching_mutant_is_one_line_and_exit_2() -> None:
    r = _cosim("mutate", "--mutants", "zz-*")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"cosim mutate: no mutant matches zz-* in {ROOT / 'mutants' / 'linux-6.12'}"]


def test_a_dirty_tree_is_refused_before_anything_is_built(tree: Path) -> None:
    (tree / "hello.c").write_text("changed\n")
    r = _cosim("mutate", "--kernel", str(tree), "--mutants", "01-*")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "uncommitted changes the command did not make (M hello.c)" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_a_mutant_that_does_not_apply_is_refused(tree: Path, patch_file: Path) -> None:
    r = _cosim("mutate", "--kernel", str(tree), "--mutants", str(CATALOGUE[0]))
    assert r.returncode == 2
    assert f"mutant {CATALOGUE[0].stem} does not apply cleanly" in r.stderr
    assert (tree / "hello.c").read_text().endswith("/* hello */\n}\n")


@pytest.mark.parametrize("args, msg", [
    (["--kernel", "/no/such/tree"], "not a directory"),
    (["--kernel", "debian-6.12-bin"], "binary kernel"),
    (["--replaces", "0"], "--replaces must be >= 1"),
])
def test_bad_arguments_are_one_line_and_exit_2(args: list[str], msg: str) -> None:
    r = _cosim("mutate", *args)
    assert r.returncode == 2
    assert msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_an_unknown_area_is_refused_by_the_parser() -> None:
    r = _cosim("mutate", "--tests", "replace,bogus")
    assert r.returncode == 2
    assert "unknown test area(s) bogus" in r.stderr and "Traceback" not in r.stderr


def test_the_recorded_612_finding_is_baseline_for_both_replace_variants() -> None:
    rec = mutate.recorded_findings("debian-6.12")
    assert {"inv3-abort-during-attach@replace", "entry-update@replace"} <= rec
    facts = RunFacts("r", "booted", {"entry-update@replace": "#3 e"}, [])
    no_base = RunFacts("b", "booted", {}, [])
    assert mutate.classify(_m(), facts, no_base, recorded=frozenset(rec)).verdict == "missed"
    assert mutate.classify(_m(), facts, no_base).verdict == "caught"
    assert mutate.recorded_findings("/some/tree") == set()


def test_a_long_list_of_failed_checks_is_cut_in_the_table() -> None:
    many = RunFacts("r", "booted", {}, [f"kunit/case_{i}" for i in range(20)])
    row = mutate.classify(_m(), many, RunFacts("b", "booted", {}, []))
    assert len(row.checks) == 20  # the JSON keeps them all
    md = mutate.render_table([row], markdown=True)
    assert "kunit/case_0, kunit/case_1, kunit/case_2 (+17 more)" in md


def _fake_run(parent: Path, trace_src: Path, tests: list[dict]) -> None:
    run = parent / "20261202-000000"
    run.mkdir(parents=True)
    (run / "trace.jsonl").write_bytes(trace_src.read_bytes())
    (run / "summary.json").write_text(json.dumps({"run_dir": str(run), "guest": "booted",
                                                  "tests": tests, "analysis": None}))
    (parent / "latest").symlink_to(run.name)


def test_reanalyze_judges_earlier_runs_with_the_analysis_of_today(tmp_path: Path) -> None:
    """`cosim mutate --reanalyze DIR`: no build, no guest; each run's trace (model-emitted
    here: a correct replace for the baseline, one that skips the ATC invalidation for the
    mutant) is analysed again, and the table is rewritten from the new findings."""
    from test_analyzer_driver import Rig
    good, bad = Rig(), Rig()
    for rig, atc_inv in ((good, True), (bad, False)):
        rig.dma()
        rig.attach(1, atc_inv=atc_inv)
        rig.dma()
    traces = tmp_path / "traces"
    traces.mkdir()
    good.analyze(traces, "good.jsonl")              # writes the trace file it analyses
    bad.analyze(traces, "bad.jsonl")
    good_path, bad_path = traces / "good.jsonl", traces / "bad.jsonl"
    out = tmp_path / "mutate-x"
    name = "01-commit-no-atc-inv-on-replace"
    _fake_run(out / "baseline-1", good_path, [])
    _fake_run(out / name, bad_path, [{"name": "replace/replace_ats", "status": "fail"}])
    (out / "mutate.json").write_text(json.dumps({
        "tree": "/t", "baselines": [{"model_args": []}],
        "mutants": [{"mutant": name, "verdict": "missed"}]}))
    rows, _ = mutate.reanalyze(out, "debian-6.12", say=lambda s: None)
    assert [(r.mutant, r.verdict, r.rules) for r in rows] == \
        [(name, "caught", ["inv1-old-domain"])]
    doc = json.loads((out / "mutate.json").read_text())
    assert doc["mutants"][0]["verdict"] == "caught"
    summary = json.loads((out / name / "latest" / "summary.json").read_text())
    assert summary["analysis"]["verdict"] == "violations"
    assert "inv1-old-domain" in (out / "mutate.md").read_text()
    (out / "mutate.json").write_text("{")
    with pytest.raises(MutateError, match="not a cosim mutate result"):
        mutate.reanalyze(out, "debian-6.12", say=lambda s: None)


def test_a_second_run_on_the_same_tree_waits_for_the_first(tmp_path: Path, monkeypatch) -> None:
    """Two `cosim mutate` on one tree would apply and revert mutants under each other: the
    second waits, saying so, until the first has let go of the tree."""
    import threading

    monkeypatch.setenv("COSIM_CACHE", str(tmp_path))
    said: list[str] = []
    entered = threading.Event()
    release = threading.Event()

    def first() -> None:
        with mutate.tree_lock("debian-6.12"):
            entered.set()
            release.wait(5)

    t = threading.Thread(target=first)
    t.start()
    assert entered.wait(5)
    got: list[str] = []

    def second() -> None:
        with mutate.tree_lock("debian-6.12", said.append):
            got.append("in")

    t2 = threading.Thread(target=second)
    t2.start()
    t2.join(0.3)
    assert t2.is_alive() and not got
    assert said == ["==> mutate: waiting for another cosim mutate on debian-6.12 to finish"]
    release.set()
    t2.join(5)
    t.join(5)
    assert got == ["in"]


def test_a_mutant_whose_areas_ran_nothing_is_an_error_not_missed() -> None:
    """The guest-kmod module did not build for the mutated tree: every sva test reports
    unsupported. The mutant was never exercised; calling it missed would blame the analysis."""
    m = Mutant("15-x", Path("15-x.patch"), "ATS off", "invariant 3; IHI 0070 3.9.1", ("sva",))
    summary = {"run_dir": "r", "guest": "booted", "analysis": {"verdict": "clean"},
               "tests": [{"name": "sva/sva_dma_ats", "area": "sva", "status": "unsupported",
                          "reason": "no cosim_ep_dma module built for it"},
                         {"name": "kunit/x", "area": "kunit", "status": "pass"}]}
    facts = mutate.facts_from_summary(summary, [])
    row = mutate.classify(m, facts, facts)
    assert row.verdict == "error", row
    assert "no cosim_ep_dma module built for it" in row.note
    summary["tests"][0]["status"] = "pass"
    facts = mutate.facts_from_summary(summary, [])
    assert mutate.classify(m, facts, facts).verdict == "missed"
