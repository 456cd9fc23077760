"""End to end: the hitless suite on each guest kernel, against the cosim SMMU and endpoint,
judged against the per-kernel expectations (tests/expectations/)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT, SuiteRun

from cosim import expectations, launcher, mutate
from cosim.compare import side_by_side
from cosim.expectations import load, mismatches

pytestmark = pytest.mark.e2e

KERNELS = ["debian-6.12", "debian-6.1", "debian-7.2"]


@pytest.mark.parametrize("kernel", KERNELS)
def test_hitless_suite_matches_expectations(kernel: str, suite_run: SuiteRun) -> None:
    exp = load(kernel)
    code, summary, out = suite_run(kernel)
    # A recorded finding is matched to violations by the family of its tests' trace labels:
    # every recorded test that ran must have written a test-begin label of its family, or its
    # violations would count as new findings wherever a run is judged by those keys.
    ran = {t["name"] for t in summary["tests"] if t["status"] in ("pass", "fail")}
    families = {label.split()[0] for _, label in
                mutate.tests_by_line(launcher.trace_of(Path(summary["run_dir"]))) if label.split()}
    unlabelled = sorted(t for f in exp.findings for t in f.get("tests", [])
                        if t in ran and expectations.test_family(t) not in families)
    assert not unlabelled, f"recorded tests with no test-begin label of their family " \
        f"{sorted(families)}: {unlabelled}"
    problems = mismatches(exp, summary)
    assert not problems, ("observed results differ from tests/expectations/"
                          f"{kernel}.toml:\n  " + "\n  ".join(problems)
                          + f"\nrun: {summary['run_dir']}")


def test_results_side_by_side_per_kernel(suite_run: SuiteRun) -> None:
    table = side_by_side([suite_run(k)[1] for k in KERNELS])
    (ROOT / "runs").mkdir(exist_ok=True)
    (ROOT / "runs" / "kernels-side-by-side.md").write_text(table + "\n")
    print("\n" + table)
    assert all(k.split("-")[1] in table for k in KERNELS)
