"""End to end: a small `cosim matrix` (6.12 and 7.2, coherent and strict, the unmap and blocked
areas in one cell: four guest runs, one at a time) and its table checked cell by cell against the
expectation files; then `--collect` of the same cells gives the same table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, products_for

from cosim import expectations

pytestmark = pytest.mark.e2e

KERNELS = ["debian-6.12", "debian-7.2"]
MODES = ["coherent", "strict"]
AREAS = ("unmap", "blocked")  # one cell of both: a cell may hold several areas


def _matrix(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cosim", "matrix", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=3 * 3600)


def _cells(mdir: Path) -> dict[tuple[str, str, tuple[str, ...]], dict]:
    doc = json.loads((mdir / "matrix.json").read_text())
    return {(c["cell"]["kernel"], c["cell"]["mode"], tuple(c["cell"]["areas"])): c
            for c in doc["cells"]}


def test_small_matrix_matches_the_expectations(tmp_path: Path) -> None:
    for k in KERNELS:
        products_for(k)  # build first, so a build failure names itself
    r = _matrix("--kernels", ",".join(KERNELS), "--modes", ",".join(MODES),
                "--areas", "+".join(AREAS), "-j", "1", "--runs-dir", str(tmp_path / "runs"))
    out = r.stdout[-6000:] + r.stderr[-3000:]
    (mdir,) = (tmp_path / "runs").glob("matrix-*")
    cells = _cells(mdir)
    assert set(cells) == {(k, m, AREAS) for k in KERNELS for m in MODES}, out
    for (kernel, mode, areas), c in cells.items():
        exp = expectations.for_areas(expectations.load(kernel), areas)
        where = f"{kernel} {mode} {'+'.join(areas)} ({c['run_dir']}): "
        assert c["verdict"] == "expected", where + "; ".join(c["differences"]) + c["note"]
        assert c["findings"] == [f["id"] for f in exp.findings], where
        assert c["missing"] == [] and c["new"] == [], where
        # Both areas attach domains under traffic; none aborts where both domains map, and
        # no cache entry is used after its invalidation.
        assert c["attaches"] > 0 and c["aborts"] == 0 and c["stale"] == 0, where + str(c)
        run = Path(c["run_dir"])
        header = json.loads((run / "summary.json").read_text())["analysis"]["header"]
        assert header["cache_mode"] == mode, where
        assert Path(c["report"]).is_file(), where
        assert "traceEvents" in json.loads(Path(c["perfetto"]).read_text()), where
    assert r.returncode == 0, out
    html = (mdir / "index.html").read_text()
    assert html.count('<tr class="expected">') == len(cells) and "<script" not in html
    md = (mdir / "matrix.md").read_text()
    assert sum(ln.startswith("| debian-") for ln in md.splitlines()) == len(cells)

    # The CI farm's way: the table built again from the cells' run directories alone.
    again = _matrix("--collect", str(mdir / "cells"), "--runs-dir", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    (mdir2,) = (tmp_path / "again").glob("matrix-*")
    assert {k: (c["verdict"], c["findings"], c["attaches"]) for k, c in _cells(mdir2).items()} \
        == {k: (c["verdict"], c["findings"], c["attaches"]) for k, c in cells.items()}
