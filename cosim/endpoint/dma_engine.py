"""The descriptor DMA engine and the traffic generator (docs/endpoint.md, 0x100 and 0x200).

Both issue their requests through the `Requester`, which translates, counts and traces; this
module only knows what to transfer and how to report it in the registers.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cosim.arch.endpoint_regs import (
    DMA_STATUS_ERR_SHIFT,
    PASID_MASK,
    TG_RECORD_MAGIC,
    TG_RECORD_SIZE,
    DmaErr,
    DmaFlag,
    DmaOp,
    DmaStatus,
    MsixVector,
    TgCtrl,
)
from cosim.endpoint.requester import PIECE, Outcome, Requester

log = logging.getLogger("cosim.endpoint")

# One descriptor may move at most this much: the engine runs synchronously inside the guest's
# MMIO write, so an unbounded length would stall the guest (and QEMU's link timeout).
MAX_DMA_LEN = 16 << 20
ADDR_LIMIT = 1 << 64
PATTERN_BYTES = 8

_RECORD = struct.Struct("<QQQQ")  # magic, seq, iova, tag
assert _RECORD.size == TG_RECORD_SIZE

# Requester failure class -> traffic generator counter.
_TG_COUNTER = {"xlate": "TG_XLATE_FAIL", "abort": "TG_ABORTS", "ats_err": "TG_ATS_ERR"}


def _pasid(flags: int, flag: int, value: int) -> int | None:
    return value & PASID_MASK if flags & flag else None


class DescriptorEngine:
    """Runs the one descriptor held in the DMA_* registers, to completion."""

    def __init__(self, requester: Requester, pasid_allowed: Callable[[], bool],
                 irq: Callable[[int], None]) -> None:
        self.req = requester
        self.pasid_allowed = pasid_allowed
        self.irq = irq

    def run(self, regs: dict[str, int]) -> None:
        """Execute the descriptor in `regs`; writes DMA_STATUS and DMA_RESULT back into it."""
        flags = regs["DMA_FLAGS"]
        ats = bool(flags & DmaFlag.ATS)
        pasid = _pasid(flags, DmaFlag.PASID, regs["DMA_PASID"])
        op, src, dst, length = regs["DMA_OP"], regs["DMA_SRC"], regs["DMA_DST"], regs["DMA_LEN"]
        err, done, miscompare = self._execute(op, src, dst, length, regs["DMA_PATTERN"], pasid,
                                              ats)
        status = DmaStatus.DONE | (DmaStatus.MISCOMPARE if miscompare else 0)
        if err != DmaErr.NONE:
            status |= DmaStatus.ERROR | (int(err) << DMA_STATUS_ERR_SHIFT)
        regs["DMA_STATUS"] = int(status)
        regs["DMA_RESULT"] = done
        if flags & DmaFlag.IRQ:
            self.irq(MsixVector.ERROR if err != DmaErr.NONE else MsixVector.DMA_DONE)

    def _execute(self, op: int, src: int, dst: int, length: int, pattern: int,
                 pasid: int | None, ats: bool) -> tuple[DmaErr, int, bool]:
        """(error, bytes done or first difference, miscompare)."""
        if op not in set(DmaOp) or length > MAX_DMA_LEN or dst + length > ADDR_LIMIT \
                or (op != DmaOp.FILL and src + length > ADDR_LIMIT):
            log.info("DMA engine: bad descriptor op=%d len=%#x", op, length)
            return DmaErr.BAD_DESC, 0, False
        if pasid is not None and not self.pasid_allowed():
            # Without PASID Enable the function may not send a PASID TLP prefix.
            log.info("DMA engine: PASID requested with PASID Enable clear")
            return DmaErr.BAD_DESC, 0, False
        done = 0
        while done < length:
            n = min(length - done, PIECE - (dst + done) % PIECE)
            if op != DmaOp.FILL:
                n = min(n, PIECE - (src + done) % PIECE)
            if op == DmaOp.FILL:
                start = done % PATTERN_BYTES
                pat = pattern.to_bytes(PATTERN_BYTES, "little")
                data = (pat * ((n + start) // PATTERN_BYTES + 1))[start:start + n]
                r = self.req.write(dst + done, data, pasid, ats, "engine")
            else:
                r = self.req.read(src + done, n, pasid, ats, "engine")
                if r.ok and op == DmaOp.COPY:
                    r = self.req.write(dst + done, r.data, pasid, ats, "engine")
                elif r.ok:
                    want = r.data
                    r = self.req.read(dst + done, n, pasid, ats, "engine")
                    if r.ok and r.data != want:
                        diff = next(i for i, (a, b) in enumerate(zip(want, r.data, strict=True))
                                    if a != b)
                        return DmaErr.NONE, done + diff, True
            if not r.ok:
                return r.err, done + (r.done if op == DmaOp.FILL else 0), False
            done += n
        return DmaErr.NONE, done, False


@dataclass
class TgState:
    """The generator's latched configuration and cursor (latched when RUN goes 0 -> 1)."""

    base: int = 0
    size: int = 0
    stride: int = TG_RECORD_SIZE
    ats: bool = False
    pasid: int | None = None
    readback: bool = False
    cursor: int = 0


