"""End to end against the cosim SMMU and endpoint: the real arm-smmu-v3 driver probes the
Python model, and the analysis catches an endpoint that ignores ATS invalidations."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import SuiteRun, products_for, run_suite

from cosim.analyzer import analyze_path
from cosim.launcher import TRACE_NAME
from cosim.trace import read_trace

pytestmark = pytest.mark.e2e


def test_driver_probes_the_cosim_smmu(suite_run: SuiteRun) -> None:
    # The suite's run of 6.12: its boot, then probe and kunit among its areas.
    code, summary, out = suite_run("debian-6.12")
    run = Path(summary["run_dir"])
    console = (run / "console.log").read_text(errors="replace")
    boot = console.split("COSIM-GUEST-READY")[0]
    assert re.search(r"arm-smmu-v3 9050000\.smmuv3: ias 48-bit, oas 48-bit", boot), boot[-3000:]
    assert "allocated" in boot and "entries for cmdq" in boot
    # A clean boot: no event, no command-queue error, no failed probe from the driver.
    bad = [ln for ln in boot.splitlines()
           if "arm-smmu-v3" in ln and re.search(r"event 0x|CMDQ|error|failed|timeout", ln)]
    assert bad == [], bad
    probe = {t["name"]: t["status"] for t in summary["tests"] if t["area"] == "probe"}
    assert probe.get("probe/smmu_probed") == "pass", summary["tests"]
    kunit = [t for t in summary["tests"] if t["area"] == "kunit"]
    assert len(kunit) >= 20 and all(t["status"] == "pass" for t in kunit), kunit
    # The model saw the driver's probe: IDR0 read, CR0 written with the queues enabled.
    tr = read_trace(run / TRACE_NAME)
    mmio = [r for r in tr.records if r["k"] == "mmio" and r.get("dev") == 0]
    assert any(r["rw"] == "r" and r["off"] == 0x0 for r in mmio), "IDR0 never read"
    cr0 = [r["val"] for r in mmio if r["rw"] == "w" and r["off"] == 0x20]
    assert cr0 and max(cr0) & 0xD == 0xD, f"CR0 never enabled SMMUEN|EVTQEN|CMDQEN: {cr0}"
    assert any(r["k"] == "sync" and r["state"] == "done" for r in tr.records)


def test_ignored_atc_invalidation_fails_invariant_2(tmp_path: Path, suite_run: SuiteRun) -> None:
    products_for("debian-6.12")
    _, bad, out = run_suite("debian-6.12", tmp_path / "bad", "--replaces", "20",
                            "--model-arg=--inv-ignore", tests="replace")
    by_rule = bad["analysis"]["counts"]["by_rule"]
    assert by_rule.get("inv2-invalidated-atc", 0) > 0, json.dumps(bad["analysis"])[:3000]
    report = (Path(bad["run_dir"]) / "report.txt").read_text()
    # The report points at the ignored invalidation: the device's completion with ignored=true.
    assert "inv2-invalidated-atc" in report
    assert re.search(r"atc_inv_cpl .*ignored=true", report), report[:4000]
    # The verdict was made while the model wrote the trace (launcher.LiveAnalysis), and it is
    # the one the finished file gives afterwards.
    assert "read while the model wrote it" in out, out[-3000:]
    after = analyze_path(Path(bad["run_dir"]) / TRACE_NAME)
    assert json.loads(json.dumps(after)) == bad["analysis"]
    # With a well-behaved endpoint no invariant-2 violation shows: the suite's run of 6.12
    # (replace among its areas).
    _, good, _ = suite_run("debian-6.12")
    assert good["analysis"]["counts"]["by_rule"].get("inv2-invalidated-atc", 0) == 0


def test_dma_through_iommufd_with_ats_uses_the_atc(tmp_path: Path) -> None:
    products_for("debian-6.12")
    code, summary, out = run_suite("debian-6.12", tmp_path / "runs", tests="dma")
    dma = {t["name"]: t["status"] for t in summary["tests"]}
    assert dma.get("dma/copy_ats") == "pass" and dma.get("dma/fill_ats") == "pass", dma
    assert code == 0 and summary["analysis"]["verdict"] == "clean", out[-3000:]
    tr = read_trace(Path(summary["run_dir"]) / TRACE_NAME)
    kinds = [r["k"] for r in tr.records]
    # ATS translation requests answered SUCCESS, then ATC hits serving translated DMA.
    assert any(r["k"] == "ats" and r["status"] == "SUCCESS" for r in tr.records)
    assert kinds.count("atc_hit") > 0 and kinds.count("atc_insert") > 0
    assert any(r["k"] == "dma" and r["ats"] and r["ok"] and r["atc_id"] is not None
               for r in tr.records)
    # The guest saw ATS enabled in config space, and the model mirrored it.
    assert any(r["k"] == "cfg" and r.get("ats") for r in tr.records)


def test_caching_mode_finds_no_missing_invalidation_on_612(tmp_path: Path) -> None:
    # With caches that keep every STE, CD and TLB entry until a command invalidates it, a
    # driver that forgot a CFGI or TLBI would show stale-cache or old-domain violations.
    products_for("debian-6.12")
    _, s, out = run_suite("debian-6.12", tmp_path / "runs", "--replaces", "50",
                          "--model-arg=--cache-mode=caching", tests="replace,blocked,unmap")
    assert s["analysis"]["header"]["cache_mode"] == "caching", s["analysis"]["header"]
    by_rule = s["analysis"]["counts"]["by_rule"]
    assert by_rule["stale-cache"] == 0 and by_rule["inv1-old-domain"] == 0, by_rule
    assert by_rule["inv2-invalidated-atc"] == 0, by_rule
    tr = read_trace(Path(s["run_dir"]) / TRACE_NAME)
    # Caching really happened: translations were served from the TLB and cached STEs.
    assert any(r["k"] == "xlate" and r.get("tlb") for r in tr.records)
    assert any(r["k"] == "ste_fetch" and r.get("cached") for r in tr.records)


def test_strict_mode_shows_only_the_known_cd_replace_finding_on_612(tmp_path: Path) -> None:
    # Strict mode (docs/architecture.md, "Cache modes"): invalidations take effect at the next
    # CMD_SYNC, invalid structures are cached, fetches tear, ATC invalidations complete just
    # before the timeout. Linux 6.12 waits for every CMD_SYNC, so nothing new may show: only
    # the recorded CD-replace finding (tests/expectations/debian-6.12.toml), in replace.
    products_for("debian-6.12")
    _, s, out = run_suite("debian-6.12", tmp_path / "runs", "--replaces", "50",
                          "--model-arg=--cache-mode=strict",
                          tests="replace,blocked,dma,unmap")
    assert s["analysis"]["header"]["cache_mode"] == "strict", s["analysis"]["header"]
    by_rule = s["analysis"]["counts"]["by_rule"]
    for rule in ("inv1-old-domain", "inv2-invalidated-atc", "inv3-neither-domain"):
        assert by_rule[rule] == 0, by_rule
    attaches = {a["n"]: a for a in s["analysis"]["attaches"]}
    for v in s["analysis"]["violations"]:
        assert v["rule"] in ("inv3-abort-during-attach", "entry-update"), v["message"]
        assert attaches[v["attach"]]["label"] in ("A->B", "B->C", "C->A"), v["message"]
    status = {t["name"]: t["status"] for t in s["tests"]}
    assert all(st == "pass" for name, st in status.items()
               if not name.startswith("replace/")), status
    tr = read_trace(Path(s["run_dir"]) / TRACE_NAME)
    # Invalidations were deferred to their CMD_SYNC, and every ATC invalidation completed in
    # time although the endpoint held each until just before the timeout.
    assert any(r["k"] == "inv_effect" for r in tr.records)
    assert all(r.get("effect") == "sync" for r in tr.records if r["k"] in ("cfgi", "tlbi"))
    assert not any(r["k"] == "atc_inv_sync" and r["state"] == "timeout" for r in tr.records)
