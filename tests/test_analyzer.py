"""Analyzer rules on synthetic traces: each violation class is found with its evidence, and
clean traces (replace, A->B->A, paging<->blocked, identity) stay clean."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "traces"))
from synth import (  # noqa: E402
    DEV,
    DOM_A,
    DOM_B,
    SID,
    Synth,
    cd,
    pack,
    ste_abort,
    ste_bypass,
    ste_s1,
)

from cosim.analyzer import analyze_file  # noqa: E402
from cosim.arch.cd import CD, cd_used  # noqa: E402
from cosim.arch.domain import ABORT, BYPASS, Domain  # noqa: E402
from cosim.arch.ste import STE, ste_used  # noqa: E402

PAGES = (0x1000, 0x2000, 0x3000)
STE_A, STE_B = ste_s1(0x9000), ste_s1(0xA000)
CD_A, CD_B = cd(1, 0x40000), cd(2, 0x80000)


def run(tmp_path: Path, s: Synth, name: str = "t.jsonl"):
    return analyze_file(s.write(tmp_path / name))


def marker_clean(an) -> bool:
    """No rule fired. These traces have only the tests' userspace markers (no driver probes),
    so an attach-bearing trace is 'incomplete', never 'clean' (tests/test_analyzer_driver.py
    covers the driver windows on traces the real model writes)."""
    marker_only = bool(an.attaches) and all(a.source == "marker" for a in an.attaches)
    if marker_only:
        assert any("no driver probes" in w for w in an.incomplete), an.incomplete
    return not an.violations and an.verdict == ("incomplete" if marker_only else "clean")


def rules(an) -> list[str]:
    return [v.rule for v in an.violations]


def traffic(s: Synth, dom: Domain | None, ste: list[int] | None = None, c: list[int] | None = None,
            pages=PAGES) -> None:
    for p in pages:
        if ste is not None:
            s.ste(ste)
        if c is not None:
            s.cd(c)
        s.translate(p, dom)


def replace(s: Synth, old: Domain | None, new: Domain | None, ste_new: list[int] | None = None,
            c_new: list[int] | None = None, during_old: bool = True, value: int = 1) -> None:
    """attach-begin, the driver's commands (mixed traffic inside), attach-end."""
    s.marker("attach-begin", value)
    if during_old:
        s.translate(PAGES[0], old)
    s.cfgi()
    s.sync()
    if ste_new is not None:
        s.ste(ste_new)
    if c_new is not None:
        s.cd(c_new)
    s.translate(PAGES[1], new)
    s.marker("attach-end", value)


def base_replace(s: Synth) -> None:
    traffic(s, DOM_A, STE_A, CD_A)
    replace(s, DOM_A, DOM_B, STE_B, CD_B)
    traffic(s, DOM_B, STE_B, CD_B)


# -- clean traces ------------------------------------------------------------------------------

def test_clean_replace(tmp_path: Path) -> None:
    s = Synth()
    base_replace(s)
    an = run(tmp_path, s)
    assert marker_clean(an), [v.message for v in an.violations]
    (a,) = an.attaches
    assert a.old[(SID, None)] == DOM_A and a.new[(SID, None)] == DOM_B
    assert a.new_from[(SID, None)] == "translation"
    assert a.verdict() == "clean" and a.commands == 2 and a.syncs == 1


def test_clean_a_b_a(tmp_path: Path) -> None:
    s = Synth()
    base_replace(s)
    replace(s, DOM_B, DOM_A, STE_A, CD_A, value=2)
    traffic(s, DOM_A, STE_A, CD_A)
    an = run(tmp_path, s)
    assert marker_clean(an), [v.message for v in an.violations]
    a1, a2 = an.attaches
    assert (a2.old[(SID, None)], a2.new[(SID, None)]) == (DOM_B, DOM_A)
    # DOM_A after the second attach is that attach's new domain, not the first one's old.
    assert a1.horizon == a2.begin


