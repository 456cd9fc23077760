"""Wire layouts against docs/protocol.md, round trips, and every kind of bad frame."""

from __future__ import annotations

import struct

import pytest

from cosim.link.protocol import (
    HEADER_SIZE,
    MAGIC,
    REPLY_BODY,
    REQUEST_BODY,
    MsgType,
    ProtocolError,
    Status,
    decode,
    encode,
    encode_reply,
    encode_request,
    error_reply,
)

REQUESTS = {
    MsgType.HELLO: dict(minor=3, caps=1, ram_base=0x4000_0000, ram_size=1 << 30,
                        ram_path="/run/user/0/cosim-1/ram"),
    MsgType.MMIO_READ: dict(dev=1, region=2, size=8, offset=0x1_0000_0040),
    MsgType.MMIO_WRITE: dict(dev=0, region=0, size=4, offset=0x10000, value=0xdead_beef_cafe),
    MsgType.CFG_WRITE: dict(dev=1, size=2, offset=0x104, value=0x6),
    MsgType.RESET: dict(dev=1, kind=1),
    MsgType.DEVICE: dict(dev=1, kind=2, rid=0x10, pcie_off=0x40, ats_off=0x100,
                         pasid_off=0x110, msix_off=0x80),
    MsgType.BYE: dict(),
    MsgType.DMA_READ: dict(rid=0x10, flags=0, len=64, addr=0x4000_1000),
    MsgType.DMA_WRITE: dict(rid=0x10, flags=1, len=4, addr=0x0809_0040, data=b"\x01\x00\x00\x00"),
    MsgType.IRQ: dict(dev=0, line=2, level=2),
}

REPLIES = {
    MsgType.HELLO: dict(minor=0, caps=1, max_dma=65536, name="cosim-model"),
    MsgType.MMIO_READ: dict(value=0xffff_ffff_ffff_ffff),
    MsgType.MMIO_WRITE: dict(),
    MsgType.CFG_WRITE: dict(),
    MsgType.RESET: dict(),
    MsgType.DEVICE: dict(),
    MsgType.BYE: dict(),
    MsgType.DMA_READ: dict(data=bytes(range(64))),
    MsgType.DMA_WRITE: dict(),
    MsgType.IRQ: dict(),
}

# Body sizes straight from the tables of docs/protocol.md.
SPEC_REQUEST_SIZE = {
    MsgType.HELLO: 2 + 2 + 4 + 8 + 8 + 128, MsgType.MMIO_READ: 16, MsgType.MMIO_WRITE: 24,
    MsgType.CFG_WRITE: 16, MsgType.RESET: 4, MsgType.DEVICE: 16, MsgType.BYE: 0,
    MsgType.DMA_READ: 16, MsgType.IRQ: 8,
}
SPEC_REPLY_SIZE = {MsgType.HELLO: 2 + 2 + 4 + 4 + 4 + 32, MsgType.MMIO_READ: 8}


def header(type_byte: int, seq: int = 7, status: int = 0, major: int = 1,
           magic: int = MAGIC) -> bytes:
    return struct.pack("<HBBIQ", magic, major, type_byte, status, seq)


@pytest.mark.parametrize("mtype", list(MsgType))
def test_request_round_trip(mtype: MsgType) -> None:
    frame = encode_request(mtype, 42, **REQUESTS[mtype])
    msg = decode(frame)
    assert (msg.type, msg.seq, msg.reply, msg.status) == (mtype, 42, False, Status.OK)
    for name, value in REQUESTS[mtype].items():
        assert getattr(msg, name) == value


@pytest.mark.parametrize("mtype", list(MsgType))
def test_reply_round_trip(mtype: MsgType) -> None:
    frame = encode_reply(mtype, 9, **REPLIES[mtype])
    assert frame[3] == mtype | 0x80
    msg = decode(frame)
    assert (msg.type, msg.seq, msg.reply, msg.ok) == (mtype, 9, True, True)
    for name, value in REPLIES[mtype].items():
        assert getattr(msg, name) == value


