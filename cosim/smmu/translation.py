"""The translation procedure for one incoming transaction (Arm IHI 0070 §3.3, chapter 15).

SMMU enable / GBPA -> stream table -> STE -> (SubstreamID -> CD) -> TLB or table walk, with
every failure turned into the architected event (§7.3) and a failed `Translation`. Ordinary
transactions and ATS Translation Requests share this path; `smmu.py` maps the outcome of the
latter to a PCIe completion status.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cosim.arch.cd import CD_BYTES, cd_words
from cosim.arch.domain import ABORT, Domain
from cosim.arch.domain import BYPASS as BYPASS_DOMAIN
from cosim.arch.events import CLASS_CD, CLASS_IN, CLASS_TT, EVENT_RECORD
from cosim.arch.registers import CR2, GBPA
from cosim.arch.ste import EATS_ABORT, S1DSS_TERMINATE, STE_BYTES, ste_words
from cosim.translation_agent import Access, Permissions, TranslationResult

from .caches import KIND_NESTED, KIND_S1, KIND_S2, DecodeMemo, TlbEntry, global_tag
from .context_descriptor import Cd, cd_address, decode_cd, select_substream
from .event_queue import EventRecord
from .stream_table import Ste, decode_ste, effective_eats, locate_ste
from .walker import WalkResult, tbi_strip, translate_stage1, translate_stage2

if TYPE_CHECKING:
    from .smmu import SMMUv3

log = logging.getLogger(__name__)

PAGE = 4096
_FETCH_ADDR_LO = EVENT_RECORD["FetchAddr"].word_lo
UPPER_HALF_BIT = 55

# Outcome categories (what kind of thing decided the result), used for ATS status mapping.
OK = "ok"
GBPA_ABORT = "gbpa_abort"
STE_ABORT = "ste_abort"
BYPASS = "bypass"            # stage 1 bypassed by S1DSS and no stage 2
STE_BYPASS = "ste_bypass"    # STE.Config = bypass
CONFIG_ERROR = "config_error"
TRANSLATION_FAULT = "translation_fault"
WALK_ABORT = "walk_abort"
ATS_FORBIDDEN = "ats_forbidden"


@dataclass
class Translation:
    """Result of translating one untranslated access."""

    ok: bool
    pa: int = 0
    size: int = 0
    perm: str = ""
    dom: Domain | None = None     # None: no domain translated it (a configuration error)
    fault: str | None = None      # event name, or None (success or silent abort)
    sid: int = 0
    ssid: int | None = None
    iova: int = 0
    tlb: bool = False
    ste: int | None = None        # STE address
    cd: int | None = None         # CD address
    outcome: str = OK
    event: EventRecord | None = None

    def result(self, access: Access) -> TranslationResult:
        """What the requesting device sees of it."""
        return TranslationResult(self.ok, self.pa, self.size,
                                 Permissions.from_code(self.perm, access.priv), self.dom,
                                 self.fault)


def bad_ats_treq(sid: int, ssid: int | None, iova: int, access: Access) -> EventRecord:
    """§7.3.6 F_BAD_ATS_TREQ: the request's address and the permissions it asked for."""
    return EventRecord("F_BAD_ATS_TREQ", sid, ssid,
                       {"InputAddr": iova, "RnW": int(not access.write), "PnU": int(access.priv),
                        "InD": int(access.exec)})


def s1_dom(cd: Cd, va: int) -> Domain:
    """Stage 1 is tagged by CD.ASID and the TTB that walks `va` (TTB1 for the upper half)."""
    ttb = cd.ttb1 if (va >> UPPER_HALF_BIT) & 1 and cd.regime and cd.regime.ttb1 else cd.ttb0
    return Domain.stage1(cd.asid, ttb)


def s2_dom(ste: Ste) -> Domain:
    assert ste.s2 is not None
    return Domain.stage2(ste.s2vmid, ste.s2.ttb)


