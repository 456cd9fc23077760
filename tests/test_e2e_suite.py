"""End to end: the hitless suite on each guest kernel, against the cosim SMMU and endpoint,
judged against the per-kernel expectations (tests/expectations/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, products_for

from cosim.compare import side_by_side
from cosim.expectations import load, mismatches

pytestmark = pytest.mark.e2e

KERNELS = ["debian-6.12", "debian-6.1", "debian-7.2"]
_summaries: dict[str, dict] = {}


def run_suite(kernel: str, runs_dir: Path, *extra: str,
              tests: str = "all") -> tuple[int, dict, str]:
    products_for(kernel)  # build first, so a build failure names itself
    r = subprocess.run([sys.executable, "-m", "cosim", "run", "--quiet-setup", "--kernel", kernel,
                        "--tests", tests, "--runs-dir", str(runs_dir), *extra],
                       cwd=ROOT, capture_output=True, text=True, timeout=1800)
    f = runs_dir / "latest" / "summary.json"
    assert f.exists(), f"no summary.json\nstdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-4000:]}"
    return r.returncode, json.loads(f.read_text()), r.stdout + r.stderr


@pytest.mark.parametrize("kernel", KERNELS)
def test_hitless_suite_matches_expectations(kernel: str, tmp_path: Path) -> None:
    exp = load(kernel)
    code, summary, out = run_suite(kernel, tmp_path / "runs")
    _summaries[kernel] = summary
    assert summary["guest"] == "booted", out[-4000:]
    problems = mismatches(exp, summary)
    assert not problems, ("observed results differ from tests/expectations/"
                          f"{kernel}.toml:\n  " + "\n  ".join(problems)
                          + f"\nrun: {summary['run_dir']}")


def test_results_side_by_side_per_kernel() -> None:
    missing = [k for k in KERNELS if k not in _summaries]
    assert not missing, f"suite did not run for {missing}"
    table = side_by_side([_summaries[k] for k in KERNELS])
    (ROOT / "runs").mkdir(exist_ok=True)
    (ROOT / "runs" / "kernels-side-by-side.md").write_text(table + "\n")
    print("\n" + table)
    assert all(k.split("-")[1] in table for k in KERNELS)