def test_clean_a_b_a_without_traffic_in_between(tmp_path: Path) -> None:
    s = Synth()
    traffic(s, DOM_A, STE_A, CD_A)
    s.marker("attach-begin", 1)
    s.cfgi()
    s.sync()
    s.marker("attach-end", 1)
    s.marker("attach-begin", 2)
    s.cfgi()
    s.sync()
    s.marker("attach-end", 2)
    traffic(s, DOM_A, STE_A, CD_A)
    an = run(tmp_path, s)
    assert marker_clean(an)


def test_clean_paging_blocked_paging(tmp_path: Path) -> None:
    s = Synth()
    traffic(s, DOM_A, STE_A, CD_A)
    s.marker("attach-begin", 1)
    s.cfgi()
    s.sync()
    s.ste(ste_abort(), cfg="abort")
    s.xlate(PAGES[0], ABORT, ok=False, silent=True)  # STE abort: silent (§5.2)
    s.dma(PAGES[0], ABORT, ok=False, err="fault:None")
    s.marker("attach-end", 1)
    for p in PAGES:  # blocked: every access aborts, as it must
        s.ste(ste_abort(), cfg="abort")
        s.xlate(p, ABORT, ok=False, silent=True)
        s.dma(p, ABORT, ok=False, err="fault:None")
    s.marker("attach-begin", 2)
    s.cfgi()
    s.sync()
    s.xlate(PAGES[0], ABORT, ok=False, silent=True)  # still blocked for a moment: expected
    s.ste(STE_A)
    s.cd(CD_A)
    s.translate(PAGES[1], DOM_A)
    s.marker("attach-end", 2)
    traffic(s, DOM_A, STE_A, CD_A)
    an = run(tmp_path, s)
    assert marker_clean(an), [v.message for v in an.violations]
    a1, a2 = an.attaches
    assert a1.new[(SID, None)] == ABORT and a2.old[(SID, None)] == ABORT


def test_bad_dom_objects_are_problems_not_domains(tmp_path: Path) -> None:
    s = Synth()
    traffic(s, DOM_A, STE_A, CD_A)
    s.xlate(PAGES[0], DOM_B)
    s.recs[-1]["dom"] = {"kind": "s1", "asid": 2}               # no ttb
    s.xlate(PAGES[1], DOM_B)
    s.recs[-1]["dom"] = DOM_B.label()                           # a label is not parsed back
    replace(s, DOM_A, DOM_B, STE_B, CD_B)
    traffic(s, DOM_B, STE_B, CD_B)
    an = run(tmp_path, s)
    # The reader refuses both records (schema 2: dom is an object or null) and says which.
    bad = [p for p in an.view.problems if "xlate.dom" in p]
    assert len(bad) == 2, an.view.problems
    # The unreadable records were not taken as the old domain B.
    assert an.attaches[0].old[(SID, None)] == DOM_A and rules(an) == []


def test_config_error_before_attach_is_not_the_old_domain(tmp_path: Path) -> None:
    s = Synth()
    traffic(s, DOM_A, STE_A, CD_A)
    s.xlate(PAGES[0], None, ok=False, fault="C_BAD_CD")  # a glitch, not a domain
    s.dma(PAGES[0], None, ok=False, err="fault:C_BAD_CD")
    replace(s, DOM_A, DOM_B, STE_B, CD_B)
    traffic(s, DOM_B, STE_B, CD_B)
    an = run(tmp_path, s)
    assert an.attaches[0].old[(SID, None)] == DOM_A
    assert marker_clean(an)


def test_clean_identity_to_paging(tmp_path: Path) -> None:
    s = Synth()
    traffic(s, BYPASS, ste_bypass())
    replace(s, BYPASS, DOM_A, STE_A, CD_A)
    traffic(s, DOM_A, STE_A, CD_A)
    an = run(tmp_path, s)
    assert marker_clean(an)
    assert an.attaches[0].old[(SID, None)] == BYPASS


def test_reattach_same_domain_is_not_a_violation(tmp_path: Path) -> None:
    s = Synth()
    traffic(s, DOM_A, STE_A, CD_A)
    replace(s, DOM_A, DOM_A, STE_A, CD_A)
    traffic(s, DOM_A, STE_A, CD_A)
    an = run(tmp_path, s)
    assert marker_clean(an)
    assert an.attaches[0].new[(SID, None)] == DOM_A  # from the configuration fetched after


