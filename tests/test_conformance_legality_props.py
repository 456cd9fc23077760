"""§5.2 SteIllegal() and §5.4 CdIllegal(), restated here from the specification's pseudocode for
the features the model advertises (Non-secure, AArch64 tables only, little-endian, no stall,
abort-only termination, no HTTU, no DPT, NS1ATS=1, no VAX/DS/STT/D128/PIE/PBHA), and compared
with the model's decoders on arbitrary bit patterns: the decoders never raise and call an STE
or CD ILLEGAL exactly when the pseudocode does.

This is a second, independent reading of the rules: it does not use cosim/smmu's helpers, only
the field layout (cosim/arch) to pull fields out of the words."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cosim.arch.cd import CD
from cosim.arch.ste import STE
from cosim.smmu import SmmuOptions
from cosim.smmu.context_descriptor import decode_cd
from cosim.smmu.stream_table import decode_ste

SETTINGS = settings(max_examples=250, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

OPTIONS = [
    SmmuOptions(),
    SmmuOptions(ats=False),
    SmmuOptions(hyp=True),
    SmmuOptions(vmid16=False, asid16=False),
    SmmuOptions(ssid_bits=0),
    SmmuOptions(ssid_bits=5, cd_2level=False),
    SmmuOptions(stage1=False),
    SmmuOptions(stage2=False),
    SmmuOptions(oas_bits=52),
    SmmuOptions(oas_bits=40, gran16k=False),
    SmmuOptions(gran4k=False, gran64k=False),
]

PS_BITS = {0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 48, 6: 52}
S2TG = {0: 12, 1: 16, 2: 14}                  # STE.S2TG / CD.TG0: log2(granule)
TG1 = {1: 14, 2: 12, 3: 16}                   # CD.TG1


def granule_ok(gbits: int | None, opt: SmmuOptions) -> bool:
    return gbits is not None and (1 << gbits) in opt.granules


def pa_range(ps: int, opt: SmmuOptions) -> int:
    """CalcPARange(): the PS encoding in bits, Reserved values and values above the OAS
    behaving as the OAS (§3.4)."""
    return min(PS_BITS.get(ps, opt.oas_bits), opt.oas_bits)


def s2_walk_inconsistent(t0sz: int, sl0: int, gbits: int, oas: int) -> bool:
    """Arm ARM AArch64.S2InvalidSL / S2InconsistentSL for VMSAv8-64 without DS."""
    if sl0 == 3:
        return True                                     # needs DS (4K, 16K) or is Reserved
    if sl0 == 2 and oas < {12: 44, 14: 42, 16: 44}[gbits]:
        return True
    start = (2 if gbits == 12 else 3) - sl0
    stride = gbits - 3
    levels = 3 - start
    ia = 64 - t0sz
    sl_min = levels * stride + gbits + 1
    sl_max = sl_min + (stride - 1) + 4                  # up to 16 concatenated tables
    return not sl_min <= ia <= sl_max


def ste_illegal(w: list[int], opt: SmmuOptions) -> bool:
    f = STE.decode_words(w)
    if not f["V"]:
        return True
    config = f["Config"]
    if not config & 0b100:
        return False                                    # 0b0xx: abort (Reserved: as 0b000)
    s1, s2 = bool(config & 1), bool(config & 2)
    if s1 and not opt.stage1:
        return True
    if s2 and not opt.stage2:
        return True
    if opt.ats and config != 0b100:
        if f["EATS"] == 0b10:
            return True                                 # NS1ATS == 1
        if f["EATS"] == 0b01 and f["S2S"] and s2:
            return True
    strw_unused = not opt.stage1 or not opt.hyp or s2 or config == 0b100
    if not strw_unused and f["STRW"] & 1:
        return True
    if s1:
        if f["S1STALLD"]:
            return True                                 # STALL_MODEL == 0b01
        if opt.ssid_bits and f["S1CDMax"] > opt.ssid_bits:
            return True
        if opt.ssid_bits and f["S1CDMax"] and not opt.cd_2level and f["S1Fmt"] in (1, 2):
            return True
        if (f["S1ContextPtr"] << 6) >> opt.oas_bits:   # PA within OAS, or IPA within IAS
            return True
    if s2:
        if f["S2S"]:
            return True
        if not f["S2AA64"]:
            return True                                 # VMSAv8-32 LPAE: TTF AArch64 only
        if f["S2HA"] or f["S2HD"]:
            return True                                 # HTTU == 0b00
        gbits = S2TG.get(f["S2TG"])
        if not granule_ok(gbits, opt):
            return True
        assert gbits is not None
        ttb = f["S2TTB"] << 4
        if ttb >> pa_range(f["S2PS"], opt) or (gbits != 16 and ttb >> 48):
            return True
        ias = opt.oas_bits
        t0sz_min = max(12 if gbits == 16 else 16, 64 - ias)
        if not t0sz_min <= f["S2T0SZ"] <= 39:
            return True
        if s2_walk_inconsistent(f["S2T0SZ"], f["S2SL0"], gbits, opt.oas_bits):
            return True
        if f["S2ENDI"]:
            return True
    strw = f["STRW"] if not strw_unused else 0
    s2vmid_ignored = not opt.stage2 or config == 0b100 or strw != 0
    if not s2vmid_ignored and not opt.vmid16 and f["S2VMID"] >> 8:
        return True
    return False


def cd_illegal(w: list[int], opt: SmmuOptions) -> bool:
    f = CD.decode_words(w)
    if not f["V"]:
        return True
    if not f["A"]:
        return True                                     # TERM_MODEL == 1
    if f["S"]:
        return True                                     # STALL_MODEL == 0b01
    if (not f["EPD0"] or not f["EPD1"]) and f["ENDI"]:
        return True
    if not f["AA64"]:
        return True
    if f["HA"] or f["HD"]:
        return True
    if not opt.asid16 and f["ASID"] >> 8:
        return True
    ips = pa_range(f["IPS"], opt)
    for n, tgs in ((0, S2TG), (1, TG1)):
        if f[f"EPD{n}"]:
            continue
        gbits = tgs.get(f[f"TG{n}"])
        if not 16 <= f[f"T{n}SZ"] <= 39:              # CDTxSZInvalid() without VAX / STT
            return True
        if not granule_ok(gbits, opt):
            return True
        ttb = f[f"TTB{n}"] << 4
        if ttb >> ips or (gbits != 16 and ttb >> 48):
            return True
    return False


u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)


def _pattern(draw, layout, legalish: dict) -> list[int]:
    """Random words with the fields legality depends on set to values that are legal on
    their own (most of the time), then perhaps one of them replaced by any value: legal
    structures of every kind are common, and each rule is exercised on its own."""
    raw = layout.from_words(draw(st.lists(u64, min_size=8, max_size=8)))
    fields = {name: draw(values) for name, values in legalish.items()}
    for name in draw(st.lists(st.sampled_from(sorted(legalish)), max_size=2)):
        width = layout[name].max
        fields[name] = 1 - fields[name] if width == 1 else draw(st.integers(0, width))
    for name, value in fields.items():
        raw = layout.set(raw, name, value)
    return layout.to_words(raw)


_STE_LEGALISH = {
    "V": st.just(1), "Config": st.sampled_from([5, 6, 7, 5, 6, 7, 4, 0, 1, 2, 3]),
    "S1Fmt": st.integers(0, 3),
    "S1CDMax": st.integers(0, 16), "S1DSS": st.integers(0, 3),
    "EATS": st.sampled_from([0, 1, 3]), "STRW": st.sampled_from([0, 2, 0, 2, 1, 3]),
    "S1STALLD": st.just(0), "S1ContextPtr": st.integers(0, (1 << 34) - 1),
    "S2VMID": st.sampled_from([0, 1, 0xFF, 0x100, 0x1FF, 0xFFFF]),
    "S2T0SZ": st.integers(16, 39), "S2SL0": st.integers(0, 2),
    "S2TG": st.integers(0, 2), "S2PS": st.integers(0, 6), "S2AA64": st.just(1),
    "S2ENDI": st.just(0), "S2S": st.just(0), "S2HA": st.just(0), "S2HD": st.just(0),
    "S2TTB": st.integers(0, (1 << 28) - 1),
}
_CD_LEGALISH = {
    "V": st.just(1), "A": st.just(1), "S": st.just(0), "ENDI": st.just(0), "AA64": st.just(1),
    "HA": st.just(0), "HD": st.just(0), "ASID": st.sampled_from([0, 1, 0xFF, 0x100, 0xFFFF]),
    "IPS": st.integers(0, 7),
    "EPD0": st.just(0), "EPD1": st.integers(0, 1), "T0SZ": st.integers(16, 39),
    "T1SZ": st.integers(16, 39), "TG0": st.integers(0, 2), "TG1": st.integers(1, 3),
    "TTB0": st.integers(0, (1 << 28) - 1), "TTB1": st.integers(0, (1 << 28) - 1),
}


@st.composite
def ste_patterns(draw) -> list[int]:
    return _pattern(draw, STE, _STE_LEGALISH)


@st.composite
def cd_patterns(draw) -> list[int]:
    return _pattern(draw, CD, _CD_LEGALISH)


@pytest.mark.parametrize("opt", OPTIONS, ids=range(len(OPTIONS)))
@SETTINGS
@given(words=ste_patterns())
def test_5_2_ste_legality_matches_steillegal(words, opt):
    ste = decode_ste(0x1000, words, opt)
    assert ste.legal == (not ste_illegal(words, opt)), ste.why


@pytest.mark.parametrize("opt", OPTIONS, ids=range(len(OPTIONS)))
@SETTINGS
@given(words=cd_patterns())
def test_5_4_cd_legality_matches_cdillegal(words, opt):
    cd = decode_cd(0x1000, words, opt)
    assert cd.legal == (not cd_illegal(words, opt)), cd.why


@SETTINGS
@given(st.lists(u64, min_size=8, max_size=8), st.sampled_from(OPTIONS))
def test_5_2_5_4_raw_bit_patterns_never_raise(words, opt):
    """Uniformly random words: mostly ILLEGAL, never an exception, same verdict."""
    assert decode_ste(0, words, opt).legal == (not ste_illegal(words, opt))
    assert decode_cd(0, words, opt).legal == (not cd_illegal(words, opt))
