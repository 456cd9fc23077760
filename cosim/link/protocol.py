"""The cosim wire protocol (docs/protocol.md): every message declared once, with construct.

One ZeroMQ frame is one message: a 16-byte header and a body whose layout depends on the
type. The same declarations decode and encode; the hot ones (MMIO and DMA) are compiled.
`decode` validates a frame completely and raises `ProtocolError` carrying the status the
receiver replies with (or none, when the header cannot even carry a `seq`).

QEMU's side of the same declarations, include/hw/misc/cosim-proto.h in qemu-patches/0001, is
generated from this module (`python -m cosim.link.protocol --c-header`), so the two sides
cannot disagree on a code, a bit or a layout (tests/test_protocol_header.py checks).
"""

from __future__ import annotations

import argparse
import enum
import struct as pystruct
import sys
from dataclasses import dataclass
from typing import Any

from construct import (
    Bytes,
    Construct,
    Container,
    FormatField,
    GreedyBytes,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64ul,
    Padded,
    PaddedString,
    Padding,
    Pass,
    Renamed,
    StringEncoded,
    Struct,
    this,
)

MAGIC = 0x4353          # "CS" little-endian
MAJOR = 1
MINOR = 0
HEADER_SIZE = 16
REPLY_BIT = 0x80
DEFAULT_MAX_DMA = 65536  # QEMU's default max-dma: longer DMA gets TOO_BIG
RAM_PATH_LEN = 128
NAME_LEN = 32
MMIO_SIZES = (1, 2, 4, 8)

# Device numbering (docs/protocol.md "Devices"): the SMMU is device 0 and its only region is
# the register frame, page 0 and page 1 (SMMUv3 §6.1); endpoints are numbered from 1.
SMMU_DEV = 0
SMMU_REGION = 0
SMMU_FRAME_SIZE = 0x20000


class MsgType(enum.IntEnum):
    HELLO = 0x01
    MMIO_READ = 0x02
    MMIO_WRITE = 0x03
    CFG_WRITE = 0x04
    RESET = 0x05
    DEVICE = 0x06
    BYE = 0x07
    DMA_READ = 0x10
    DMA_WRITE = 0x11
    IRQ = 0x12


# Requests each side sends; the other side serves them.
QEMU_REQUESTS = frozenset({MsgType.HELLO, MsgType.MMIO_READ, MsgType.MMIO_WRITE,
                           MsgType.CFG_WRITE, MsgType.RESET, MsgType.DEVICE, MsgType.BYE})
MODEL_REQUESTS = frozenset({MsgType.DMA_READ, MsgType.DMA_WRITE, MsgType.IRQ})


class Status(enum.IntEnum):
    OK = 0
    DECODE_ERROR = 1
    ACCESS_ERROR = 2
    TOO_BIG = 3
    MALFORMED = 4
    UNKNOWN_TYPE = 5
    BAD_VERSION = 6
    INTERNAL = 7


def status_name(code: int) -> str:
    """Name of a status code, also for codes this side does not know."""
    try:
        return Status(code).name
    except ValueError:
        return f"STATUS_{code}"


class Caps(enum.IntFlag):
    SHARED_RAM = 1 << 0


class DmaFlags(enum.IntFlag):
    MSI = 1 << 0


class DeviceKind(enum.IntEnum):
    SMMU = 1
    PCIE_EP = 2


class ResetKind(enum.IntEnum):
    SYSTEM = 0
    FLR = 1


class IrqLine(enum.IntEnum):
    EVENTQ = 0
    PRIQ = 1
    CMDQ_SYNC = 2
    GERROR = 3


class IrqLevel(enum.IntEnum):
    LOWER = 0
    RAISE = 1
    PULSE = 2


HEADER = Struct(
    "magic" / Int16ul,
    "major" / Int8ul,
    "type" / Int8ul,
    "status" / Int32ul,
    "seq" / Int64ul,
)

EMPTY = Struct()

# DMA_READ's body, which is also the part of DMA_WRITE's that precedes the data.
DMA = Struct("rid" / Int16ul, "flags" / Int16ul, "len" / Int32ul, "addr" / Int64ul)

