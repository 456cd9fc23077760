"""What hardware the model presents: every advertised feature is a field here, so a test can
present a different SMMU (IDR0-IDR5 are derived from these, see registers.build_id_registers)."""

from __future__ import annotations

from dataclasses import dataclass

from cosim.arch.registers import OAS_ENCODING

# coherent: re-read every structure on every use (every intermediate state is observed);
# caching: keep STEs and CDs (valid or not, §3.21.3) and translations until a CFGI_*/TLBI_*
# arrives; strict: everything IHI 0070 lets be late, cached or torn is (docs/architecture.md,
# "Cache modes"): invalidations take effect only at the next completed CMD_SYNC (§4.7.3),
# a fetch may mix qwords from the
# last observation with memory (§3.21.3 single-copy atomicity), and the endpoint completes
# ATC invalidations just before atc_inv_timeout_ms (backend).
CACHE_MODES = ("coherent", "caching", "strict")


@dataclass
class SmmuOptions:
    stage1: bool = True
    stage2: bool = True
    ats: bool = True
    pri: bool = False
    ats_rec_err: bool = False      # IDR0.ATSRECERR: CR2.REC_CFG_ATS records ATS config errors
    hyp: bool = False              # IDR0.HYP: STE.STRW=EL2 allowed
    ssid_bits: int = 16            # IDR1.SSIDSIZE
    sid_bits: int = 16             # IDR1.SIDSIZE
    st_2level: bool = True         # IDR0.ST_LEVEL
    cd_2level: bool = True         # IDR0.CD2L
    gran4k: bool = True
    gran16k: bool = True
    gran64k: bool = True
    oas_bits: int = 48             # IDR5.OAS (and IAS, since stage 2 is AArch64 only)
    asid16: bool = True
    vmid16: bool = True
    coherent_access: bool = True   # IDR0.COHACC
    sev: bool = True
    msi: bool = True
    wired_irqs: bool = True        # the four SPIs are connected
    range_inv: bool = True         # IDR3.RIL (SMMUv3.2 range invalidation)
    cmdq_log2: int = 12            # IDR1.CMDQS
    evtq_log2: int = 12            # IDR1.EVENTQS
    priq_log2: int = 8             # IDR1.PRIQS
    gbpa_abort_at_reset: bool = False
    cache_mode: str = "coherent"   # one of CACHE_MODES
    strict_seed: int = 1           # strict mode: seeds the choice of torn-fetch mixes
    atc_inv_timeout_ms: float = 200.0   # below the driver's 1 s CMD_SYNC poll timeout
    # Commands consumed per model step (SMMUv3.tick: after every request the backend serves and
    # in its idle loop): 0 = the whole batch inside the CMDQ_PROD write; -1 = the mode's
    # default, 1 in strict mode (device traffic falls between two commands of one batch, §3.5,
    # §4: the SMMU consumes commands in its own time) and 0 otherwise.
    cmdq_budget: int = -1
    iidr: int = 0x0000_043B        # implementer Arm (0x43B), product 0
    arch_minor: int = 2            # AIDR: SMMUv3.2 (range invalidation is a 3.2 feature)

    def __post_init__(self) -> None:
        if self.cache_mode not in CACHE_MODES:
            raise ValueError(f"cache_mode must be one of {CACHE_MODES}, not {self.cache_mode!r}")
        if self.oas_bits not in OAS_ENCODING:
            raise ValueError(f"oas_bits must be one of {sorted(OAS_ENCODING)}")
        if not 0 <= self.ssid_bits <= 20:
            raise ValueError("ssid_bits must be 0..20")
        if not 1 <= self.sid_bits <= 32:
            raise ValueError("sid_bits must be 1..32")
        if self.cmdq_budget < -1:
            raise ValueError("cmdq_budget must be -1 (the mode's default), 0 or more")

    @property
    def caches(self) -> bool:
        """The configuration cache and TLB keep entries (caching and strict modes)."""
        return self.cache_mode != "coherent"

    @property
    def strict(self) -> bool:
        return self.cache_mode == "strict"

    @property
    def cmdq_per_step(self) -> int | None:
        """Commands consumed per step, or None: the whole batch at the CMDQ_PROD write."""
        budget = (1 if self.strict else 0) if self.cmdq_budget == -1 else self.cmdq_budget
        return budget or None

    @property
    def granules(self) -> tuple[int, ...]:
        return tuple(g for g, on in ((4096, self.gran4k), (16384, self.gran16k),
                                     (65536, self.gran64k)) if on)

    @property
    def asid_bits(self) -> int:
        return 16 if self.asid16 else 8

    @property
    def vmid_bits(self) -> int:
        return 16 if self.vmid16 else 8