# -- a: invariant 1 ----------------------------------------------------------------------------

def test_inv1_old_domain_translation_after_attach_end(tmp_path: Path) -> None:
    s = Synth()
    traffic(s, DOM_A, STE_A, CD_A)
    replace(s, DOM_A, DOM_B, STE_B, CD_B)
    bad = s.xlate(PAGES[2], DOM_A, tlb=True)  # the old domain served after attach-end
    traffic(s, DOM_B, STE_B, CD_B)
    an = run(tmp_path, s)
    assert rules(an) == ["inv1-old-domain"]
    v = an.violations[0]
    assert v.index == bad and v.sid == SID and v.ssid is None and v.attach == 1
    assert v.entries["old_dom"] == DOM_A.label() and v.entries["new_dom"] == DOM_B.label()
    j = v.to_json(an.view)
    assert any(line.startswith("> ") and "xlate" in line and "tlb=true" in line
               for line in j["timeline"])
    assert 10 <= len(j["timeline"]) <= 21
    assert an.attaches[0].verdict() == "violations"


def test_inv1_stale_atc_entry_used_after_attach_end(tmp_path: Path) -> None:
    s = Synth()
    traffic(s, DOM_A, STE_A, CD_A)
    s.ats(PAGES[0], DOM_A)
    s.atc_insert(7, PAGES[0], DOM_A)
    s.dma(PAGES[0], DOM_A, ats=True, atc_id=7)
    replace(s, DOM_A, DOM_B, STE_B, CD_B)
    s.atc_hit(7, PAGES[0], DOM_A)
    s.dma(PAGES[0], DOM_A, ats=True, atc_id=7)
    traffic(s, DOM_B, STE_B, CD_B)
    an = run(tmp_path, s)
    assert rules(an) == ["inv1-old-domain"]
    v = an.violations[0]
    assert v.entries["atc_ids"] == [7]
    assert v.entries["kinds"] == {"atc_hit": 1, "dma": 1} and v.count == 2


def test_inv1_new_domain_from_configuration(tmp_path: Path) -> None:
    # After attach-end nothing translates with the new domain (stale TLB serves A), but the
    # STE/CD fetched after attach-end denote B, a domain the trace shows elsewhere.
    s = Synth()
    s.translate(0x9000, DOM_B, sid=9)  # B is used by another stream: the domain is known
    traffic(s, DOM_A, STE_A, CD_A)
    s.marker("attach-begin", 1)
    s.cfgi()
    s.sync()
    s.marker("attach-end", 1)
    s.ste(STE_B)
    s.cd(CD_B)
    s.xlate(PAGES[0], DOM_A, tlb=True)
    an = run(tmp_path, s)
    # B was only seen on sid 9: with no evidence for this stream the attach is unverifiable.
    assert marker_clean(an)
    s2 = Synth()
    traffic(s2, DOM_B, STE_B, CD_B)
    traffic(s2, DOM_A, STE_A, CD_A)
    s2.marker("attach-begin", 1)
    s2.cfgi()
    s2.sync()
    s2.marker("attach-end", 1)
    s2.ste(STE_B)
    s2.cd(CD_B)
    s2.xlate(PAGES[0], DOM_A, tlb=True)
    an = run(tmp_path, s2, "t2.jsonl")
    assert rules(an) == ["inv1-old-domain"]
    assert an.attaches[0].new_from[(SID, None)] == "config"


# -- b: invariant 2 ----------------------------------------------------------------------------

def _atc_setup(s: Synth) -> None:
    traffic(s, DOM_A, STE_A, CD_A)
    for n, p in enumerate(PAGES, start=1):
        s.ats(p, DOM_A)
        s.atc_insert(n, p, DOM_A)


