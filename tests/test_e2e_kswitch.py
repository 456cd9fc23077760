"""End to end: area kswitch on Debian's 6.12. The guest-kmod test driver switches its device
between its default domain (DMA, identity) and unmanaged paging domains under traffic; every
case passes in the guest, and the trace analysis finds nothing in the area beyond the kernel's
recorded findings (tests/expectations/debian-6.12.toml)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_areas

from cosim import launcher, mutate  # not their names: pytest would collect tests_by_line

pytestmark = pytest.mark.e2e

CASES = ["dmaswitch_untranslated", "dmaswitch_ats", "identityswitch_untranslated",
         "identityswitch_ats"]


def test_kswitch_area_on_612(products_612, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    summary = run_areas("debian-6.12", "kswitch", runs)
    statuses = {t["name"]: t for t in summary["tests"]}
    for case in CASES:
        t = statuses.get(f"kswitch/{case}")
        assert t is not None, sorted(statuses)
        assert t["status"] == "pass", (case, t.get("reason"), t.get("output", [])[-12:])
    trace = launcher.trace_of(runs / "latest")
    facts = mutate.facts_from_summary(summary, mutate.tests_by_line(trace))
    # The driver probes were loaded: the windows are the driver's own, not inferred.
    assert facts.verdict in ("clean", "violations"), facts.verdict
    recorded = mutate.recorded_findings("debian-6.12")
    new = {k: e for k, e in facts.findings.items() if k not in recorded}
    assert not new, f"findings beyond the recorded ones: {new} (run {summary['run_dir']})"
    # The identity cases (STE bypass <-> translate, ATS Enable toggling) have no recorded
    # finding at all: nothing may fire there.
    assert not [k for k in facts.findings if k.endswith("@identityswitch")], facts.findings