class TrafficGenerator:
    """Writes sequence-numbered records across a window, `rate` per poll, while running."""

    def __init__(self, requester: Requester, pasid_allowed: Callable[[], bool]) -> None:
        self.req = requester
        self.pasid_allowed = pasid_allowed
        self.running = False
        self.state = TgState()

    def stop(self) -> None:
        self.running = False

    def start(self, regs: dict[str, int]) -> bool:
        """Latch the window from the registers; False (not started) when it is unusable."""
        ctrl = regs["TG_CTRL"]
        st = TgState(base=regs["TG_BASE"], size=regs["TG_SIZE"], stride=regs["TG_STRIDE"],
                     ats=bool(ctrl & TgCtrl.ATS),
                     pasid=_pasid(ctrl, TgCtrl.PASID, regs["TG_PASID"]),
                     readback=bool(ctrl & TgCtrl.READBACK))
        if st.stride < TG_RECORD_SIZE or st.size < TG_RECORD_SIZE \
                or st.base + st.size > ADDR_LIMIT:
            log.info("traffic generator: unusable window base=%#x size=%#x stride=%#x",
                     st.base, st.size, st.stride)
            return False
        if st.pasid is not None and not self.pasid_allowed():
            log.info("traffic generator: PASID requested with PASID Enable clear")
            return False
        self.state = st
        self.running = True
        return True

    def step(self, regs: dict[str, int], records: int) -> None:
        """Write up to `records` records (stops early if stopped from inside, e.g. a reset)."""
        for _ in range(records):
            if not self.running:
                return
            self._one(regs)

    def _one(self, regs: dict[str, int]) -> None:
        st = self.state
        seq = regs["TG_SEQ"]
        iova = st.base + st.cursor
        regs["TG_SEQ"] = seq + 1
        st.cursor += st.stride
        if st.cursor + TG_RECORD_SIZE > st.size:
            st.cursor = 0
        record = _RECORD.pack(TG_RECORD_MAGIC, seq, iova, regs["TG_TAG"])
        r = self.req.write(iova, record, st.pasid, st.ats, "tg", seq)
        if not r.ok:
            self._count(regs, r)
            return
        regs["TG_WRITES"] += 1
        if st.readback:
            r = self.req.read(iova, TG_RECORD_SIZE, st.pasid, st.ats, "tg", seq)
            if not r.ok:
                self._count(regs, r)
            elif r.data != record:
                regs["TG_MISMATCH"] += 1

    @staticmethod
    def _count(regs: dict[str, int], r: Outcome) -> None:
        name = _TG_COUNTER.get(r.kind)
        if name is not None:
            regs[name] += 1
