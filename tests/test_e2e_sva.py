"""End to end: area sva on Debian's 6.12 and 7.2, in the strict cache mode (the SMMU keeps
what the architecture lets it keep until a completed invalidation, and tears entry fetches).

A process binds its address space to the endpoint (iommu_sva_bind_device through the
guest-kmod test driver) and drives DMA, mm changes, an unbind and the seed's scenario (the
RID's domain switched 20 times each way under the PASID's ATS traffic) through its PASID. Asserted:
every guest case passes, the trace shows what each case claims (the SVA CD walked the CPU's
page tables, the ATC served PASID hits, the mm notifier sent ATC_INV with the PASID, PASID
traffic ran inside the RID's switch windows and never failed there, ATS Enable stayed set),
and the analysis finds nothing beyond each kernel's recorded findings.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_areas

from cosim import launcher, mutate
from cosim.trace import TraceReader

pytestmark = pytest.mark.e2e

SWITCHES = 20
CASES = ["sva_dma_untranslated", "sva_dma_ats", "sva_munmap_ats", "sva_munmap_untranslated",
         "sva_mprotect_ats", "sva_madvise_ats", "sva_unbind_ats", "svaswitch_dma_ats",
         "svaswitch_dma_untranslated", "svaswitch_identity_ats",
         "svaswitch_identity_untranslated"]


def _trace_facts(trace: Path) -> dict[str, int]:
    """Counts of what the sva cases must leave in the trace."""
    n = {"pasid_ats_ok": 0, "pasid_atc_hit": 0, "atc_inv_ssv": 0, "in_rid_window": 0,
         "in_rid_window_failed": 0, "ats_cleared_in_switch": 0, "pasid_cd_fetch": 0}
    label, rid_window = "", False
    with TraceReader(trace) as reader:
        for r in reader:
            k = r["k"]
            if k == "marker" and r.get("tag") in ("test-begin", "test-end"):
                # Between cases (teardown: the driver unbinds, ATS goes off) nothing counts.
                label = str(r.get("label") or "") if r.get("tag") == "test-begin" else ""
            elif k == "drv" and r.get("op") == "attach":
                rid_window = r.get("phase") == "begin"
            elif k == "cd_fetch" and r.get("ssid") and r.get("legal"):
                n["pasid_cd_fetch"] += 1
            elif k == "ats" and r.get("ssid") and r.get("status") == "SUCCESS":
                n["pasid_ats_ok"] += 1
            elif k == "atc_hit" and r.get("ssid"):
                n["pasid_atc_hit"] += 1
            elif k == "cmd" and r.get("op") == "ATC_INV" and r["f"].get("SSV"):
                n["atc_inv_ssv"] += 1
            elif k == "cfg" and label.startswith("sva") and "switch" in label \
                    and r.get("ats") is False:
                n["ats_cleared_in_switch"] += 1
            if rid_window and k == "dma" and r.get("ssid") and label.startswith("sva"):
                n["in_rid_window"] += 1
                n["in_rid_window_failed"] += r.get("ok") is False
    return n


@pytest.mark.parametrize("kernel", ["debian-6.12", "debian-7.2"])
def test_sva_area_strict(kernel: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # 20 switches each way instead of the suite's 100: the switch cases then put about a
    # million PASID records inside the RID's windows, and the whole strict trace takes
    # minutes less to write and judge. The suite's coherent run covers the full count.
    summary = run_areas(kernel, "sva", runs, "--model-arg=--cache-mode=strict",
                        f"--test-args=sva=--count {SWITCHES}")
    statuses = {t["name"]: t for t in summary["tests"]}
    for case in CASES:
        t = statuses.get(f"sva/{case}")
        assert t is not None, sorted(statuses)
        assert t["status"] == "pass", (case, t.get("reason"), t.get("output", [])[-12:])
    trace = launcher.trace_of(runs / "latest")
    n = _trace_facts(trace)
    assert n["pasid_cd_fetch"] > 0 and n["pasid_ats_ok"] > 0 and n["pasid_atc_hit"] > 0, n
    # munmap / mprotect / madvise / unbind: the driver's mm notifier invalidated the ATC for
    # the PASID (ATC_INV with SSV=1), as invariant 2 needs for SVA.
    assert n["atc_inv_ssv"] >= 4, n
    # The seed's scenario really ran: PASID traffic inside the RID's switch windows, never
    # failing, and ATS Enable never cleared during the switch cases.
    assert n["in_rid_window"] > 1000, n
    assert n["in_rid_window_failed"] == 0, n
    assert n["ats_cleared_in_switch"] == 0, n
    facts = mutate.facts_from_summary(summary, mutate.tests_by_line(trace))
    assert facts.verdict in ("clean", "violations"), facts.verdict
    recorded = mutate.recorded_findings(kernel)
    new = {k: e for k, e in facts.findings.items() if k not in recorded}
    assert not new, f"findings beyond the recorded ones: {new} (run {summary['run_dir']})"