@pytest.mark.parametrize("mtype", list(MsgType))
def test_error_reply_has_empty_body(mtype: MsgType) -> None:
    frame = encode_reply(mtype, 5, Status.ACCESS_ERROR, **REPLIES[mtype])
    assert len(frame) == HEADER_SIZE
    msg = decode(frame)
    assert msg.status == Status.ACCESS_ERROR and msg.body is None and not msg.ok


@pytest.mark.parametrize("mtype", [t for t in MsgType if t in SPEC_REQUEST_SIZE])
def test_layout_sizes_match_the_spec(mtype: MsgType) -> None:
    assert REQUEST_BODY[mtype].sizeof() == SPEC_REQUEST_SIZE[mtype]
    assert len(encode_request(mtype, 1, **REQUESTS[mtype])) == 16 + SPEC_REQUEST_SIZE[mtype]
    if mtype in SPEC_REPLY_SIZE:
        assert REPLY_BODY[mtype].sizeof() == SPEC_REPLY_SIZE[mtype]


def test_header_and_field_offsets_are_little_endian_as_specified() -> None:
    frame = encode_request(MsgType.MMIO_WRITE, 0x0102030405060708, dev=0x0a0b, region=3,
                           size=4, offset=0x1122, value=0x55AA)
    assert frame[:16] == header(0x03, seq=0x0102030405060708)
    dev, region, size, rsvd, offset, value = struct.unpack("<HBBIQQ", frame[16:])
    assert (dev, region, size, rsvd, offset, value) == (0x0a0b, 3, 4, 0, 0x1122, 0x55AA)
    cfg = encode_request(MsgType.CFG_WRITE, 1, dev=1, size=2, offset=0x104, value=6)
    assert struct.unpack("<HBBIQ", cfg[16:]) == (1, 0, 2, 0x104, 6)
    dma = encode_request(MsgType.DMA_WRITE, 1, rid=0x10, flags=1, len=2, addr=0x80, data=b"hi")
    assert dma[16:] == struct.pack("<HHIQ", 0x10, 1, 2, 0x80) + b"hi"
    hello = encode_reply(MsgType.HELLO, 1, minor=2, caps=1, max_dma=4096, name="m")
    assert hello[16:32] == struct.pack("<HHIII", 2, 0, 1, 4096, 0)
    assert hello[32:] == b"m" + bytes(31)


def test_reserved_fields_are_ignored_on_receipt() -> None:
    body = struct.pack("<HBBIQ", 1, 0, 4, 0xFFFFFFFF, 0x10)
    msg = decode(header(0x02) + body)
    assert (msg.dev, msg.size, msg.offset) == (1, 4, 0x10)