# Bodies of requests and of OK replies, in docs/protocol.md order. Reserved fields are
# Padding: written as zeros, ignored on receipt (so a later minor may give them a meaning).
REQUEST_BODY: dict[MsgType, Construct] = {
    MsgType.HELLO: Struct(
        "minor" / Int16ul, Padding(2), "caps" / Int32ul,
        "ram_base" / Int64ul, "ram_size" / Int64ul,
        "ram_path" / PaddedString(RAM_PATH_LEN, "utf8"),
    ),
    MsgType.MMIO_READ: Struct(
        "dev" / Int16ul, "region" / Int8ul, "size" / Int8ul, Padding(4), "offset" / Int64ul,
    ),
    MsgType.MMIO_WRITE: Struct(
        "dev" / Int16ul, "region" / Int8ul, "size" / Int8ul, Padding(4), "offset" / Int64ul,
        "value" / Int64ul,
    ),
    MsgType.CFG_WRITE: Struct(
        "dev" / Int16ul, Padding(1), "size" / Int8ul, "offset" / Int32ul, "value" / Int64ul,
    ),
    MsgType.RESET: Struct("dev" / Int16ul, "kind" / Int16ul),
    MsgType.DEVICE: Struct(
        "dev" / Int16ul, "kind" / Int16ul, "rid" / Int16ul, "pcie_off" / Int16ul,
        "ats_off" / Int16ul, "pasid_off" / Int16ul, "msix_off" / Int16ul, Padding(2),
    ),
    MsgType.BYE: EMPTY,
    MsgType.DMA_READ: DMA,
    MsgType.DMA_WRITE: Struct(*DMA.subcons, "data" / Bytes(this.len)),
    MsgType.IRQ: Struct("dev" / Int16ul, "line" / Int16ul, "level" / Int32ul),
}

REPLY_BODY: dict[MsgType, Construct] = {
    MsgType.HELLO: Struct(
        "minor" / Int16ul, Padding(2), "caps" / Int32ul, "max_dma" / Int32ul, Padding(4),
        "name" / PaddedString(NAME_LEN, "utf8"),
    ),
    MsgType.MMIO_READ: Struct("value" / Int64ul),
    MsgType.MMIO_WRITE: EMPTY,
    MsgType.CFG_WRITE: EMPTY,
    MsgType.RESET: EMPTY,
    MsgType.DEVICE: EMPTY,
    MsgType.BYE: EMPTY,
    MsgType.DMA_READ: Struct("data" / GreedyBytes),  # `len` bytes: the waiter checks the length
    MsgType.DMA_WRITE: EMPTY,
    MsgType.IRQ: EMPTY,
}

@dataclass(frozen=True)
class Plan:
    """A fixed layout of integers and reserved bytes as one struct.Struct, derived from its
    construct declaration: what the hot path packs and unpacks (every guest MMIO, every DMA
    request), where construct's own per-field interpretation costs most of a round trip."""

    packer: pystruct.Struct
    names: tuple[str, ...]

    def unpack(self, buf: bytes | memoryview, offset: int = 0) -> Container:
        return Container(zip(self.names, self.packer.unpack_from(buf, offset), strict=True))

    def pack(self, fields: dict[str, Any]) -> bytes:
        return self.packer.pack(*[fields[n] for n in self.names])


def plan_of(decl: Construct) -> Plan | None:
    """The Plan of a Struct made only of named little-endian integers and Padding (reserved
    bytes: zeros out, ignored in), or None for any other layout."""
    if not isinstance(decl, Struct):
        return None
    fmt, names = "<", []
    for sc in decl.subcons:
        if isinstance(sc, Renamed) and isinstance(sc.subcon, FormatField) \
                and sc.subcon.fmtstr[0] == "<" and sc.name:
            fmt += sc.subcon.fmtstr[1:]
            names.append(sc.name)
        elif isinstance(sc, Padded) and sc.subcon is Pass and isinstance(sc.length, int):
            fmt += f"{sc.length}x"
        else:
            return None
    return Plan(pystruct.Struct(fmt), tuple(names))


# The hot path (every guest MMIO, every DMA) uses compiled parsers and builders.
_HOT = (MsgType.MMIO_READ, MsgType.MMIO_WRITE, MsgType.DMA_READ, MsgType.DMA_WRITE)
_HEADER_P = plan_of(HEADER)
assert _HEADER_P is not None and _HEADER_P.names == ("magic", "major", "type", "status", "seq")
_REQUEST_P = {t: p for t in MsgType if (p := plan_of(REQUEST_BODY[t])) is not None}
_REPLY_P = {t: p for t in MsgType if (p := plan_of(REPLY_BODY[t])) is not None}
_DMA_P = plan_of(DMA)
assert _DMA_P is not None
_HEADER_C = HEADER.compile()
_REQUEST_C: dict[MsgType, Construct] = {
    t: (REQUEST_BODY[t].compile() if t in _HOT else REQUEST_BODY[t]) for t in MsgType}