class Translator:
    def __init__(self, dev: SMMUv3) -> None:
        self.dev = dev
        # Decoding is memoised on the fetched bytes; the fetch itself happens every time.
        self._decode_ste = DecodeMemo(decode_ste, ste_words)
        self._decode_cd = DecodeMemo(decode_cd, cd_words)

    # -- configuration -------------------------------------------------------------------
    def get_ste(self, sid: int, ssid: int | None) -> tuple[Ste | None, EventRecord | None]:
        dev = self.dev
        cached = dev.config_cache.get_ste(sid)
        if cached is not None:
            self._trace_ste(sid, cached, True)
            return cached, None
        loc = locate_ste(dev.mem, dev.regs["STRTAB_BASE"], dev.regs["STRTAB_BASE_CFG"],
                         dev.options, sid, ssid)
        if loc.addr is None:
            return None, loc.event
        got = dev.fetcher.fetch(loc.addr, STE_BYTES)
        if got is None:
            return None, EventRecord("F_STE_FETCH", sid, ssid,
                                     {"FetchAddr": loc.addr >> _FETCH_ADDR_LO})
        ste = self._decode_ste(loc.addr, got.data, dev.options)
        self._trace_ste(sid, ste, False, got.torn)
        # §3.21.3: a fetched STE is cached whether valid or not (caching and strict modes), so
        # making it valid needs a CFGI_STE before the SMMU sees it.
        dev.config_cache.put_ste(sid, ste, ste.legal)
        return ste, None

    def _trace_ste(self, sid: int, ste: Ste, cached: bool,
                   torn: tuple[int, ...] = ()) -> None:
        rec = {"sid": sid, "addr": ste.addr, "qw": ste.words, "cached": cached,
               "cfg": ste.cfg, "legal": ste.legal}
        if ste.why:
            rec["why"] = ste.why
        if self.dev.options.strict and not cached:
            rec["torn"] = list(torn)
        self.dev.trace.emit("ste_fetch", **rec)

    def get_cd(self, ste: Ste, sid: int, ssid: int | None, index: int,
               iova: int) -> tuple[Cd | None, EventRecord | None]:
        dev = self.dev
        cached = dev.config_cache.get_cd(sid, index)
        if cached is not None:
            self._trace_cd(sid, ssid, cached, True)
            return cached, None

        ipa_to_pa = None
        if ste.s2_enabled:
            def ipa_to_pa(ipa: int) -> tuple[int | None, EventRecord | None]:
                assert ste.s2 is not None
                w = translate_stage2(dev.mem, ste.s2, ipa, Access(read=True),
                                     dev.tlb.walks.view("s2", ste.s2vmid, None))
                if w.ok:
                    return w.out, None
                ev = self._fault_event(w, sid, ssid, iova, Access(read=True), CLASS_CD)
                # §5.5: S2R suppresses only the four translation-related faults.
                ev.record = ste.s2r or ev.name == "F_WALK_EABT"
                return None, ev

        loc = cd_address(dev.mem, ste, sid, ssid, index, ipa_to_pa)
        if loc.addr is None:
            return None, loc.event
        got = dev.fetcher.fetch(loc.addr, CD_BYTES)
        if got is None:
            return None, EventRecord("F_CD_FETCH", sid, ssid,
                                     {"FetchAddr": loc.addr >> _FETCH_ADDR_LO})
        cd = self._decode_cd(loc.addr, got.data, dev.options)
        self._trace_cd(sid, ssid, cd, False, got.torn)
        dev.config_cache.put_cd(sid, index, cd, cd.legal)
        return cd, None

    def _trace_cd(self, sid: int, ssid: int | None, cd: Cd, cached: bool,
                  torn: tuple[int, ...] = ()) -> None:
        rec = {"sid": sid, "ssid": ssid, "addr": cd.addr, "qw": cd.words, "cached": cached,
               "legal": cd.legal}
        if cd.why:
            rec["why"] = cd.why
        if self.dev.options.strict and not cached:
            rec["torn"] = list(torn)
        self.dev.trace.emit("cd_fetch", **rec)

    # -- events --------------------------------------------------------------------------
    def _fault_event(self, w: WalkResult, sid: int, ssid: int | None, iova: int,
                     access: Access, klass: int | None = None) -> EventRecord:
        """§7.3.10-§7.3.14: translation-class fault records."""
        name = w.fault or "F_TRANSLATION"
        s2 = w.fault_stage == 2
        if klass is None:
            # §7.3.12: an external abort on a stage 1 descriptor fetch is S2 == 0, CLASS == TT
            # (unlike the other stage 1 faults, CLASS == IN).
            walk_eabt_s1 = name == "F_WALK_EABT" and not s2
            klass = CLASS_TT if w.s2_on_s1_walk or walk_eabt_s1 else CLASS_IN
        fields = {"InputAddr": iova, "RnW": int(not access.write), "PnU": int(access.priv),
                  "InD": int(access.exec), "S2": int(s2), "CLASS": klass}
        if s2 and w.fault_ipa is not None:
            fields["IPA"] = w.fault_ipa >> 12
        if name == "F_WALK_EABT":
            fields.pop("IPA", None)     # word 3 holds the aborted descriptor's address
            if w.abort_addr is not None:
                fields["FetchAddr"] = w.abort_addr >> EVENT_RECORD["FetchAddr"].word_lo
        return EventRecord(name, sid, ssid, fields)

    def _record(self, ev: EventRecord | None) -> None:
        if ev is None or not ev.record:
            return
        if ev.name == "C_BAD_STREAMID" and not self._cr2("RECINVSID"):
            return      # §6.3.12 CR2.RECINVSID: invalid StreamIDs are recorded only if set
        self.dev.evtq.record(ev)

    def _cr2(self, field: str) -> bool:
        return bool(CR2.get(self.dev.regs["CR2"], field))

    def record_ats_config_error(self, ev: EventRecord | None, translated: bool) -> None:
        """A configuration error met by an ATS Translation Request or Translated transaction
        is recorded only with CR2.REC_CFG_ATS == 1 (§3.9.1.2, §3.9.1.3; RES0 without
        IDR0.ATSRECERR); a Translation Request's C_BAD_STREAMID also needs CR2.RECINVSID,
        a Translated transaction's does not."""
        if ev is None or not self._cr2("REC_CFG_ATS"):
            return
        if ev.name == "C_BAD_STREAMID" and not translated and not self._cr2("RECINVSID"):
            return
        self.dev.evtq.record(ev)

    def check_translated(self, sid: int, addr: int, write: bool) -> bool:
        """§3.9.1.3 with SMMUEN == 1 and CR0.ATSCHK == 1: a Translated transaction is checked
        against its STE. Without IDR3.PASIDTT it is treated as SSV == 0, so the checks are
        C_BAD_STREAMID, F_STE_FETCH, C_BAD_STE (aborted; recorded only with REC_CFG_ATS), an
        abort STE (aborted silently), F_TRANSL_FORBIDDEN for effective EATS 0b00 (bypass
        included), then F_STREAM_DISABLED for an STE that terminates non-substream traffic."""
        dev = self.dev
        ste, ev = self.get_ste(sid, None)
        if ste is None:
            self.record_ats_config_error(ev, translated=True)
            return False
        if not ste.legal:
            # §5.2 STE.V: an invalid or ILLEGAL STE aborts Translated traffic.
            self.record_ats_config_error(EventRecord("C_BAD_STE", sid, None), translated=True)
            return False
        if ste.cfg == "abort":
            return False    # §5.2 Config 0b000: aborted, no event
        if effective_eats(ste, True, dev.options) == EATS_ABORT:
            # §7.3.8: EATS disallows ATS, or Config == 0b100 (EATS effectively 0b00).
            dev.evtq.record(EventRecord("F_TRANSL_FORBIDDEN", sid, None,
                                        {"InputAddr": addr, "RnW": int(not write)}))
            return False
        if ste.s1_enabled and ste.s1cdmax and ste.s1dss == S1DSS_TERMINATE:
            self.record_ats_config_error(EventRecord("F_STREAM_DISABLED", sid, None),
                                         translated=True)
            return False
        return True

    # -- the procedure -------------------------------------------------------------------
    def resolve(self, sid: int, ssid: int | None, iova: int, access: Access,
                ats: bool = False) -> Translation:
        """Translate one access; `ats` marks an ATS Translation Request (§3.9.1.2: its
        configuration errors are recorded only with CR2.REC_CFG_ATS, its translation faults
        never, and F_BAD_ATS_TREQ always)."""
        dev = self.dev
        t = Translation(False, sid=sid, ssid=ssid, iova=iova)

        def fail(outcome: str, ev: EventRecord | None, record: bool = True) -> Translation:
            t.outcome = outcome
            t.event = ev
            t.fault = ev.name if ev is not None else None
            if not record:
                pass
            elif ats and ev is not None and ev.name != "F_BAD_ATS_TREQ":
                self.record_ats_config_error(ev, translated=False)
            else:
                self._record(ev)
            return t

        if not dev.cr0ack("SMMUEN"):
            # §3.3 / §6.3.9: with the SMMU disabled, GBPA decides abort or bypass.
            if GBPA.get(dev.regs["GBPA"], "ABORT"):
                t.dom = ABORT   # GBPA stands in for every stream's configuration
                return fail(GBPA_ABORT, None)
            return self._bypass(t)
        ste, ev = self.get_ste(sid, ssid)
        if ste is None:
            return fail(CONFIG_ERROR, ev)
        t.ste = ste.addr
        if not ste.legal:
            return fail(CONFIG_ERROR, EventRecord("C_BAD_STE", sid, ssid))
        if ste.cfg == "abort":
            # §5.2 Config=0b000: abort silently, no event; the blocking domain decided. A
            # Translation Request gets UR, no event (§3.9.1.2).
            t.dom = ABORT
            return fail(STE_ABORT, None)
        if ats and effective_eats(ste, dev.cr0ack("ATSCHK"), dev.options) == EATS_ABORT:
            # §3.9.1.2: effective EATS 0b00 (Config 0b100 included): UR and F_BAD_ATS_TREQ.
            if ste.cfg == "bypass":
                t.dom = BYPASS_DOMAIN   # the bypass domain refused ATS for the stream
            return fail(STE_BYPASS if ste.cfg == "bypass" else ATS_FORBIDDEN,
                        bad_ats_treq(sid, ssid, iova, access))
        if ste.cfg == "bypass":
            if ssid is not None:
                return fail(CONFIG_ERROR, EventRecord("C_BAD_SUBSTREAMID", sid, ssid))
            t.outcome = STE_BYPASS
            return self._bypass(t)
        cd: Cd | None = None
        if ste.s1_enabled:
            choice = select_substream(ste, sid, ssid)
            if choice.event is not None:
                return fail(CONFIG_ERROR, choice.event)
            if choice.index is not None:
                cd, ev = self.get_cd(ste, sid, ssid, choice.index, iova)
                if cd is None:
                    if ev is not None and ev.name in ("F_CD_FETCH", "C_BAD_SUBSTREAMID"):
                        return fail(CONFIG_ERROR, ev)
                    # A stage 2 fault on the CD fetch: a Translation Request gets R=W=0 and
                    # records nothing, except an external abort (CA, REC_CFG_ATS; §3.9.1.2).
                    eabt = ev is not None and ev.name == "F_WALK_EABT"
                    return fail(WALK_ABORT if eabt else TRANSLATION_FAULT, ev,
                                record=eabt or not ats)
                t.cd = cd.addr
                if not cd.legal:
                    return fail(CONFIG_ERROR, EventRecord("C_BAD_CD", sid, ssid))
        elif ssid is not None:
            # Stage 1 bypassed: no CD can be selected by a SubstreamID (§3.3.2).
            return fail(CONFIG_ERROR, EventRecord("C_BAD_SUBSTREAMID", sid, ssid))
        return self._walk(t, ste, cd, access, ats)

    def _bypass(self, t: Translation) -> Translation:
        t.ok = True
        t.pa = t.iova
        t.size = PAGE
        t.perm = "rwx"
        t.dom = BYPASS_DOMAIN
        return t

    def _walk(self, t: Translation, ste: Ste, cd: Cd | None, access: Access,
              ats: bool) -> Translation:
        dev = self.dev
        iova = t.iova
        if cd is not None and cd.tbi >> ((iova >> UPPER_HALF_BIT) & 1) & 1:
            # §3.4.1, §5.4 TBIx: VA[63:56] are ignored, taken as a sign-extension of VA[55]
            # for translation (TLB and walk); events still record the address as input.
            iova = tbi_strip(iova)
        if cd is not None:
            kind = KIND_NESTED if ste.s2_enabled else KIND_S1
            asid: int | None = cd.asid
            dom = s1_dom(cd, iova)
            if ste.s2_enabled:
                assert ste.s2 is not None
                dom = dom.with_stage2(ste.s2vmid, ste.s2.ttb)
        elif ste.s2_enabled:
            kind, asid, dom = KIND_S2, None, s2_dom(ste)
        else:
            # Stage 1 bypassed by S1DSS and no stage 2: the transaction bypasses.
            t.outcome = BYPASS
            return self._bypass(t)
        t.dom = dom
        # For an ATS request, the walk asks only for read so the reply carries all rights.
        walk_access = Access(read=True, priv=access.priv) if ats else access
        hit = dev.tlb.lookup(kind, ste.s2vmid, asid, iova, access.priv)
        if hit is None and cd is not None:
            # §3.17.1: a global entry matches any ASID through a CD of the same ASET.
            hit = dev.tlb.lookup(kind, ste.s2vmid, global_tag(cd.aset), iova, access.priv)
        if hit is not None:
            t.tlb = True
            # The translation comes from the tables the entry was walked in, whatever the CD
            # now names: an entry left over from other tables under the same ASID/VMID is
            # that domain's translation, and the trace says so.
            t.dom = hit.dom
            if not _allows(hit.perm, walk_access):
                # §3.21.1: TLB behaviour follows Armv8-A, where an entry whose permissions
                # fault may be cached and the fault taken from it. The model takes it: a
                # permission upgrade is seen only after the TLBI that covers it.
                return self._walk_failed(t, ste, cd, access, ats, _tlb_permission_fault(
                    hit, iova, walk_access))
            t.ok = True
            t.pa = hit.out + (iova - hit.base)
            t.size = hit.size
            t.perm = hit.perm
            return t
        walks = dev.tlb.walks
        wc2 = walks.view("s2", ste.s2vmid, None) if ste.s2_enabled else None
        if cd is not None:
            assert cd.regime is not None
            w = translate_stage1(dev.mem, cd.regime, iova, walk_access,
                                 ste.s2 if ste.s2_enabled else None,
                                 walks.view("s1", ste.s2vmid, cd.asid), wc2)
        else:
            assert ste.s2 is not None
            w = translate_stage2(dev.mem, ste.s2, iova, walk_access, wc2)
        if not w.ok:
            return self._walk_failed(t, ste, cd, access, ats, w)
        t.ok = True
        t.pa = w.out
        t.size = w.size
        t.perm = w.perm
        if dev.tlb.enabled:
            base = iova & ~(w.size - 1)
            ipa = None if w.ipa is None else w.ipa - (iova - base)
            tag = asid if cd is None or w.not_global else global_tag(cd.aset)
            dev.tlb.insert(TlbEntry(kind, ste.s2vmid, tag, base, w.size, w.out & ~(w.size - 1),
                                    w.perm, dom, access.priv, w.level, w.s1_perm, ipa))
        return t

    def _walk_failed(self, t: Translation, ste: Ste, cd: Cd | None, access: Access,
                     ats: bool, w: WalkResult) -> Translation:
        """A walk (or a TLB entry) that faulted: the event, and whether it is recorded."""
        ev = self._fault_event(w, t.sid, t.ssid, t.iova, access)
        t.event = ev
        t.fault = ev.name
        t.outcome = WALK_ABORT if ev.name == "F_WALK_EABT" else TRANSLATION_FAULT
        if ats:
            # §3.9.1.2: translation faults become the completion (R == W == 0); an
            # external abort on the walk is a CA, recorded only with REC_CFG_ATS.
            if t.outcome == WALK_ABORT:
                self.record_ats_config_error(ev, translated=False)
            return t
        # §3.12, §5.5: stage 1 faults are recorded if CD.R, stage 2 faults if STE.S2R;
        # R suppresses only the four translation-related faults, never F_WALK_EABT.
        recorded = (t.outcome == WALK_ABORT
                    or (cd.record_faults if w.fault_stage == 1 and cd is not None
                        else ste.s2r))
        if recorded:
            self._record(ev)
        return t


def _tlb_permission_fault(e: TlbEntry, iova: int, access: Access) -> WalkResult:
    """F_PERMISSION taken from a cached entry: stage 1 for stage 1 entries, stage 2 for
    stage 2 ones; a combined entry blames stage 1 if its stage 1 permissions deny it."""
    if e.kind == KIND_S1 or (e.kind == KIND_NESTED and not _allows(e.s1_perm or "", access)):
        return WalkResult(False, level=e.level, fault="F_PERMISSION", fault_stage=1)
    ipa = iova if e.kind == KIND_S2 else (None if e.ipa is None else e.ipa + (iova - e.base))
    return WalkResult(False, level=e.level, fault="F_PERMISSION", fault_stage=2, fault_ipa=ipa)


def _allows(perm: str, access: Access) -> bool:
    return ((not access.read or "r" in perm) and (not access.write or "w" in perm)
            and (not access.exec or "x" in perm))