def _err(frame: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(frame)
    return info.value


@pytest.mark.parametrize("n", [0, 1, 2, 15])
def test_truncated_header_cannot_be_replied_to(n: int) -> None:
    err = _err(encode_request(MsgType.MMIO_READ, 1, **REQUESTS[MsgType.MMIO_READ])[:n])
    assert err.status == Status.MALFORMED and not err.replyable
    assert error_reply(err) is None


def test_bad_magic_is_logged_not_replied() -> None:
    err = _err(header(0x02, magic=0x5343) + bytes(16))
    assert err.status == Status.MALFORMED and not err.replyable and "magic" in err.reason


@pytest.mark.parametrize("mtype", [t for t in MsgType if t is not MsgType.DMA_WRITE])
def test_truncated_and_oversized_bodies(mtype: MsgType) -> None:
    frame = encode_request(mtype, 11, **REQUESTS[mtype])
    for bad in (frame + b"\0", frame[:-1] if len(frame) > 16 else None):
        if bad is None:
            continue
        err = _err(bad)
        assert (err.status, err.seq, err.replyable) == (Status.MALFORMED, 11, True)
        reply = decode(error_reply(err))
        assert (reply.type, reply.seq, reply.status) == (mtype, 11, Status.MALFORMED)


def test_dma_write_length_must_match_payload() -> None:
    good = encode_request(MsgType.DMA_WRITE, 3, **REQUESTS[MsgType.DMA_WRITE])
    assert _err(good + b"x").status == Status.MALFORMED
    assert _err(good[:-1]).status == Status.MALFORMED
    assert _err(good[:16 + 10]).status == Status.MALFORMED


def test_unknown_type_gets_unknown_type_reply_with_the_same_type_byte() -> None:
    err = _err(header(0x33, seq=77) + b"abc")
    assert (err.status, err.replyable) == (Status.UNKNOWN_TYPE, True)
    reply = error_reply(err)
    assert reply == header(0xB3, seq=77, status=Status.UNKNOWN_TYPE)


def test_unknown_reply_is_never_answered() -> None:
    err = _err(header(0xB3, seq=77))
    assert err.status == Status.UNKNOWN_TYPE and not err.replyable


def test_wrong_major_hello_is_bad_version() -> None:
    frame = bytearray(encode_request(MsgType.HELLO, 1, **REQUESTS[MsgType.HELLO]))
    frame[2] = 2
    err = _err(bytes(frame))
    assert err.status == Status.BAD_VERSION and err.replyable and err.major == 2
    assert "protocol major 2 not supported (model speaks 1)" in err.reason
    reply = error_reply(err)
    assert reply[2] == 1 and decode(reply).status == Status.BAD_VERSION


def test_wrong_major_other_message_is_malformed() -> None:
    frame = bytearray(encode_request(MsgType.MMIO_READ, 1, **REQUESTS[MsgType.MMIO_READ]))
    frame[2] = 0
    assert _err(bytes(frame)).status == Status.MALFORMED


def test_request_with_status_is_malformed() -> None:
    assert _err(header(0x07, status=3)).status == Status.MALFORMED


def test_error_reply_with_body_is_malformed() -> None:
    err = _err(header(0x90, status=Status.DECODE_ERROR) + b"data")
    assert err.status == Status.MALFORMED and not err.replyable


def test_bad_utf8_path_is_malformed() -> None:
    frame = bytearray(encode_request(MsgType.HELLO, 1, **REQUESTS[MsgType.HELLO]))
    frame[16 + 24] = 0xff
    assert _err(bytes(frame)).status == Status.MALFORMED


def test_encode_refuses_a_path_longer_than_its_field() -> None:
    with pytest.raises(Exception):  # noqa: B017 - construct's own error type
        encode(MsgType.HELLO, 1, minor=0, caps=0, ram_base=0, ram_size=0, ram_path="x" * 129)


def test_hello_path_with_bytes_after_nul_is_malformed() -> None:
    frame = bytearray(encode_request(MsgType.HELLO, 1, **REQUESTS[MsgType.HELLO]))
    frame[-1] = ord("x")   # "…/ram\0\0…x": found by the fuzz test
    assert _err(bytes(frame)).status == Status.MALFORMED


def test_fast_plans_agree_with_the_construct_declarations() -> None:
    # The hot path packs and unpacks with struct plans derived from the declarations; each
    # must give the bytes and fields construct gives for the same layout.
    import random

    from cosim.link import protocol as p
    rng = random.Random(7)
    planned = 0
    for table in (p.REQUEST_BODY, p.REPLY_BODY):
        for mtype, decl in table.items():
            plan = p.plan_of(decl)
            if plan is None:
                continue
            planned += 1
            for _ in range(20):
                fields = {}
                for sc in decl.subcons:
                    if sc.name:
                        fields[sc.name] = rng.getrandbits(8 * sc.subcon.sizeof())
                raw = plan.pack(fields)
                assert raw == decl.build(fields), (mtype, fields)
                got = plan.unpack(b"\xff" * 3 + raw, 3)
                assert dict(got) == {k: v for k, v in decl.parse(raw).items()
                                     if not k.startswith("_")}, mtype
    assert planned >= 10
    # Strings and variable payloads stay with construct.
    assert p.plan_of(p.REQUEST_BODY[p.MsgType.HELLO]) is None
    assert p.plan_of(p.REQUEST_BODY[p.MsgType.DMA_WRITE]) is None
    assert p.plan_of(p.REPLY_BODY[p.MsgType.DMA_READ]) is None
