"""Command queue commands (Arm IHI 0070 §4): the 128-bit command layout, the opcodes and the
fields each one carries, and the CMDQ_CONS.ERR codes (§7.1).

Every command is 16 bytes; its fields are declared once in `CMD`, with the overlays the
opcodes make (§4.1.2 onwards), and each opcode lists the fields it uses. What a command does is
the model's (cosim/smmu/command_queue.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from .bitfield import Layout

CMD_BYTES = 16

# §4.1.2 onwards: command fields (128 bits); each opcode uses the subset listed in COMMANDS.
_CMD_FIELDS: dict[str, tuple[int, int] | int] = {
    "Opcode": (7, 0), "Global": 9, "SSec": 10, "SSV": 11, "SubstreamID": (31, 12),
    "StreamID": (63, 32),
    "NUM": (16, 12), "SCALE": (24, 20), "VMID": (47, 32), "ASID": (63, 48),
    "CS": (13, 12), "MSH": (23, 22), "MSIAttr": (27, 24), "MSIData": (63, 32),
    "Resp": (13, 12),
    "Leaf": 64, "Range": (68, 64), "Size": (69, 64), "PrefetchSize": (68, 64),
    "TTL": (73, 72), "TG": (75, 74), "Address": (127, 76), "IPA": (115, 76),
    "MSIAddress": (115, 66), "PRGI": (72, 64), "PriResp": (77, 76), "STAG": (79, 64),
}


@dataclass(frozen=True)
class CommandSpec:
    name: str
    fields: tuple[str, ...]


# §4: opcodes this model implements and the fields each one carries.
COMMANDS: dict[int, CommandSpec] = {
    0x01: CommandSpec("PREFETCH_CFG", ("SSV", "SubstreamID", "StreamID")),
    0x02: CommandSpec("PREFETCH_ADDR", ("SSV", "SubstreamID", "StreamID", "PrefetchSize",
                                        "Address")),
    0x03: CommandSpec("CFGI_STE", ("StreamID", "Leaf")),
    0x04: CommandSpec("CFGI_STE_RANGE", ("StreamID", "Range")),
    0x05: CommandSpec("CFGI_CD", ("SubstreamID", "StreamID", "Leaf")),
    0x06: CommandSpec("CFGI_CD_ALL", ("StreamID",)),
    0x10: CommandSpec("TLBI_NH_ALL", ("VMID",)),
    0x11: CommandSpec("TLBI_NH_ASID", ("VMID", "ASID")),
    0x12: CommandSpec("TLBI_NH_VA", ("NUM", "SCALE", "VMID", "ASID", "Leaf", "TTL", "TG",
                                     "Address")),
    0x13: CommandSpec("TLBI_NH_VAA", ("NUM", "SCALE", "VMID", "Leaf", "TTL", "TG", "Address")),
    0x20: CommandSpec("TLBI_EL2_ALL", ()),
    0x21: CommandSpec("TLBI_EL2_ASID", ("ASID",)),
    0x22: CommandSpec("TLBI_EL2_VA", ("NUM", "SCALE", "ASID", "Leaf", "TTL", "TG", "Address")),
    0x23: CommandSpec("TLBI_EL2_VAA", ("NUM", "SCALE", "Leaf", "TTL", "TG", "Address")),
    0x28: CommandSpec("TLBI_S12_VMALL", ("VMID",)),
    0x2A: CommandSpec("TLBI_S2_IPA", ("NUM", "SCALE", "VMID", "Leaf", "TTL", "TG", "IPA")),
    0x30: CommandSpec("TLBI_NSNH_ALL", ()),
    0x40: CommandSpec("ATC_INV", ("Global", "SSV", "SubstreamID", "StreamID", "Size",
                                  "Address")),
    0x41: CommandSpec("PRI_RESP", ("SSV", "SubstreamID", "StreamID", "PRGI", "PriResp")),
    0x44: CommandSpec("RESUME", ("Resp", "StreamID", "STAG")),
    0x46: CommandSpec("CMD_SYNC", ("CS", "MSH", "MSIAttr", "MSIData", "MSIAddress")),
}
OPCODES = {spec.name: op for op, spec in COMMANDS.items()}
# Every opcode the project names, implemented or not (§4.1.1): the model executes COMMANDS and
# rejects the rest (CERROR_ILL); the analysis names opcodes of traces that record numbers.
# 0x01 is CMD_PREFETCH_CONFIG in IHI 0070; it keeps Linux's name, PREFETCH_CFG, that traces use.
OPCODE_NAMES: dict[int, str] = {**{op: spec.name for op, spec in COMMANDS.items()},
                                0x45: "STALL_TERM"}

# Fields share bits only where no opcode carries both: those overlays are the declared
# overlaps (a unit test checks that each command's own fields are disjoint).
_CO_USED = {frozenset(p) for spec in COMMANDS.values()
            for p in combinations(("Opcode",) + spec.fields, 2)}
CMD = Layout("CMD", 128, _CMD_FIELDS, overlaps=[
    p for p in Layout("CMD", 128, _CMD_FIELDS).overlapping_pairs()
    if frozenset(p) not in _CO_USED])

# CMDQ_CONS.ERR codes (§7.1).
CERROR_NONE, CERROR_ILL, CERROR_ABT, CERROR_ATC_INV_SYNC = 0, 1, 2, 3
CERROR_NAMES = {CERROR_ILL: "CERROR_ILL", CERROR_ABT: "CERROR_ABT",
                CERROR_ATC_INV_SYNC: "CERROR_ATC_INV_SYNC"}

# CMD_SYNC.CS (§4.7.3).
CS_NONE, CS_IRQ, CS_SEV = 0, 1, 2
CS_NAMES = {CS_NONE: "NONE", CS_IRQ: "IRQ", CS_SEV: "SEV"}

# TLBI range encoding (§4.4.1): TG selects the granule the range counts in; 0 = not a range.
TG_GRANULE = {1: 4096, 2: 16384, 3: 65536}
CFGI_ALL_RANGE = 31  # CMD_CFGI_ALL is CMD_CFGI_STE_RANGE with Range 31 (§4.3.3)


def encode_command(name: str, **fields: int) -> list[int]:
    """Build a command's two words from named fields (test driver and tools)."""
    op = OPCODES[name]
    spec = COMMANDS[op]
    for k in fields:
        if k not in spec.fields:
            raise ValueError(f"{name} has no field {k}")
    return CMD.to_words(CMD.encode(Opcode=op, **fields))


def decode_command(words: list[int]) -> tuple[str | None, dict[str, int]]:
    raw = CMD.from_words(words)
    spec = COMMANDS.get(CMD.get(raw, "Opcode"))
    if spec is None:
        return None, {}
    return spec.name, {k: CMD.get(raw, k) for k in spec.fields}
