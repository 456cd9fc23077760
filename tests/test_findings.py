"""`cosim findings`: the committed docs/findings pages are what the expectation files give,
every recorded finding has a description and a page, and the page says what the list needs
(kernels, driver lines, spec rule, trace, reproducer, fix, upstream)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_matrix import FINDING, FINDING_RULES, replace_run

from cosim import expectations, findings
from cosim.cli import main

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "docs" / "findings"
FIX = "fix: edit tests/expectations/, then run `python -m cosim findings --write docs/findings`"


def test_committed_pages_are_what_the_expectation_files_give() -> None:
    made = findings.pages(findings.load_all())
    assert made, "no recorded finding in tests/expectations/"
    assert findings.differing(made, PAGES) == [], FIX
    assert main(["findings", "--check", str(PAGES)]) == 0


def test_every_recorded_finding_has_a_page() -> None:
    ids = {str(f["id"]) for p in expectations.DIR.glob("*.toml")
           for f in expectations.load(p.stem).findings}
    assert FINDING in ids
    assert {p.stem for p in PAGES.glob("*.md")} == ids


def test_the_page_has_what_the_mailing_list_needs() -> None:
    (f,) = [f for f in findings.load_all() if f.id == FINDING]
    assert [k.kernel for k in f.kernels] == ["debian-6.12", "debian-7.2"]
    assert sorted(f.rules) == sorted(FINDING_RULES)
    assert sorted(f.areas) == ["kswitch", "pasid", "replace"]
    page = findings.render(f)
    for heading in ("## What happens", "## Kernels", "## Why", "### The driver",
                    "### The architecture", "## Trace excerpt", "## Reproducer",
                    "## What a fix has to achieve", "## Upstream"):
        assert f"\n{heading}\n" in page, heading
    for kernel, version in (("debian-6.12", "6.12.117"), ("debian-7.2", "7.2.13")):
        assert f"| {kernel} ({version}) | `replace/replace_ats`" in page
        assert f"cosim run --kernel {kernel} --tests replace" in page
    # Each kernel's own driver lines and trace, from its file.
    for k in f.kernels:
        assert k.kernel_source in page and k.evidence in page
    assert "VFIO_DEVICE_ATTACH_IOMMUFD_PT" in page and "IHI 0070 5.4" in page


def test_check_names_a_stale_or_extra_page_and_write_fixes_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(PAGES, tmp_path / "pages")
    page = tmp_path / "pages" / f"{FINDING}.md"
    page.write_text(page.read_text().replace("Completer Abort", "Completer Apology"))
    (tmp_path / "pages" / "gone.md").write_text("an old finding\n")
    assert main(["findings", "--check", str(tmp_path / "pages")]) == 1
    err = capsys.readouterr().err
    assert f"{FINDING}.md" in err and "gone.md" in err
    assert main(["findings", "--write", str(tmp_path / "pages")]) == 0
    assert page.read_text() == (PAGES / page.name).read_text()


def _expectation_dir(tmp_path: Path) -> Path:
    d = tmp_path / "exp"
    shutil.copytree(expectations.DIR, d)
    return d


def test_a_finding_without_description_or_with_disagreeing_records_is_refused(
        tmp_path: Path) -> None:
    d = _expectation_dir(tmp_path)
    (d / "findings" / f"{FINDING}.toml").unlink()
    with pytest.raises(findings.FindingsError, match="has no description"):
        findings.load_all(d)
    d = _expectation_dir(tmp_path / "b")
    f = d / "debian-7.2.toml"
    f.write_text(f.read_text().replace("invariant = 3", "invariant = 2"))
    with pytest.raises(findings.FindingsError, match="another title, invariant or rules"):
        findings.load_all(d)


def test_with_a_matrix_the_page_lists_its_cells_and_a_trace_excerpt(tmp_path: Path) -> None:
    run = replace_run(tmp_path / "cells", mode="strict")
    (f,) = [f for f in findings.load_all() if f.id == FINDING]
    lines = findings.observed(f, tmp_path / "cells")
    text = "\n".join(lines)
    assert "| debian-6.12 | strict | replace | yes |" in text
    timeline = json.loads((run / "summary.json").read_text())["analysis"]["violations"][0]
    assert timeline["timeline"][0] in text