def test_inv2_entry_used_after_invalidation_completed(tmp_path: Path) -> None:
    s = Synth()
    _atc_setup(s)
    s.atc_inv(100, addr=0x1000, size=0x1000)   # covers entry 1 only
    s.emit("atc_inv_rx", dev=DEV, sid=SID, ssid=None, addr=0x1000, size=0x1000, g=False,
           inv_id=100, dropped=[])
    s.emit("atc_inv_cpl", dev=DEV, inv_id=100, ignored=True)
    s.sync()
    s.atc_hit(2, PAGES[1], DOM_A)                 # not covered: fine
    s.dma(PAGES[1], DOM_A, ats=True, atc_id=2)
    bad = s.atc_hit(1, PAGES[0], DOM_A)
    s.dma(PAGES[0], DOM_A, ats=True, atc_id=1)
    an = run(tmp_path, s)
    assert rules(an) == ["inv2-invalidated-atc"]
    v = an.violations[0]
    assert v.index == bad and v.count == 2
    assert v.entries["atc_id"] == 1 and v.entries["inv"]["id"] == 100


def test_inv2_use_before_completion_is_allowed(tmp_path: Path) -> None:
    s = Synth()
    _atc_setup(s)
    s.atc_inv(100)
    s.cmd("CMD_SYNC", CS=0)
    s.emit("sync", idx=s.cmd_idx, cs="NONE", state="wait")
    s.atc_hit(1, PAGES[0], DOM_A)  # the sync has not completed yet
    s.emit("atc_inv_sync", ids=[100], state="done")
    s.emit("sync", idx=s.cmd_idx, cs="NONE", state="done")
    s.ats(PAGES[0], DOM_A)
    s.atc_insert(9, PAGES[0], DOM_A)  # re-fetched after the invalidation: a new entry
    s.atc_hit(9, PAGES[0], DOM_A)
    an = run(tmp_path, s)
    assert marker_clean(an)


def test_inv2_failed_sync_does_not_complete(tmp_path: Path) -> None:
    s = Synth()
    _atc_setup(s)
    s.atc_inv(100)
    s.cmd("CMD_SYNC", CS=0)
    s.emit("sync", idx=s.cmd_idx, cs="NONE", state="wait")
    s.emit("atc_inv_sync", ids=[100], state="timeout")
    s.emit("sync", idx=s.cmd_idx, cs="NONE", state="fail", err="CERROR_ATC_INV_SYNC")
    s.sync()
    s.atc_hit(1, PAGES[0], DOM_A)
    an = run(tmp_path, s)
    assert marker_clean(an)


def test_inv2_pasid_scoped_invalidation(tmp_path: Path) -> None:
    s = Synth()
    traffic(s, DOM_A, STE_A, CD_A)
    s.atc_insert(1, 0x1000, DOM_A, ssid=3)
    s.atc_insert(2, 0x1000, DOM_B, ssid=4)
    s.atc_inv(100, ssid=3)
    s.sync()
    s.atc_hit(2, 0x1000, DOM_B, ssid=4)   # other PASID: not covered
    an = run(tmp_path, s)
    assert marker_clean(an)
    s.atc_hit(1, 0x1000, DOM_A, ssid=3)
    an = run(tmp_path, s, "t2.jsonl")
    assert rules(an) == ["inv2-invalidated-atc"] and an.violations[0].ssid == 3


# -- c: invariant 3 ----------------------------------------------------------------------------

def test_inv3_abort_at_address_both_domains_map(tmp_path: Path) -> None:
    s = Synth()
    traffic(s, DOM_A, STE_A, CD_A)
    s.marker("attach-begin", 1)
    s.cfgi()
    s.sync()
    bad = s.xlate(PAGES[0], None, ok=False, fault="C_BAD_STE")
    s.event("C_BAD_STE", PAGES[0])
    s.dma(PAGES[0], None, ok=False, err="fault:C_BAD_STE")
    s.xlate(0x7000, None, ok=False, fault="C_BAD_STE")  # mapped by neither: not counted
    s.ste(STE_B)
    s.cd(CD_B)
    s.translate(PAGES[1], DOM_B)
    s.marker("attach-end", 1)
    traffic(s, DOM_B, STE_B, CD_B)
    an = run(tmp_path, s)
    assert "inv3-abort-during-attach" in rules(an)
    v = next(v for v in an.violations if v.rule == "inv3-abort-during-attach")
    assert v.index == bad and v.entries["addresses"] == [PAGES[0]] and v.count == 3
    assert v.entries["old_dom"] == DOM_A.label() and v.entries["new_dom"] == DOM_B.label()


