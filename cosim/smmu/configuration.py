"""The configuration a stream has in memory right now, as a domain (§3.3 with no caching).

When the guest's driver says an attach has returned (the DRV_EVENT register,
cosim/arch/driver_events.py), the model records which domain the stream's STE and CD in
memory denote at that moment. That is the domain the driver attached, whatever the SMMU's
caches still hold, so the analysis can judge every later translation of the stream against
it (invariant 1) instead of guessing the new domain from later traffic.

This is an observation, not an SMMU access: it reads guest memory directly, fills no cache,
records no event and writes no fetch record, so it cannot change what the model does next.
"""

from __future__ import annotations

from dataclasses import dataclass

from cosim.arch.domain import ABORT, BYPASS, Domain
from cosim.memory import GuestMemory
from cosim.translation_agent import Access

from .context_descriptor import cd_address, decode_cd, fetch_cd, select_substream
from .options import SmmuOptions
from .stream_table import decode_ste, fetch_ste, locate_ste
from .walker import translate_stage2


@dataclass(frozen=True)
class Configuration:
    """What a stream's structures in memory say right now."""

    dom: Domain | None           # the domain they give untranslated traffic, None: no domain
    ste: list[int] | None = None
    cd: list[int] | None = None
    cd_addr: int | None = None


def configuration(mem: GuestMemory, strtab_base: int, strtab_cfg: int, opt: SmmuOptions,
                  sid: int, ssid: int | None) -> Configuration:
    """The STE and CD (sid, ssid)'s traffic uses, as memory holds them, and the domain they
    give it: None when they give it no translation at all (invalid or unreadable STE/CD,
    terminated substream): such traffic aborts with a configuration error."""
    loc = locate_ste(mem, strtab_base, strtab_cfg, opt, sid, ssid)
    if loc.addr is None:
        return Configuration(None)
    words = fetch_ste(mem, loc.addr)
    if words is None:
        return Configuration(None)
    ste = decode_ste(loc.addr, words, opt)

    def only_ste(dom: Domain | None) -> Configuration:
        return Configuration(dom, list(words))

    if not ste.legal:
        return only_ste(None)
    if ste.cfg == "abort":
        return only_ste(ABORT)
    if ste.cfg == "bypass":
        return only_ste(BYPASS if ssid is None else None)
    s2 = ste.s2 if ste.s2_enabled else None
    if not ste.s1_enabled:
        return only_ste(Domain.stage2(ste.s2vmid, s2.ttb) if s2 is not None else None)
    choice = select_substream(ste, sid, ssid)
    if choice.event is not None:
        return only_ste(None)
    if choice.index is None:
        # S1DSS=bypass: non-substream traffic skips stage 1 (§5.2).
        return only_ste(Domain.stage2(ste.s2vmid, s2.ttb) if s2 is not None else BYPASS)

    def ipa_to_pa(ipa: int) -> tuple[int | None, None]:
        assert s2 is not None
        w = translate_stage2(mem, s2, ipa, Access(read=True))
        return (w.out if w.ok else None), None

    cloc = cd_address(mem, ste, sid, ssid, choice.index, ipa_to_pa if s2 is not None else None)
    if cloc.addr is None:
        return only_ste(None)
    cwords = fetch_cd(mem, cloc.addr)
    if cwords is None:
        return only_ste(None)
    cd = decode_cd(cloc.addr, cwords, opt)
    if not cd.legal:
        return Configuration(None, list(words), list(cwords), cloc.addr)
    # The driver's stage 1 uses TTB0 only (EPD1); TTB1 traffic would name its own base.
    s1 = Domain.stage1(cd.asid, cd.ttb0)
    dom = s1.with_stage2(ste.s2vmid, s2.ttb) if s2 is not None else s1
    return Configuration(dom, list(words), list(cwords), cloc.addr)