_REPLY_C: dict[MsgType, Construct] = {
    t: (REPLY_BODY[t].compile() if t in _HOT else REPLY_BODY[t]) for t in MsgType}

# The part of a variable-length body that precedes its payload.
_DMA_FIXED = DMA.sizeof()
# Exact body sizes of the fixed layouts, computed once (sizeof() walks the declaration).
_REQUEST_SIZE = {t: REQUEST_BODY[t].sizeof() for t in MsgType if t is not MsgType.DMA_WRITE}
_REPLY_SIZE = {t: REPLY_BODY[t].sizeof() for t in MsgType if t is not MsgType.DMA_READ}
_BY_VALUE = {int(t): t for t in MsgType}


def _body_size_ok(mtype: MsgType, reply: bool, body: bytes | memoryview) -> bool:
    """True when the body has exactly the length its layout gives (no truncation, no excess)."""
    if reply:
        return mtype is MsgType.DMA_READ or len(body) == _REPLY_SIZE[mtype]
    if mtype is MsgType.DMA_WRITE:
        if len(body) < _DMA_FIXED:
            return False
        length = int.from_bytes(body[4:8], "little")
        return len(body) == _DMA_FIXED + length
    return len(body) == _REQUEST_SIZE[mtype]


class ProtocolError(Exception):
    """A frame that is not a valid message.

    `status` is the status to reply with; `replyable` tells whether a reply can be sent at all
    (the header must carry magic and a seq, and replies are never answered).
    """

    def __init__(self, status: Status, reason: str, *, seq: int | None = None,
                 type_byte: int | None = None, major: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.seq = seq
        self.type_byte = type_byte
        self.major = major

    @property
    def is_reply(self) -> bool:
        return self.type_byte is not None and bool(self.type_byte & REPLY_BIT)

    @property
    def replyable(self) -> bool:
        return self.seq is not None and not self.is_reply


@dataclass
class Message:
    """One decoded message. `body` holds the fields of the layout (empty for error replies)."""

    type: MsgType
    seq: int
    reply: bool = False
    status: int = Status.OK
    body: Container | None = None
    major: int = MAJOR

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    def __getattr__(self, name: str) -> Any:
        # Body fields read as attributes (msg.offset); only called for names not found above.
        body = self.__dict__.get("body")
        if body is not None and name in body:
            return body[name]
        raise AttributeError(name)

    def describe(self) -> str:
        kind = "reply" if self.reply else "request"
        fields = ""
        if self.body:
            fields = " " + " ".join(
                f"{k}={_fmt(v)}" for k, v in self.body.items() if not k.startswith("_"))
        status = f" status={status_name(self.status)}" if self.reply else ""
        return f"{self.type.name} {kind} seq={self.seq}{status}{fields}"


def _fmt(value: Any) -> str:
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    return repr(value)


def decode(frame: bytes | memoryview) -> Message:
    """Decode and validate one frame; raise ProtocolError naming the problem."""
    n = len(frame)
    if n < HEADER_SIZE:
        raise ProtocolError(Status.MALFORMED, f"truncated header: {n} bytes, need {HEADER_SIZE}")
    magic, major, type_byte, hstatus, seq = _HEADER_P.packer.unpack_from(frame, 0)
    if magic != MAGIC:
        raise ProtocolError(Status.MALFORMED, f"bad magic {magic:#06x} (want {MAGIC:#06x})")
    reply = bool(type_byte & REPLY_BIT)
    base = type_byte & ~REPLY_BIT

    def fail(status: Status, reason: str) -> ProtocolError:
        return ProtocolError(status, reason, seq=seq, type_byte=type_byte, major=major)

    if major != MAJOR:
        # Only HELLO can negotiate; any other message from a different major is garbage here.
        if base == MsgType.HELLO and not reply:
            raise fail(Status.BAD_VERSION,
                       f"protocol major {major} not supported (model speaks {MAJOR})")
        raise fail(Status.MALFORMED, f"major version {major} in a session of major {MAJOR}")
    mtype = _BY_VALUE.get(base)
    if mtype is None:
        raise fail(Status.UNKNOWN_TYPE, f"unknown message type {type_byte:#04x}")
    body = frame[HEADER_SIZE:]
    if not reply and hstatus != Status.OK:
        raise fail(Status.MALFORMED, f"{mtype.name} request with nonzero status {hstatus}")
    if reply and hstatus != Status.OK:
        if len(body):
            raise fail(Status.MALFORMED,
                       f"{mtype.name} error reply ({status_name(hstatus)}) with a "
                       f"{len(body)}-byte body")
        return Message(mtype, seq, True, hstatus, None, major)
    if not _body_size_ok(mtype, reply, body):
        kind = "reply" if reply else "request"
        raise fail(Status.MALFORMED, f"{mtype.name} {kind} body of {len(body)} bytes does not "
                                     f"match its layout")
    plan = (_REPLY_P if reply else _REQUEST_P).get(mtype)
    if plan is not None:   # a fixed layout whose size was checked above
        return Message(mtype, seq, reply, hstatus, plan.unpack(frame, HEADER_SIZE), major)
    if mtype is MsgType.DMA_WRITE and not reply:
        fields = _DMA_P.unpack(frame, HEADER_SIZE)
        fields["data"] = bytes(body[_DMA_FIXED:])
        return Message(mtype, seq, reply, hstatus, fields, major)
    if mtype is MsgType.DMA_READ and reply:
        return Message(mtype, seq, reply, hstatus, Container(data=bytes(body)), major)
    table = _REPLY_C if reply else _REQUEST_C
    try:
        fields = table[mtype].parse(bytes(body))
    except Exception as e:  # construct errors, bad UTF-8 in a string field
        raise fail(Status.MALFORMED, f"{mtype.name} body does not decode: {e}") from None
    if mtype is MsgType.HELLO:
        text = fields.name if reply else fields.ram_path
        if "\0" in text:   # NUL padding only at the end: anything after a NUL is garbage
            raise fail(Status.MALFORMED, "HELLO string field has bytes after its NUL")
    return Message(mtype, seq, reply, hstatus, fields, major)


def encode(mtype: MsgType, seq: int, *, reply: bool = False, status: int = Status.OK,
           major: int = MAJOR, **fields: Any) -> bytes:
    """Encode one message. An error reply (status != OK) has an empty body."""
    type_byte = int(mtype) | (REPLY_BIT if reply else 0)
    head = _HEADER_P.packer.pack(MAGIC, major, type_byte, int(status), seq)
    if reply and status != Status.OK:
        return head
    plan = (_REPLY_P if reply else _REQUEST_P).get(mtype)
    if plan is not None:
        return head + plan.pack(fields)
    table = _REPLY_C if reply else _REQUEST_C
    return head + table[mtype].build(fields)


def encode_request(mtype: MsgType, seq: int, **fields: Any) -> bytes:
    return encode(mtype, seq, **fields)


def encode_reply(mtype: MsgType, seq: int, status: int = Status.OK, **fields: Any) -> bytes:
    return encode(mtype, seq, reply=True, status=status, **fields)


def error_reply(err: ProtocolError) -> bytes | None:
    """The reply to send for a bad request, or None when none can be sent."""
    if not err.replyable:
        return None
    assert err.seq is not None and err.type_byte is not None
    # Echo the request's type byte even when we do not know it, so the sender can match it.
    head = _HEADER_C.build(dict(magic=MAGIC, major=MAJOR, type=err.type_byte | REPLY_BIT,
                                status=int(err.status), seq=err.seq))
    return head


# -- the C header ----------------------------------------------------------------------------
# QEMU's view of the declarations above. Struct names are the ones cosim-link.c uses; a body
# layout shared by several messages (DMA_READ, DMA_WRITE) is one struct.

C_PREFIX = "COSIM_"
C_GUARD = "HW_MISC_COSIM_PROTO_H"

C_STRUCTS: tuple[tuple[str, Construct, str], ...] = (
    ("CosimHeader", HEADER, "Message header: every message starts with it"),
    ("CosimHello", REQUEST_BODY[MsgType.HELLO], "HELLO request"),
    ("CosimHelloReply", REPLY_BODY[MsgType.HELLO], "HELLO reply"),
    ("CosimMmioRead", REQUEST_BODY[MsgType.MMIO_READ], "MMIO_READ request"),
    ("CosimMmioReadReply", REPLY_BODY[MsgType.MMIO_READ], "MMIO_READ reply"),
    ("CosimMmioWrite", REQUEST_BODY[MsgType.MMIO_WRITE], "MMIO_WRITE request"),
    ("CosimCfgWrite", REQUEST_BODY[MsgType.CFG_WRITE], "CFG_WRITE request"),
    ("CosimReset", REQUEST_BODY[MsgType.RESET], "RESET request"),
    ("CosimDevice", REQUEST_BODY[MsgType.DEVICE], "DEVICE request"),
    ("CosimDma", DMA, "DMA_READ request; DMA_WRITE request, followed by len data "
                      "bytes; a DMA_READ reply is the len bytes alone"),
    ("CosimIrq", REQUEST_BODY[MsgType.IRQ], "IRQ request"),
)

# Fixed-length string fields and the macro giving their length.
_C_STRING_LEN = {"ram_path": ("RAM_PATH_LEN", RAM_PATH_LEN), "name": ("NAME_LEN", NAME_LEN)}
_C_INTS = {Int8ul: "uint8_t", Int16ul: "uint16_t", Int32ul: "uint32_t", Int64ul: "uint64_t"}
_C_PAD = {1: "uint8_t", 2: "uint16_t", 4: "uint32_t", 8: "uint64_t"}


def _c_fields(struct: Construct) -> list[str]:
    """The member lines of one struct, from its construct declaration."""
    lines = []
    reserved = 0
    for sub in struct.subcons:
        if isinstance(sub, Renamed) and sub.subcon in _C_INTS:
            lines.append(f"{_C_INTS[sub.subcon]} {sub.name};")
        elif isinstance(sub, Renamed) and isinstance(sub.subcon, StringEncoded):
            macro, length = _C_STRING_LEN[sub.name]
            assert sub.sizeof() == length, sub.name
            lines.append(f"char {sub.name}[{C_PREFIX}{macro}];")
        elif not isinstance(sub, Renamed) and sub.sizeof() in _C_PAD:   # Padding
            reserved += 1
            name = "rsvd" if reserved == 1 else f"rsvd{reserved}"
            lines.append(f"{_C_PAD[sub.sizeof()]} {name};")
        else:
            raise AssertionError(f"no C type for {sub!r}")
    return lines


def _c_bit(flag: enum.IntFlag) -> str:
    value = int(flag)
    assert value and value & (value - 1) == 0, flag
    return f"(1u << {value.bit_length() - 1})"


def _c_defines(rows: list[tuple[str, str]], comment: str) -> list[str]:
    out = ["", f"/* {comment} */"]
    out += [f"#define {C_PREFIX}{name:<20} {value}".rstrip() for name, value in rows]
    return out


def _c_names(function: str, ctype: str, names: list[str], comment: str) -> list[str]:
    """A function from code to name, so that QEMU's log lines use the declared names."""
    out = ["", f"/* {comment}; NULL for an unknown code */",
           f"static inline const char *{function}({ctype} code)", "{", "    switch (code) {"]
    for name in names:
        out += [f"    case {C_PREFIX}{name}:", f'        return "{name}";']
    out += ["    default:", "        return NULL;", "    }", "}"]
    return out


def c_header() -> str:
    """include/hw/misc/cosim-proto.h: codes, bits, layouts and sizes for QEMU's side."""
    out = [
        "/*",
        f" * cosim wire protocol, version {MAJOR}.{MINOR}",
        " *",
        " * Messages exchanged between QEMU and an external device model over one",
        " * ZeroMQ PAIR socket.  Each ZeroMQ message carries exactly one protocol",
        f" * message: a {HEADER_SIZE}-byte header followed by a type-specific body.  All",
        " * integers are little-endian; the structures below are packed so that they",
        " * match the wire layout byte for byte on a little-endian host, and the",
        " * accessors in cosim-link.c convert explicitly so that big-endian hosts",
        " * work too.",
        " *",
        " * GENERATED by `python -m cosim.link.protocol --c-header` from",
        " * cosim/link/protocol.py (docs/protocol.md).  Do not edit.",
        " *",
        " * Copyright (c) 2025 cosim developers",
        " *",
        " * SPDX-License-Identifier: GPL-2.0-or-later",
        " */",
        "",
        f"#ifndef {C_GUARD}",
        f"#define {C_GUARD}",
    ]
    out += _c_defines([("MAGIC", f"{MAGIC:#06x}"), ("MAJOR", str(MAJOR)),
                       ("MINOR", str(MINOR)), ("REPLY", f"{REPLY_BIT:#04x}")],
                      "Header magic (\"CS\"), version; a reply has the REPLY bit in its type")
    for group, comment in ((QEMU_REQUESTS, "Message types, QEMU -> model"),
                           (MODEL_REQUESTS, "Message types, model -> QEMU")):
        out += _c_defines([(t.name, f"{int(t):#04x}") for t in MsgType if t in group],
                          comment)
    out += _c_defines([(st.name, str(int(st))) for st in Status], "Reply status codes")
    out += _c_defines([(f"CAP_{c.name}", _c_bit(c)) for c in Caps], "HELLO capability bits")
    out += _c_defines([(f"RESET_{k.name}", str(int(k))) for k in ResetKind], "RESET kinds")
    out += _c_defines([(f"DEV_{k.name}", str(int(k))) for k in DeviceKind], "DEVICE kinds")
    out += _c_defines([("DEV_NUM_SMMU", str(SMMU_DEV))],
                      "The cosim SMMU is always device 0; endpoints are numbered from 1.")
    out += _c_defines([("SMMU_REGION", str(SMMU_REGION)),
                       ("SMMU_FRAME_SIZE", f"{SMMU_FRAME_SIZE:#x}")],
                      "SMMU region 0: the register frame (page 0 and page 1).")
    out += _c_defines([(f"SMMU_IRQ_{ln.name}", str(int(ln))) for ln in IrqLine]
                      + [("SMMU_NUM_IRQS", str(len(IrqLine)))],
                      "SMMU wired interrupt lines carried by IRQ.line")
    out += _c_defines([(f"IRQ_{lv.name}", str(int(lv))) for lv in IrqLevel], "IRQ.level")
    out += _c_defines([(f"DMA_FLAG_{f.name}", _c_bit(f)) for f in DmaFlags], "DMA flags")
    out += _c_defines([("DEFAULT_MAX_DMA", str(DEFAULT_MAX_DMA))],
                      "Largest DMA, in bytes, unless the link's max-dma says otherwise")
    out += _c_defines([(macro, str(length)) for macro, length in _C_STRING_LEN.values()],
                      "Lengths of the NUL-padded string fields")
    for name, struct, comment in C_STRUCTS:
        out += ["", f"/* {comment} */" if len(comment) < 70 else f"/*\n * {_wrap(comment)}\n */",
                f"typedef struct QEMU_PACKED {name} {{"]
        out += [f"    {line}" for line in _c_fields(struct)]
        out.append(f"}} {name};")
    out.append("")
    out += [f"QEMU_BUILD_BUG_ON(sizeof({name}) != {struct.sizeof()});"
            for name, struct, _ in C_STRUCTS]
    out += _c_names("cosim_proto_type_name", "uint8_t", [t.name for t in MsgType],
                    "Name of a message type (REPLY bit clear)")
    out += _c_names("cosim_proto_status_name", "uint32_t", [st.name for st in Status],
                    "Name of a reply status")
    out += ["", f"#endif /* {C_GUARD} */"]
    text = "\n".join(out) + "\n"
    names = [line.split()[1] for line in text.splitlines() if line.startswith("#define")]
    assert len(names) == len(set(names)), "duplicate macro names in the C header"
    assert max(len(line) for line in text.splitlines()) <= 80, "C header line over 80 columns"
    return text


def _wrap(text: str, width: int = 74) -> str:
    """A comment's words on lines of at most `width` columns, joined for a C block comment."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n * ".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--c-header", action="store_true",
                    help="print include/hw/misc/cosim-proto.h, QEMU's side of the declarations")
    args = ap.parse_args(argv)
    if args.c_header:
        sys.stdout.write(c_header())
        return 0
    for t in MsgType:
        sender = "QEMU " if t in QEMU_REQUESTS else "model"
        req = f"{DMA.sizeof()}+len" if t is MsgType.DMA_WRITE else str(REQUEST_BODY[t].sizeof())
        rep = "len" if t is MsgType.DMA_READ else str(REPLY_BODY[t].sizeof())
        print(f"{int(t):#04x} {t.name:<10} from {sender}  request body {req:>6}  "
              f"reply body {rep:>3}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