def test_inv3_walk_fault_in_new_domain_is_not_an_abort(tmp_path: Path) -> None:
    s = Synth()
    traffic(s, DOM_A, STE_A, CD_A)
    s.marker("attach-begin", 1)
    s.ste(STE_B)
    s.cd(CD_B)
    s.xlate(PAGES[2], DOM_B, ok=False, fault="F_TRANSLATION")  # B's own tables: not mapped yet
    s.event("F_TRANSLATION", PAGES[2])
    s.marker("attach-end", 1)
    traffic(s, DOM_B, STE_B, CD_B)
    an = run(tmp_path, s)
    assert marker_clean(an), [v.message for v in an.violations]


# -- d: STE/CD states fetched during an update --------------------------------------------------

def test_entry_update_breaking_ste_state(tmp_path: Path) -> None:
    s = Synth()
    traffic(s, BYPASS, ste_bypass())
    s.marker("attach-begin", 1)
    bad = s.ste(ste_abort(), cfg="abort")  # detach-then-attach: a blocking state in between
    s.marker("attach-end", 1)
    traffic(s, DOM_A, STE_A, CD_A)
    an = run(tmp_path, s)
    assert rules(an) == ["entry-update"]
    v = an.violations[0]
    assert v.index == bad and v.entries["structure"] == "STE" and "Config" in v.entries["fields"]
    assert v.entries["old"][0] == f"{ste_bypass()[0]:#018x}"


def test_entry_update_hitless_mix_is_clean(tmp_path: Path) -> None:
    s = Synth()
    traffic(s, BYPASS, ste_bypass())
    s.marker("attach-begin", 1)
    # Step 1 of a hitless update: new values in bits bypass does not use (S1 fields).
    mixed = list(ste_bypass())
    mixed[0] |= STE_A[0] & STE["S1ContextPtr"].word_mask
    mixed[1] |= STE_A[1] & (STE["S1DSS"].word_mask | STE["EATS"].word_mask)
    s.ste(mixed, cfg="bypass")
    s.translate(PAGES[0], BYPASS)
    s.ste(STE_A)
    s.cd(CD_A)
    s.translate(PAGES[1], DOM_A)
    s.marker("attach-end", 1)
    traffic(s, DOM_A, STE_A, CD_A)
    an = run(tmp_path, s)
    assert marker_clean(an), [v.message for v in an.violations]


def test_entry_update_illegal_state(tmp_path: Path) -> None:
    s = Synth()
    traffic(s, DOM_A, STE_A, CD_A)
    s.marker("attach-begin", 1)
    weird = list(STE_B)
    weird[0] |= STE["S1Fmt"].word_mask   # a state that is neither old nor new, and illegal
    s.ste(weird, legal=False)
    s.marker("attach-end", 1)
    traffic(s, DOM_B, STE_B, CD_B)
    an = run(tmp_path, s)
    assert rules(an) == ["entry-update"]
    assert an.violations[0].entries["legal"] is False
    assert "illegal" in an.violations[0].message and "S1Fmt" in an.violations[0].message


def test_entry_update_breaking_cd_state(tmp_path: Path) -> None:
    s = Synth()
    traffic(s, DOM_A, STE_A, CD_A)
    s.marker("attach-begin", 1)
    cleared = list(CD_A)
    cleared[0] &= ~CD["V"].word_mask
    s.cd(cleared, legal=False)
    s.marker("attach-end", 1)
    traffic(s, DOM_B, STE_A, CD_B)
    an = run(tmp_path, s)
    assert "entry-update" in rules(an)
    v = next(v for v in an.violations if v.rule == "entry-update")
    assert v.entries["structure"] == "CD" and v.ssid == 0 and "V" in v.entries["fields"]


# -- e: caching mode ----------------------------------------------------------------------------

def test_stale_cached_ste_after_cfgi(tmp_path: Path) -> None:
    s = Synth(cache_mode="caching")
    s.ste(STE_A)                  # loaded
    s.ste(STE_A, cached=True)
    s.ste(STE_B)                  # memory now says B (loaded again)
    s.cfgi()
    s.sync()
    bad = s.ste(STE_A, cached=True)  # but the old content is served from the cache
    an = run(tmp_path, s)
    assert rules(an) == ["stale-cache"]
    v = an.violations[0]
    assert v.index == bad and v.entries["cache"] == "STE" and v.entries["changed"] is True
    assert v.entries["invalidation"]["op"] == "CFGI_STE"
    # The same trace in coherent mode has no caches to check.
    s.header["cache_mode"] = "coherent"
    assert marker_clean(run(tmp_path, s, "coherent.jsonl"))


