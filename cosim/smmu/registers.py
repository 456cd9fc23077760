"""The model's ID registers: what `SmmuOptions` advertises, encoded through the register
layouts declared in cosim/arch/registers.py (Arm IHI 0070 §6.3.1-§6.3.6)."""

from __future__ import annotations

from cosim.arch.registers import (
    AIDR,
    IDR0,
    IDR1,
    IDR3,
    IDR5,
    OAS_ENCODING,
    STALL_MODEL_TERMINATE_ONLY,
    STRTAB_FMT_2LVL,
    STRTAB_FMT_LINEAR,
    TTENDIAN_LE,
    TTF_AARCH64,
)

from .options import SmmuOptions


def build_id_registers(opt: SmmuOptions) -> dict[str, int]:
    """IDR0-5, IIDR and AIDR as advertised by `opt` (§6.3.1-§6.3.6)."""
    idr0 = IDR0.encode(
        S2P=opt.stage2, S1P=opt.stage1, TTF=TTF_AARCH64, COHACC=opt.coherent_access,
        HYP=opt.hyp, ATS=opt.ats, ATSRECERR=opt.ats and opt.ats_rec_err,
        # §6.3.1 NS1ATS=1: split-stage ATS (STE.EATS=0b10) is not supported; RES0 unless
        # ATS and both stages are implemented.
        NS1ATS=opt.ats and opt.stage1 and opt.stage2,
        ASID16=opt.asid16, MSI=opt.msi, SEV=opt.sev, PRI=opt.pri,
        VMID16=opt.vmid16, CD2L=opt.cd_2level, TTENDIAN=TTENDIAN_LE,
        STALL_MODEL=STALL_MODEL_TERMINATE_ONLY,
        # TERM_MODEL=1: faults terminate with an abort only; CD.A=0 (RAZ/WI) is ILLEGAL.
        # HTTU stays 0b00: no hardware Access flag / dirty state update.
        TERM_MODEL=1, HTTU=0,
        ST_LEVEL=STRTAB_FMT_2LVL if opt.st_2level else STRTAB_FMT_LINEAR,
    )
    idr1 = IDR1.encode(SIDSIZE=opt.sid_bits, SSIDSIZE=opt.ssid_bits, PRIQS=opt.priq_log2,
                       EVENTQS=opt.evtq_log2, CMDQS=opt.cmdq_log2)
    idr3 = IDR3.encode(RIL=opt.range_inv)
    idr5 = IDR5.encode(OAS=OAS_ENCODING[opt.oas_bits], GRAN4K=opt.gran4k,
                       GRAN16K=opt.gran16k, GRAN64K=opt.gran64k)
    aidr = AIDR.encode(ArchMajorRev=0, ArchMinorRev=opt.arch_minor)
    return {"IDR0": idr0, "IDR1": idr1, "IDR2": 0, "IDR3": idr3, "IDR4": 0, "IDR5": idr5,
            "IIDR": opt.iidr, "AIDR": aidr}
