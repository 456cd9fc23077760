"""End to end: area kswitch on Debian's 6.12. The guest-kmod test driver switches its device
between its default domain (DMA, identity) and unmanaged paging domains under traffic; every
case passes in the guest, and the trace analysis finds nothing in the area beyond the kernel's
recorded findings (tests/expectations/debian-6.12.toml). It reads the suite's run of 6.12."""

from __future__ import annotations

import pytest
from conftest import SuiteRun, judge_kswitch

pytestmark = pytest.mark.e2e


def test_kswitch_area_on_612(suite_run: SuiteRun) -> None:
    # The suite's run of 6.12 (kswitch among its areas, with the defaults). Each case passes
    # in the guest, nothing beyond the recorded findings: judge_kswitch asserts.
    _, facts = judge_kswitch("debian-6.12", suite_run("debian-6.12")[1])
    # The driver probes were loaded: the windows are the driver's own, not inferred.
    assert facts.verdict in ("clean", "violations"), facts.verdict
    # The identity cases (STE bypass <-> translate, ATS Enable toggling) have no recorded
    # finding at all: nothing may fire there.
    assert not [k for k in facts.findings if k.endswith("@identityswitch")], facts.findings