def test_stale_tlb_after_tlbi(tmp_path: Path) -> None:
    s = Synth(cache_mode="caching")
    s.xlate(0x1000, DOM_A, pa=0x5000)              # walk: loads the TLB
    s.xlate(0x1000, DOM_A, pa=0x5000, tlb=True)    # hit: fine
    s.tlbi("TLBI_NH_ASID", asid=1, vmid=0)
    s.sync()
    s.xlate(0x1000, DOM_A, pa=0x6000)              # re-walk: the page moved
    bad = s.xlate(0x1000, DOM_A, pa=0x5000, tlb=True)
    s.xlate(0x1000, DOM_B, pa=0x5000, tlb=True)    # other ASID: not covered by the TLBI
    an = run(tmp_path, s)
    assert rules(an) == ["stale-cache"]
    assert an.violations[0].index == bad and an.violations[0].entries["cache"] == "TLB"


def test_stale_tlb_without_change_evidence_is_still_a_violation(tmp_path: Path) -> None:
    """An entry a completed TLBI covered must not be used at all, changed content or not."""
    s = Synth(cache_mode="caching")
    s.xlate(0x1000, DOM_A, pa=0x5000)
    s.tlbi("TLBI_NH_VA", asid=1, vmid=0, addr=0x1000, size=0x1000)
    s.sync()
    s.xlate(0x1000, DOM_A, pa=0x5000, tlb=True)
    an = run(tmp_path, s)
    assert rules(an) == ["stale-cache"] and not an.warnings
    assert an.violations[0].entries["changed"] is False


def test_ats_completion_from_a_stale_tlb_entry(tmp_path: Path) -> None:
    """`ats` tlb=true is a TLB hit like an untranslated one (the model traces it)."""
    s = Synth(cache_mode="caching")
    s.ats(0x1000, DOM_A, pa=0x5000)                 # walk: loads the TLB
    s.tlbi("TLBI_NH_ASID", asid=1, vmid=0)
    s.sync()
    bad = s.ats(0x1000, DOM_A, pa=0x5000, tlb=True)
    an = run(tmp_path, s)
    assert rules(an) == ["stale-cache"] and an.violations[0].index == bad


def test_tlbi_before_sync_completes_is_not_stale(tmp_path: Path) -> None:
    s = Synth(cache_mode="caching")
    s.xlate(0x1000, DOM_A, pa=0x5000)
    s.tlbi("TLBI_NH_ASID", asid=1, vmid=0)
    s.xlate(0x1000, DOM_A, pa=0x6000)
    s.xlate(0x1000, DOM_A, pa=0x5000, tlb=True)  # no CMD_SYNC yet
    an = run(tmp_path, s)
    assert marker_clean(an) and not an.warnings


# -- layouts --------------------------------------------------------------------------------

def test_used_bits_follow_config() -> None:
    assert STE.fields_in(ste_used(tuple(ste_abort()))) == ["V", "Config"]
    s1 = STE.fields_in(ste_used(tuple(STE_A)))
    assert "S1ContextPtr" in s1 and "S2TTB" not in s1 and "SHCFG" not in s1
    s2 = STE.fields_in(ste_used(tuple(pack(STE, V=1, Config=0b110))))
    assert "S2TTB" in s2 and "S1ContextPtr" not in s2
    assert STE.fields_in(ste_used(tuple(pack(STE, Config=0b101)))) == ["V"]
    cd_fields = CD.fields_in(cd_used(tuple(CD_A)))
    assert "TTB0" in cd_fields and "TTB1" not in cd_fields and "ASID" in cd_fields
    assert CD.fields_in(cd_used(tuple(pack(CD, ASID=3)))) == ["V"]


