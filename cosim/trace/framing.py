"""The binary trace's framing: a magic, then length-prefixed zstd frames of records.

    file    = MAGIC t0:u64le frame*
    frame   = size:u32le flags:2 count:30 (one u32le) zstd_frame[size]
    payload = the zstd frame decompressed: one JSON array of `count` records,
              each [t, k, {field: value, ...}]: the JSON-lines record
              {"t": t - t0, "k": k, ...} with its envelope taken out

Flags: WIDE, the payload is [records, [[index, field, "digits"], ...]]: the fields holding
an integer outside 64 bits (a whole-space size, 2^64), written as 0 in the record and as
their digits here, so orjson decodes every frame exactly and fast; STANDARD, such an integer
is nested deeper: the standard decoder reads the frame.

`t0` is the writer's origin on the monotonic clock, so the model stores the clock as read
(an exported trace: 0, its records' `t` as they were). The first frame holds the header
record alone. A record's fields are those of the JSON-lines
format (docs/trace.md), so the schema and the reader's validation are shared and the export
to JSON lines is exact. The writer keeps each record as a tuple and encodes a frame's
records in one call, which is what makes tracing cheap for the model. Each frame is one
independent zstd frame (with its content checksum) written by one `os.write`: a model killed
between flushes loses only the records it had not flushed (at most `flush_every` - 1), and one
killed inside a write leaves a short last frame, which the reader reports as torn.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import zstandard

# Like PNG's: a non-ASCII first byte (no JSON or text file starts so), and CR LF / ^Z / LF
# that a text-mode copy would mangle. The fifth byte is the framing's version.
MAGIC = b"\x89CST\x01\r\n\x1a"
MAGIC_PREFIX = MAGIC[:4]
ORIGIN = struct.Struct("<Q")
FRAME = struct.Struct("<II")
WIDE, STANDARD = 1 << 31, 1 << 30
COUNT = (1 << 30) - 1
LEVEL = 1   # zstd level: level 3 is no smaller on trace frames of 256 records, and slower


class Readable(Protocol):
    """What the frames are read from: a file, or one still being written (follow.Growing)."""

    def read(self, n: int, /) -> bytes: ...


@dataclass(frozen=True)
class Frame:
    offset: int          # of its frame header in the file
    count: int           # records the header announces
    flags: int           # WIDE, STANDARD
    payload: bytes       # the zstd frame, or what of it the file holds when torn
    size: int            # the zstd frame's size the header announces

    @property
    def torn(self) -> bool:
        return len(self.payload) < self.size


def prologue(t0: int) -> bytes:
    """What a binary trace starts with: MAGIC and the writer's clock origin."""
    return MAGIC + ORIGIN.pack(t0)


def encode(payload: bytes, count: int, flags: int,
           compressor: zstandard.ZstdCompressor) -> bytes:
    """One frame holding `payload`, the JSON array of `count` records."""
    z = compressor.compress(payload)
    return FRAME.pack(len(z), flags | count) + z


def compressor() -> zstandard.ZstdCompressor:
    return zstandard.ZstdCompressor(level=LEVEL, write_checksum=True)


def frames(f: Readable, offset: int) -> Iterator[Frame]:
    """The frames from `offset` (just past the magic) to the end; a short last one is torn
    (its header may be short too: then its size and count are what could be read)."""
    read = f.read
    while True:
        head = read(FRAME.size)
        if not head:
            return
        if len(head) < FRAME.size:
            yield Frame(offset, 0, 0, head, FRAME.size + 1)
            return
        size, word = FRAME.unpack(head)
        payload = read(size)
        yield Frame(offset, word & COUNT, word & ~COUNT, payload, size)
        if len(payload) < size:
            return
        offset += FRAME.size + size


def decompress(frame: Frame, d: zstandard.ZstdDecompressor) -> bytes:
    """The frame's payload; raises zstandard.ZstdError for a corrupt frame."""
    return d.decompress(frame.payload)
