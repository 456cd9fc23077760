"""Event records (Arm IHI 0070 §7.3): the 256-bit record layout and the event type codes.

The Event queue's behaviour (when a record is written, overflow, interrupts) is the model's
(cosim/smmu/event_queue.py); the test driver and tools decode records through `decode_event`.
"""

from __future__ import annotations

from .bitfield import Layout

# §7.3: event type codes for every event this model raises.
EVENT_CODES: dict[str, int] = {
    "F_UUT": 0x01, "C_BAD_STREAMID": 0x02, "F_STE_FETCH": 0x03, "C_BAD_STE": 0x04,
    "F_BAD_ATS_TREQ": 0x05, "F_STREAM_DISABLED": 0x06, "F_TRANSL_FORBIDDEN": 0x07,
    "C_BAD_SUBSTREAMID": 0x08, "F_CD_FETCH": 0x09, "C_BAD_CD": 0x0A, "F_WALK_EABT": 0x0B,
    "F_TRANSLATION": 0x10, "F_ADDR_SIZE": 0x11, "F_ACCESS": 0x12, "F_PERMISSION": 0x13,
    "F_TLB_CONFLICT": 0x20, "F_CFG_CONFLICT": 0x21, "E_PAGE_REQUEST": 0x24,
}
EVENT_NAMES = {v: k for k, v in EVENT_CODES.items()}

# Translation-class faults: the ones that carry CLASS/S2/IPA and are subject to CD.R/STE.S2R.
TRANSLATION_FAULTS = ("F_TRANSLATION", "F_ADDR_SIZE", "F_ACCESS", "F_PERMISSION", "F_WALK_EABT")

# §7.3: the record layout (256 bits); fetch/IPA address fields overlap by event type.
EVENT_RECORD = Layout("EVENT", 256, {
    "EventType": (7, 0), "SSV": 11, "SubstreamID": (31, 12), "StreamID": (63, 32),
    "STAG": (79, 64), "Stall": 95, "PnU": 97, "InD": 98, "RnW": 99, "NSIPA": 102, "S2": 103,
    "CLASS": (105, 104), "TTRnW": 108,
    "InputAddr": (191, 128),
    # F_STE_FETCH / F_CD_FETCH / F_WALK_EABT: FetchAddr[55:3] in word 3 (§7.3.4, §7.3.10,
    # §7.3.12; Linux reads it from raw[3] [51:3]); [55:52] are RES0 with OAS <= 52.
    "FetchAddr": (243, 195),
    "IPA": (243, 204),                # translation faults: word 3 [51:12]
}, overlaps=[("IPA", "FetchAddr")])
EVENT_BYTES = EVENT_RECORD.nbytes

# CLASS field (§7.3.12): which access faulted.
CLASS_CD, CLASS_TT, CLASS_IN = 0, 1, 2


def decode_event(raw: int) -> dict[str, int | str]:
    """Decode a 256-bit record (for tests and debugging)."""
    d: dict[str, int | str] = dict(EVENT_RECORD.decode(raw))
    d["name"] = EVENT_NAMES.get(int(d["EventType"]), f"UNKNOWN_{d['EventType']:#x}")
    return d