@pytest.mark.parametrize("torn", ['{"t": 99999, "k": "xla', "garbage"])
def test_torn_last_line_is_reported_and_the_rest_analyzed(tmp_path: Path, torn: str) -> None:
    s = Synth()
    traffic(s, DOM_A, STE_A, CD_A)
    replace(s, DOM_A, DOM_B, STE_B, CD_B)
    s.xlate(PAGES[2], DOM_A)
    traffic(s, DOM_B, STE_B, CD_B)
    an = analyze_file(s.write(tmp_path / "torn.jsonl", torn=torn))
    assert an.to_json()["torn"] is True
    assert rules(an) == ["inv1-old-domain"]


def test_inv1_blocked_still_aborting_after_attach_to_paging(tmp_path: Path) -> None:
    s = Synth()
    s.ste(ste_abort(), cfg="abort")
    s.xlate(PAGES[0], ABORT, ok=False, silent=True)
    s.marker("attach-begin", 1)
    s.ste(STE_A)
    s.cd(CD_A)
    s.marker("attach-end", 1)
    bad = s.xlate(PAGES[1], ABORT, ok=False, silent=True)  # the blocked STE still in use
    traffic(s, DOM_A, STE_A, CD_A)
    an = run(tmp_path, s)
    assert rules(an) == ["inv1-old-domain"] and an.violations[0].index == bad


def test_pasid_attach_is_checked_on_its_own_stream(tmp_path: Path) -> None:
    s = Synth()
    for p in PAGES:
        s.translate(p, DOM_A, ssid=5)
        s.translate(p, BYPASS)  # the RID stream is unaffected by the PASID attach
    s.marker("pasid-attach-begin", 5)
    s.translate(PAGES[0], DOM_B, ssid=5)
    s.marker("pasid-attach-end", 5)
    s.translate(PAGES[0], BYPASS)
    bad = s.xlate(PAGES[1], DOM_A, ssid=5)
    s.translate(PAGES[2], DOM_B, ssid=5)
    an = run(tmp_path, s)
    (a,) = an.attaches
    assert a.kind == "pasid-attach" and a.keys == [(SID, 5)]
    assert rules(an) == ["inv1-old-domain"]
    assert an.violations[0].index == bad and an.violations[0].ssid == 5


def test_test_boundary_ends_the_after_attach_window(tmp_path: Path) -> None:
    # Between tests the guest tears down and builds new domains without attach markers; a
    # domain reused by the next test must not count as "the old domain after attach-end".
    s = Synth()
    traffic(s, DOM_A, STE_A, CD_A)
    replace(s, DOM_A, DOM_B, STE_B, CD_B)
    traffic(s, DOM_B, STE_B, CD_B)
    s.marker("test-end", 1)
    s.marker("test-begin", 2)
    traffic(s, DOM_A, STE_A, CD_A)
    an = run(tmp_path, s)
    assert marker_clean(an), [v.message for v in an.violations]
    # Without the boundary the same translations are a violation of invariant 1.
    s2 = Synth()
    traffic(s2, DOM_A, STE_A, CD_A)
    replace(s2, DOM_A, DOM_B, STE_B, CD_B)
    traffic(s2, DOM_B, STE_B, CD_B)
    traffic(s2, DOM_A, STE_A, CD_A)
    assert rules(run(tmp_path, s2, "u.jsonl")) == ["inv1-old-domain"]


def test_entry_update_breaking_cd_state_in_caching_mode(tmp_path: Path) -> None:
    # In caching mode the new CD may only ever be seen as a cached fetch after the window; the
    # V=0 intermediate state is still a breaking update, not the final state of a detach.
    s = Synth(cache_mode="caching")
    traffic(s, DOM_A, STE_A, CD_A)
    s.marker("attach-begin", 1)
    cleared = list(CD_A)
    cleared[0] &= ~CD["V"].word_mask
    s.cd(cleared, legal=False)
    s.marker("attach-end", 1)
    for p in PAGES:
        s.ste(STE_A, cached=True)
        s.cd(CD_B, cached=True)
        s.translate(p, DOM_B)
    an = run(tmp_path, s)
    v = next(v for v in an.violations if v.rule == "entry-update")
    assert v.entries["structure"] == "CD" and "V" in v.entries["fields"]
